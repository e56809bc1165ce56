"""``mapper-canonical-order``: the canonical layer as a Singer mapper (singer-sdk ``InlineMapper``).

Reads source streams on stdin, writes the ``canonical_orders`` stream (schema: :func:`model.json_schema`) and a
``canonical_quarantine`` stream with every record that could not become an order (reason code, field, raw
record). STATE messages pass through. Put it between any tap and target, e.g. in Meltano::

    meltano run tap-erp-sql mapper-canonical-order target-erp-sql
"""
from __future__ import annotations

import json
import typing as t
from datetime import datetime, timezone

from singer_sdk import typing as th
from singer_sdk.mapper_base import InlineMapper
from singer_sdk import singerlib as singer

from orderhub.transforms import model
from orderhub.transforms.canonical import Canonicalizer
from orderhub.transforms.cleaning import SkuDictionary
from orderhub.transforms.mapping import load_mapping
from orderhub.transforms.rules import RuleSet

QUARANTINE_STREAM = "canonical_quarantine"
QUARANTINE_SCHEMA = {
    "type": "object",
    "properties": {
        "source_system": {"type": ["string", "null"]}, "source_order_id": {"type": ["string", "null"]},
        "reason_code": {"type": "string"}, "field": {"type": ["string", "null"]}, "message": {"type": "string"},
        "mapping_version": {"type": ["string", "null"]}, "raw": {"type": "string"},
        "quarantined_at": {"type": "string", "format": "date-time"},
    },
}


class MapperCanonicalOrder(InlineMapper):
    """Source order streams in, canonical orders out."""

    name = "mapper-canonical-order"
    config_jsonschema = th.PropertiesList(
        th.Property("mapping", th.StringType, description="mapping name (taobao, erp_sql, …) or YAML path, "
                    "used for every input stream not listed in `stream_mappings`"),
        th.Property("stream_mappings", th.ObjectType(additional_properties=th.StringType),
                    description="input stream name → mapping name or path"),
        th.Property("rules", th.StringType, description="rule set name or YAML path (default: none)"),
        th.Property("skus", th.StringType, description="SKU/alias dictionary YAML path"),
        th.Property("emit_quarantine", th.BooleanType, default=True,
                    description="write rejected records to the canonical_quarantine stream"),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._skus = SkuDictionary.load(self.config["skus"]) if self.config.get("skus") else None
        self._rules = RuleSet.load(self.config["rules"]) if self.config.get("rules") else None
        self._by_stream: dict[str, Canonicalizer] = {}
        self._schema_sent = False

    def _canonicalizer(self, stream: str) -> Canonicalizer | None:
        cz = self._by_stream.get(stream)
        if cz is None:
            spec = (self.config.get("stream_mappings") or {}).get(stream) or self.config.get("mapping")
            if not spec:
                return None
            cz = self._by_stream[stream] = Canonicalizer(load_mapping(spec), skus=self._skus, rules=self._rules)
        return cz

    def _schemas(self) -> t.Iterable[singer.Message]:
        if not self._schema_sent:
            self._schema_sent = True
            yield singer.SchemaMessage(model.STREAM, model.json_schema(), ["order_id"])
            if self.config.get("emit_quarantine", True):
                yield singer.SchemaMessage(QUARANTINE_STREAM, QUARANTINE_SCHEMA, [])

    def map_schema_message(self, message_dict: dict) -> t.Iterable[singer.Message]:
        yield from self._schemas()

    def map_record_message(self, message_dict: dict) -> t.Iterable[singer.Message]:
        cz = self._canonicalizer(message_dict["stream"])
        if cz is None:
            self.logger.warning("no mapping for stream %s; its records are dropped", message_dict["stream"])
            return
        yield from self._schemas()
        res = cz.run([message_dict["record"]])
        for order in res.orders:
            yield singer.RecordMessage(model.STREAM, model.to_record(order))
        if self.config.get("emit_quarantine", True):
            now = datetime.now(timezone.utc).isoformat()
            for q in res.quarantined:
                self.logger.warning("quarantined %s %s: %s (%s)", q.source_system, q.source_order_id, q.reason_code,
                                    q.field)
                yield singer.RecordMessage(QUARANTINE_STREAM, {
                    "source_system": q.source_system, "source_order_id": q.source_order_id,
                    "reason_code": q.reason_code, "field": q.field, "message": q.message,
                    "mapping_version": q.mapping_version, "raw": json.dumps(q.raw, ensure_ascii=False, default=str),
                    "quarantined_at": now})

    def map_state_message(self, message_dict: dict) -> t.Iterable[singer.Message]:
        yield singer.StateMessage(value=message_dict["value"])

    def map_activate_version_message(self, message_dict: dict) -> t.Iterable[singer.Message]:
        if message_dict.get("stream") in self._by_stream or self.config.get("mapping"):
            yield singer.ActivateVersionMessage(stream=model.STREAM, version=message_dict["version"])


if __name__ == "__main__":
    MapperCanonicalOrder.cli()
