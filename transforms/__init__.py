"""The canonical-order layer: pure functions from source records to standard orders and decisions.

>>> from orderhub.transforms import load_mapping, Canonicalizer, RuleSet
>>> cz = Canonicalizer(load_mapping("erp_sql"), rules=RuleSet.load("default"))
>>> result = cz.run(records)          # result.orders, result.quarantined
"""
from orderhub.transforms.canonical import BatchResult, Canonicalizer, QuarantineEntry, canonicalize
from orderhub.transforms.cleaning import SkuDictionary
from orderhub.transforms.mapping import Mapping, compile_mapping, load_mapping
from orderhub.transforms.model import SCHEMA_VERSION, canonical_order_id, json_schema
from orderhub.transforms.rules import RuleContext, RuleSet

__all__ = ["BatchResult", "Canonicalizer", "QuarantineEntry", "canonicalize", "SkuDictionary", "Mapping",
           "compile_mapping", "load_mapping", "SCHEMA_VERSION", "canonical_order_id", "json_schema", "RuleContext",
           "RuleSet"]
