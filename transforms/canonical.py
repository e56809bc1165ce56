"""Turn one source record into one canonical order; turn a batch into orders, quarantine entries and decisions.

:func:`canonicalize` is the per-record core (mapping, status, SKU, money, times, validation). :class:`Canonicalizer`
runs a whole batch: a bad record becomes a :class:`QuarantineEntry` (reason code, field, raw record) and never
takes the rest of the batch down; good orders then go through the cleaning filters and the rule set.
Pure: no I/O, no clock except the ``now`` passed in.
"""
from __future__ import annotations

import hashlib
import re
import pickle

import msgspec
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable

from orderhub.connectors.common.errors import RecordError
from orderhub.transforms import convert
from orderhub.transforms.cleaning import (DuplicateDetector, SkuDictionary, TestOrderFilter, normalize_address_cached,
                                          normalize_mobile)
from orderhub.transforms.mapping import Mapping
from orderhub.transforms.model import LINE_MAX_CHARS, MAX_CHARS, SCHEMA_VERSION, canonical_order_id

_D0 = Decimal(0)
_CENT = Decimal("0.01")
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_TEXT = 4000        # longest text field accepted (characters); longer is quarantined as text_too_long
MAX_LINES = 5000
#: text fields canonicalize() sets after the mapping (the shop, the address split), with the hub's widths
_DERIVED_LIMITS = tuple((k, MAX_CHARS[k]) for k in ("shop_id", "receiver_province", "receiver_city",
                                                     "receiver_district"))
_WITH_SKU = (("canonical_sku", LINE_MAX_CHARS["canonical_sku"]),)  # a dictionary's code, not the source's
EMPTY_SKUS = SkuDictionary()
_blake = hashlib.blake2b
_json_encode = msgspec.json.Encoder(decimal_format="string").encode


def raw_hash(record: Any) -> str:
    """Stable hash of a raw record (same content → same hash in every run): BLAKE2b over its compact JSON
    (Decimals and times encode as exact text)."""
    try:
        data = _json_encode(record)
    except Exception:  # noqa: BLE001 - lone surrogates or exotic values: hash the pickle
        data = pickle.dumps(record, 4)
    return _blake(data, digest_size=16).hexdigest()


def _check_text(where: str, v: str) -> None:
    """Text limits: at most MAX_TEXT characters, no NUL, valid UTF-8 (no undecodable-byte surrogates)."""
    if len(v) > MAX_TEXT:
        raise RecordError(f"is {len(v)} characters long (limit {MAX_TEXT})", code="text_too_long", field=where)
    if "\x00" in v:
        raise RecordError("contains a NUL character", code="invalid_text", field=where)
    if not v.isascii() and _SURROGATE.search(v):
        raise RecordError("is not valid UTF-8 text (undecodable bytes)", code="invalid_text", field=where)


def _check_all_text(record: Any, prefix: str = "") -> None:
    """Slow path: find the field that broke the one-pass check in :func:`_hash_and_check`."""
    if isinstance(record, dict):
        for k, v in record.items():
            _check_all_text(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(record, list):
        for i, v in enumerate(record):
            _check_all_text(v, f"{prefix}[{i}]")
    elif isinstance(record, str):
        _check_text(prefix, record)


def _hash_and_check(record: dict) -> str:
    """Raw hash plus the text checks of the whole record in one C pass: encoding fails on undecodable bytes,
    a NUL shows as an escape, and a record shorter than the text limit cannot hold a too-long field."""
    try:
        data = _json_encode(record)
    except UnicodeEncodeError:
        _check_all_text(record)
        raise  # pragma: no cover - _check_all_text raises first
    except Exception:  # noqa: BLE001 - exotic values (sets, objects): hash their pickle
        data = pickle.dumps(record, 4)
    if len(data) > MAX_TEXT or b"\\u0000" in data:
        _check_all_text(record)
    return _blake(data, digest_size=16).hexdigest()


def _check_widths(d: dict, limits: tuple[tuple[str, int], ...], prefix: str, sid: Any) -> None:
    """``text_too_long`` for a text longer than the hub's column (a longer value would fail the whole batch there)."""
    for k, n in limits:
        v = d.get(k)
        if v.__class__ is str and len(v) > n:
            raise RecordError(f"is {len(v)} characters long (limit {n})", code="text_too_long", field=prefix + k,
                              record_id=str(sid)[:128])


def canonicalize(record: dict, mapping: Mapping, *, skus: SkuDictionary = EMPTY_SKUS,
                 now: datetime | None = None) -> dict:
    """Map, convert and validate one source record. Raises :class:`RecordError` naming the field."""
    if record.__class__ is not dict:
        raise RecordError(f"a record must be an object, got {type(record).__name__}", code="wrong_type")
    rhash = _hash_and_check(record)
    h = mapping.header(record)
    sid = h.get("source_order_id")
    if not sid:
        raise RecordError("source order id is missing", code="missing_id", field="source_order_id")
    _check_widths(h, mapping.header_text_limits, "", sid)  # the rest is checked by the generated mapping code
    for k in mapping.money_fields:
        v = h.get(k)
        if v is not None and v < _D0:
            raise RecordError(f"is negative ({v})", code="negative_amount", field=k, record_id=sid)
    status = mapping.status(h.get("source_status"))
    shop = h.get("shop_id") or record.get("_shop")
    source = mapping.source
    h["order_id"] = canonical_order_id(source, shop, sid)
    h["schema_version"] = SCHEMA_VERSION
    h["source_system"] = source
    h["channel"] = mapping.channel
    h["shop_id"] = shop
    h["status"] = status
    h["currency"] = "CNY"
    h["mapping_version"] = mapping.label
    h["raw_hash"] = rhash
    if now is not None:  # as POSIX seconds: comparing datetimes of two different zone objects costs 5× more
        hi, lo = (now + _FUTURE).timestamp(), _MIN_TS
        for k in mapping.time_fields:
            t = h.get(k)
            if t is not None and not lo <= t.timestamp() <= hi:
                raise RecordError(f"{t.isoformat()} is implausible (future or before 1990)", code="implausible_time",
                                  field=k, record_id=sid)
    mob = h.get("receiver_mobile")
    if mob is not None:
        h["receiver_mobile"] = normalize_mobile(mob, "receiver_mobile")
    addr = h.get("receiver_address")
    if addr is not None and not (h.get("receiver_province") and h.get("receiver_city") and h.get("receiver_district")):
        a = normalize_address_cached(h.get("receiver_province"), h.get("receiver_city"), h.get("receiver_district"),
                                     addr)
        h["receiver_province"], h["receiver_city"], h["receiver_district"] = a.province, a.city, a.district
    _check_widths(h, _DERIVED_LIMITS, "", sid)
    raw_lines = convert.path(record, mapping.lines_path) if mapping.lines_nested else record.get(mapping.lines_key)
    if raw_lines.__class__ is not list or not raw_lines:
        raise RecordError("the order has no lines", code="no_lines", field=".".join(mapping.lines_path),
                          record_id=sid)
    if len(raw_lines) > MAX_LINES:
        raise RecordError(f"has {len(raw_lines)} lines (limit {MAX_LINES})", code="too_many_lines", field="lines",
                          record_id=sid)
    lines, goods, gift = mapping.lines(raw_lines, status, skus.canonical_code if skus is not EMPTY_SKUS else None,
                                       mapping.line_status or mapping.status, mapping.refund_status, sid)
    limits = mapping.line_text_limits if skus is EMPTY_SKUS else _WITH_SKU + mapping.line_text_limits
    for i, ln in enumerate(lines) if limits else ():
        _check_widths(ln, limits, f"lines[{i}].", sid)
    h["lines"] = lines
    if h.get("goods_amount") is None:
        h["goods_amount"] = goods
    if h.get("total_amount") is None:
        h["total_amount"] = goods + (h.get("shipping_fee") or _D0) - (h.get("discount_amount") or _D0)
    for k in ("goods_amount", "total_amount"):  # sums of amounts that are each in range
        if abs(h[k]) >= convert.MAX_DECIMAL:
            raise RecordError(f"{h[k]:.4E} is out of range", code="number_out_of_range", field=k, record_id=sid)
    if h.get("has_gift") is None:
        h["has_gift"] = gift
    return h


_FUTURE = timedelta(days=1)
_MIN_TS = convert.MIN_TIME.timestamp()


@dataclass
class QuarantineEntry:
    """A record that could not become a canonical order, with why (reason code, field) and the raw record."""

    source_system: str
    source_order_id: str | None
    reason_code: str
    field: str | None
    message: str
    raw: Any
    mapping_version: str | None = None

    @classmethod
    def of_record(cls, rec: Any, exc: RecordError, mapping: Mapping) -> "QuarantineEntry":
        """A record the canonical layer rejected."""
        return cls(mapping.source, exc.record_id or _guess_id(rec, mapping), exc.code, exc.field, exc.message, rec,
                   mapping.label)

    @classmethod
    def of_source(cls, err: RecordError, mapping: Mapping) -> "QuarantineEntry":
        """A record the source itself could not read (its error carries the record)."""
        return cls(err.details.get("source_system") or mapping.source, err.record_id, err.code, err.field,
                   err.message, err.details.get("record"), mapping.label)


@dataclass
class BatchResult:
    orders: list[dict] = field(default_factory=list)
    quarantined: list[QuarantineEntry] = field(default_factory=list)

    @property
    def held(self) -> list[dict]:
        return [o for o in self.orders if o.get("held")]


def _guess_id(record: Any, mapping: Mapping) -> str | None:
    try:
        v = mapping.header(record).get("source_order_id") if isinstance(record, dict) else None
    except Exception:  # noqa: BLE001
        v = None
    if v is None and isinstance(record, dict):
        spec = mapping.spec.get("header", {}).get("source_order_id")
        p = spec if isinstance(spec, str) else (spec or {}).get("path") if isinstance(spec, dict) else None
        if p:
            v = convert.first_path(record, tuple(tuple(a.split(".")) for a in p.split("|")))
    if v is None:
        return None
    s = str(v)
    return s[:128]


class Canonicalizer:
    """Runs the canonical layer over batches: map → validate → clean → rules. Keeps cross-batch memory
    (duplicate-submission index, merge hints, consumed credit and stock) for the life of one run."""

    def __init__(self, mapping: Mapping, *, skus: SkuDictionary | None = None, rules: Any = None,
                 test_filter: TestOrderFilter | None = None, duplicates: DuplicateDetector | None = None,
                 context: Any = None) -> None:
        from orderhub.transforms.rules import RuleContext

        self.mapping = mapping
        self.skus = skus or EMPTY_SKUS
        self.rules = rules
        self.test_filter = test_filter if test_filter is not None else TestOrderFilter()
        self.duplicates = duplicates if duplicates is not None else DuplicateDetector()
        self.context = context or RuleContext()

    def run(self, records: Iterable[dict], *, now: datetime | None = None) -> BatchResult:
        out = BatchResult()
        now = now or datetime.now(timezone.utc)
        mapping, skus = self.mapping, self.skus
        orders = out.orders
        for rec in records:
            try:
                orders.append(canonicalize(rec, mapping, skus=skus, now=now))
            except RecordError as exc:
                out.quarantined.append(QuarantineEntry.of_record(rec, exc, mapping))
        if self.rules is not None:
            self.rules.decide_batch(orders, self.context, skus=skus, test_filter=self.test_filter,
                                    duplicates=self.duplicates)
        return out
