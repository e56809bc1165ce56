"""The columnar engine: a batch of ERP orders canonicalized as Polars columns instead of one Python dict per order.

The row engine (:mod:`orderhub.transforms.canonical`, :mod:`orderhub.transforms.rules`) builds and checks one dict
per order and per line; on two cores that per-value work, not the databases, bounds a bulk sync. This engine runs
the same mapping and the same rule set as vectorised expressions over the whole batch, and it is exact by
construction rather than by approximation: every order for which any vectorised check is not clearly passed — a
value out of range or too long, a phone number or an address outside the fast patterns, a hold by any stateless
rule, a price check too close to its tolerance to decide in floating point — is marked for the **row engine**,
which then produces exactly the order, the hold or the quarantine entry it always would. Orders already in the hub
go the same way (update semantics stay where they are). What the engine decides itself are clean new orders: their
hub row, their stored lines, their raw hash (bit-identical to :func:`~orderhub.transforms.canonical.raw_hash`) and
their stateless decisions (priority, routing, auto-confirmation). The stateful rules (duplicate submissions, merge
hints) run afterwards, for both kinds of order in read order, on the same memories the row engine uses.

:func:`plan` says whether a pipeline's mapping and rule set are within what the engine compiles; anything outside
raises :class:`Declined` with the reason, and the pipeline runs on the row engine. Polars and connectorx are the
optional extra ``columnar`` (``pip install 'orderhub[columnar]'``).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from orderhub.transforms.canonical import MAX_LINES, MAX_TEXT
from orderhub.transforms.cleaning import _PROV_PREFIX, MUNICIPALITIES, PROVINCE_REGION, PROVINCES, SkuDictionary, \
    TestOrderFilter
from orderhub.transforms.mapping import DEFAULT_TYPES, LINE_LIMITS, Mapping
from orderhub.transforms.model import MAX_CHARS, canonical_order_id
from orderhub.transforms.status import HOLDABLE, ON_HOLD, RANK

try:  # the compiled per-order JSON and BLAKE2b (setup.py builds it when a C compiler is there)
    from orderhub.transforms import _native
except ImportError:  # pragma: no cover - a build without a compiler
    _native = None

MAX_D = 1e14            # convert.MAX_DECIMAL: |amount| must stay below it
_BAND = 1e-9            # relative margin inside which a float comparison is left to the row engine
STATUS_MARK = "\x00S\x00"  # placeholder for the final status in a line's JSON (NUL never reaches a clean order)
_CITY_RE = r"^(.{1,12}?(?:自治州|地区|盟|市))"      # cleaning._CITY / _DISTRICT, same leftmost-first semantics
_DISTRICT_RE = r"^(.{1,12}?(?:自治县|自治旗|新区|区|县|旗|市))"
_PROV_RE = "^(" + "|".join(re.escape(n) for full, short in _PROV_PREFIX for n in (full, short)) + ")"
_PROV_FULL = {n: PROVINCES[short] for full, short in _PROV_PREFIX for n in (full, short)}
_EDGE_SPACE = r"^[\s\x1c-\x1f]|[\s\x1c-\x1f]$"      # str.strip() would change it (Python counts \x1c-\x1f as space)
_LINE_FIELDS = ("source_line_id", "line_no", "source_sku", "sku_name", "qty", "unit_price", "amount", "is_gift")
_HEADER_TYPES = ("str", "decimal", "money", "int", "bool", "time")


class Declined(Exception):
    """This pipeline is outside what the columnar engine compiles (the message says what); the row engine runs it."""


def _pl():  # noqa: ANN202
    try:
        import polars as pl
    except ImportError:
        raise Declined("Polars is not installed (pip install 'orderhub[columnar]')") from None
    return pl


@dataclass
class Field:
    """One mapped field: a source column (or a constant) and its canonical type."""

    column: str | None
    typ: str
    const: Any = None


def _field(spec: Any, fld: str, key: str) -> Field:
    typ = DEFAULT_TYPES.get(fld, "str")
    if isinstance(spec, (int, float, bool)) or spec is None:
        return Field(None, "const", spec)
    if isinstance(spec, dict):
        if "const" in spec and set(spec) == {"const"}:
            return Field(None, "const", spec["const"])
        if set(spec) - {"path", "type"} or "path" not in spec:
            raise Declined(f"{key}: options {sorted(set(spec) - {'path'})} are not compiled by the columnar engine")
        typ = spec.get("type", typ)
        spec = spec["path"]
    if not isinstance(spec, str) or "." in spec or "|" in spec or not spec.strip():
        raise Declined(f"{key}: nested or alternative paths are not compiled by the columnar engine")
    if typ not in _HEADER_TYPES:
        raise Declined(f"{key}: type {typ!r}")
    return Field(spec.strip(), typ)


@dataclass
class Plan:
    """A mapping and rule set compiled for the columnar engine, for one source's column types."""

    mapping: Mapping
    rules: Any
    skus: SkuDictionary | None
    test_filter: TestOrderFilter | None
    customer_levels: dict[str, str]
    header: dict[str, Field]
    lines: dict[str, Field]
    header_cols: list[str]          # the reader's header columns, in its order (the raw record's key order)
    line_cols: list[str]
    scales: dict[str, int]          # DECIMAL columns (header and line) → declared scale
    datetimes: set[str]             # naive DATETIME columns
    strings: set[str]
    ints: set[str]
    offset: timedelta               # the reader's fixed zone for naive DATETIMEs
    lines_field: str
    header_key: str
    join_key: str
    status_table: dict[str, str] = field(default_factory=dict)


def plan(mapping: Mapping, rules: Any, *, skus: SkuDictionary | None, test_filter: TestOrderFilter | None,
         customer_levels: dict[str, str], credit: bool, stock: bool, header_types: dict[str, Any],
         line_types: dict[str, Any], zone: Any, lines_field: str, header_key: str, join_key: str) -> Plan:
    """Compile, or raise :class:`Declined` naming the first thing the engine does not cover."""
    import sqlalchemy as sa

    _pl()
    spec = mapping.spec
    if spec.get("money_unit", "yuan") != "yuan":
        raise Declined("money_unit fen")
    if spec.get("line_status_map") or spec.get("refund_status_map"):
        raise Declined("line or refund status maps")
    lines_spec = spec["lines"]
    if str(lines_spec["path"]) != lines_field:
        raise Declined(f"lines.path {lines_spec['path']!r} is not the reader's nested line list {lines_field!r}")
    header = {f: _field(v, f, f"header.{f}") for f, v in spec["header"].items()}
    lines = {f: _field(v, f, f"lines.fields.{f}") for f, v in lines_spec["fields"].items()}
    for f in ("receiver_province", "receiver_city", "receiver_district", "shop_id", "goods_amount", "has_gift",
              "customer_level", "warehouse_hint", "privacy_id"):
        if f in header:
            raise Declined(f"header.{f} mapped (the engine derives it)")
    if "total_amount" not in header or header["total_amount"].column is None:
        raise Declined("header.total_amount not mapped to a column")
    if set(lines) - set(_LINE_FIELDS):
        raise Declined(f"line fields {sorted(set(lines) - set(_LINE_FIELDS))}")
    for f in ("qty", "unit_price", "amount"):
        if f not in lines or lines[f].column is None:
            raise Declined(f"lines.fields.{f} not mapped to a column")
    if offset_of(zone) is None:
        raise Declined(f"time zone {zone} has more than one UTC offset")
    if "_shop" in header_types or lines_field in header_types:
        raise Declined("a header column is named _shop or like the line list")
    scales, datetimes, strings, ints = {}, set(), set(), set()
    for side, types in (("h", header_types), ("l", line_types)):
        for col, typ in types.items():
            key = col if side == "h" else f"l.{col}"
            if isinstance(typ, sa.Numeric) and not isinstance(typ, sa.Float) and typ.scale is not None \
                    and (typ.precision or 0) <= 38:
                scales[key] = int(typ.scale)
            elif isinstance(typ, sa.DateTime) and not getattr(typ, "timezone", False):
                datetimes.add(key)
            elif isinstance(typ, (sa.String, sa.Text)) and not isinstance(typ, (sa.LargeBinary, sa.Enum)):
                strings.add(key)
            elif isinstance(typ, sa.Integer):  # MySQL's TINYINT … BIGINT are Integer subclasses
                if getattr(typ, "unsigned", False) and isinstance(typ, sa.BigInteger):
                    raise Declined(f"column {col}: {typ} (may exceed a signed 64-bit integer)")
                ints.add(key)
            else:
                raise Declined(f"column {col}: type {typ} is not compiled by the columnar engine")
    for f, fd in header.items():
        if fd.column is not None and fd.column not in header_types:
            raise Declined(f"header.{f}: column {fd.column!r} is not read")
        if fd.column is not None and not _compatible(fd, fd.column, scales, datetimes, strings, ints):
            raise Declined(f"header.{f}: a {fd.typ} from column {fd.column!r} of type {header_types[fd.column]}")
    for f, fd in lines.items():
        key = f"l.{fd.column}"
        if fd.column is not None and fd.column not in line_types:
            raise Declined(f"lines.fields.{f}: column {fd.column!r} is not read")
        if fd.column is not None and not _compatible(fd, key, scales, datetimes, strings, ints):
            raise Declined(f"lines.fields.{f}: a {fd.typ} from column {fd.column!r} of type {line_types[fd.column]}")
    if rules is not None:
        if rules.credit_factor is not None and (credit or rules.credit_limits):
            raise Declined("the credit rule")
        if rules.inventory_factor is not None and stock:
            raise Declined("the inventory rule")
        if rules.capacity:
            raise Declined("warehouse capacity")
    # an unmapped required field, or a status mapped to on_hold: those orders go to the row engine one by one
    return Plan(mapping, rules, skus, test_filter, dict(customer_levels), header, lines, list(header_types),
                list(line_types), scales, datetimes, strings, ints, offset_of(zone), lines_field, header_key, join_key,
                dict(mapping.status.table))


def _compatible(fd: Field, key: str, scales: dict, datetimes: set, strings: set, ints: set) -> bool:
    if fd.typ == "str":
        return key in strings or key in ints
    if fd.typ in ("decimal", "money"):
        return key in scales
    if fd.typ in ("int", "bool"):
        return key in ints
    if fd.typ == "time":
        return key in datetimes
    return False


def offset_of(zone: Any) -> timedelta | None:
    """The one UTC offset of a reader zone (``load_timezone`` gives a fixed ``timezone`` for such zones)."""
    if isinstance(zone, timezone):
        return zone.utcoffset(None)
    return None


# ---------------------------------------------------------------------------------------------------------------
# JSON text, as msgspec writes it (the raw hash and the stored lines)
# ---------------------------------------------------------------------------------------------------------------
def json_string(pl, e, plain: bool = False):  # noqa: ANN001, ANN201
    """A String expression as a JSON string literal (msgspec's escaping; null → null). ``plain``: no value holds a
    character JSON escapes (see :func:`_plain`), so quoting is the whole encoding (several times cheaper)."""
    if plain:
        return pl.when(e.is_null()).then(pl.lit("null")).otherwise(pl.lit('"') + e + pl.lit('"'))
    return pl.struct(e.alias("s")).struct.json_encode().str.slice(5).str.head(-1)


_ESCAPED = r'[\x00-\x1f"\\]'   # what msgspec escapes in a string (checked: nothing else, not even U+2028)


def _plain(pl, frame: Any, cols: list[str]) -> set[str]:  # noqa: ANN001
    """The String columns of ``frame`` in which no value holds a character JSON escapes (one pass each)."""
    strs = [c for c in cols if frame.schema.get(c) == pl.String]
    if not strs or not len(frame):
        return set(strs)
    row = frame.select([pl.col(c).str.contains(_ESCAPED).any().alias(c) for c in strs]).row(0)
    return {c for c, escaped in zip(strs, row) if not escaped}


def _iso(pl, e, off: timedelta):  # noqa: ANN001, ANN201
    """A naive local DATETIME as msgspec writes the aware value: seconds, microseconds only when non-zero."""
    return e.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f").str.strip_suffix(".000000") + pl.lit(_zone_suffix(off))


def _zone_suffix(off: timedelta) -> str:
    """How msgspec ends an ISO time at this UTC offset (``Z``, ``+08:00``)."""
    secs = int(off.total_seconds())
    return "Z" if secs == 0 else f"{'+' if secs >= 0 else '-'}{abs(secs) // 3600:02d}:{abs(secs) % 3600 // 60:02d}"


def _json_value(pl, p: Plan, col: str, key: str, plain: set[str], nulls: bool):  # noqa: ANN001, ANN201
    c = pl.col(col)
    if key in p.scales:
        text = pl.lit('"') + _decimal_text(pl, c, p.scales[key]) + pl.lit('"')
    elif key in p.strings:
        return json_string(pl, c, col in plain)
    elif key in p.datetimes:
        text = pl.lit('"') + _iso(pl, c, p.offset) + pl.lit('"')
    else:
        text = c.cast(pl.String)
    return pl.when(c.is_null()).then(pl.lit("null")).otherwise(text) if nulls else text


def _json_object(pl, p: Plan, frame: Any, cols: list[str], prefix: str):  # noqa: ANN001, ANN201
    """One JSON object per row of ``frame`` (``cols`` in order), as msgspec writes the row engine's record."""
    plain = _plain(pl, frame, [c for c in cols if prefix + c in p.strings])
    parts = []
    for i, name in enumerate(cols):
        parts += [pl.lit(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"),
                  _json_value(pl, p, name, prefix + name, plain, frame[name].null_count() > 0)]
    return pl.concat_str(parts)


def _decimal_text(pl, c, scale: int):  # noqa: ANN001, ANN201
    """A Decimal(38, scale) expression as Python's ``str(Decimal)`` (msgspec's text) of the value at that scale:
    plain, or scientific when the adjusted exponent is below -6 (``0E-10``, ``1.000E-7``), which only a scale
    above 6 allows."""
    text = c.cast(pl.String)
    if scale <= 6:
        return text
    digits = text.str.replace("-", "", literal=True).str.replace(".", "", literal=True).str.strip_chars_start("0")
    digits = pl.when(digits == "").then(pl.lit("0")).otherwise(digits)
    n = digits.str.len_bytes().cast(pl.Int32)
    adjusted = n - (1 + scale)
    sci = pl.concat_str([pl.when(text.str.starts_with("-")).then(pl.lit("-")).otherwise(pl.lit("")),
                         digits.str.slice(0, 1),
                         pl.when(n > 1).then(pl.lit(".") + digits.str.slice(1)).otherwise(pl.lit("")),
                         pl.lit("E"), adjusted.cast(pl.String)])
    return pl.when(adjusted < -6).then(sci).otherwise(text)


def _dec_text_expr(pl, e):  # noqa: ANN001, ANN201
    """cleaning.dec_text as an expression (the duplicate fingerprint's amounts)."""
    s = e.cast(pl.String)
    return pl.when(e.is_null()).then(pl.lit("")).when(s.str.contains(".", literal=True)) \
        .then(s.str.strip_chars_end("0").str.strip_chars_end(".")).otherwise(s)


# ---------------------------------------------------------------------------------------------------------------
# the batch
# ---------------------------------------------------------------------------------------------------------------
def align(p: Plan, h: Any, ln: Any) -> tuple[Any, Any]:
    """A page as read, ready for the expressions: decimals at their declared scale, each header numbered
    (``_pos``), each line joined to its header's number, lines in header order."""
    pl = _pl()
    h = h.with_row_index("_pos")
    # connectorx hands MySQL DECIMAL over as Decimal(38, 10)
    h = h.with_columns([pl.col(c).cast(pl.Decimal(38, s)) for c, s in p.scales.items() if "." not in c
                        and c in h.columns])
    ln = ln.with_columns([pl.col(c[2:]).cast(pl.Decimal(38, s)) for c, s in p.scales.items() if c.startswith("l.")])
    ln = ln.join(h.select(pl.col(p.header_key).alias(p.join_key), "_pos"), on=p.join_key, how="inner",
                 maintain_order="left")
    # the reader sorts lines by join key and headers by that same (integer) key: each order's lines are one run
    # of rows, in header order, which lets Polars group them as slices instead of hashing (checked: one pass)
    if not ln["_pos"].is_sorted():
        ln = ln.sort("_pos", maintain_order=True)
    return h, ln.with_columns(pl.col("_pos").set_sorted())


def raw_records(p: Plan, h: Any, ln: Any, shop: str) -> Any:
    """Each order's raw record (header, its lines nested, ``_shop``) as the JSON text the row engine's
    :func:`~orderhub.transforms.canonical.raw_hash` encodes, bit for bit, for an :func:`align`-ed page."""
    pl = _pl()
    lj = ln.select("_pos", (_json_object(pl, p, ln, p.line_cols, "l.") + pl.lit("}")).alias("j")) \
        .group_by("_pos", maintain_order=True).agg("j").with_columns(pl.col("j").list.join(","))
    return h.select("_pos", _json_object(pl, p, h, p.header_cols, "").alias("j")) \
        .join(lj, on="_pos", how="left", maintain_order="left") \
        .select(pl.col("j") + pl.lit(f',{json.dumps(p.lines_field, ensure_ascii=False)}:[')
                + pl.col("j_right").fill_null("") + pl.lit('],"_shop":') + pl.lit(json.dumps(shop, ensure_ascii=False))
                + pl.lit("}"))["j"]


def raw_hashes(raw: Any) -> list[str]:
    """:func:`~orderhub.transforms.canonical.raw_hash` of each :func:`raw_records` text (BLAKE2b, 16 bytes, hex)."""
    pl = _pl()
    blake = hashlib.blake2b
    return [blake(b, digest_size=16).hexdigest() for b in raw.cast(pl.Binary).to_list()]


def record_hashes(p: Plan, h: Any, ln: Any, shop: str) -> list[str]:
    """``raw_hashes(raw_records(p, h, ln, shop))`` for an :func:`align`-ed page: written and hashed in C by
    :mod:`orderhub.transforms._native` from the columns' Arrow buffers (GIL released) when it is built and knows
    every column's type, else by the Polars expressions and hashlib."""
    spec = _native_spec(p, h, ln, shop) if _native is not None else None
    if spec is None:
        return raw_hashes(raw_records(p, h, ln, shop))
    header, lines, middle, tail = spec
    return _native.raw_records(header, lines, ln["_pos"].cast(_pl().UInt32).rechunk(), middle, tail, 16)


def _native_spec(p: Plan, h: Any, ln: Any, shop: str) -> tuple[list, list, bytes, bytes] | None:
    """The columns of a page for ``_native.raw_records``: (literal, series, zone suffix) in record order, with the
    literal text between; None when a column's type is not one the C encoder writes as the Polars expressions do."""
    pl = _pl()
    suffix = _zone_suffix(p.offset).encode() if p.offset is not None else b""

    def cols(frame: Any, names: list[str], prefix: str) -> list | None:
        out = []
        for i, name in enumerate(names):
            key, dt = prefix + name, frame.schema[name]
            ok = (isinstance(dt, pl.Decimal) and dt.scale == p.scales[key]) if key in p.scales else \
                dt == pl.String if key in p.strings else \
                (dt == pl.Datetime("us") and p.offset is not None) if key in p.datetimes else \
                (dt.is_integer() or dt == pl.Boolean)
            if not ok:
                return None
            lit = ("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"
            out.append((lit.encode(), frame[name].rechunk(), suffix))
        return out

    header, lines = cols(h, p.header_cols, ""), cols(ln, p.line_cols, "l.")
    if header is None or lines is None:
        return None
    middle = f",{json.dumps(p.lines_field, ensure_ascii=False)}:[".encode()
    tail = f'],"_shop":{json.dumps(shop, ensure_ascii=False)}}}'.encode()
    return header, lines, middle, tail


def order_ids(p: Plan, h: Any, source: str, shop: str | None) -> list[str | None]:
    """:func:`~orderhub.transforms.model.canonical_order_id` of each order of a page as read (None where it has no
    source order id), hashed in C when :mod:`orderhub.transforms._native` is built."""
    sids = source_id_series(p, h)
    if _native is not None:
        return _native.prefixed_hashes(sids.rechunk(), f"{source}\x1f{shop or ''}\x1f".encode(), 12, b"o_")
    return [canonical_order_id(source, shop, s) if s is not None else None for s in sids.to_list()]


def canonicalize(p: Plan, h: Any, ln: Any, *, shop: str, now: datetime) -> Any:
    """Map, check and decide (stateless rules) a page read by the columnar reader (``h``: header columns,
    ``ln``: line columns, both in the reader's column order, lines sorted by join key and line key). Returns one
    row per source order, in read order: rows with ``_ok`` are decided here (hub columns filled, the stored lines in
    ``_lines`` with :data:`STATUS_MARK` for the final status); the others are for the row engine."""
    pl = _pl()
    m = p.mapping
    h, ln = align(p, h, ln)
    hashes = record_hashes(p, h, ln, shop)
    # --- checks over the whole raw record: text limits and NULs (canonical._hash_and_check), datetime years
    bad = [pl.lit(False)]
    lbad = [pl.lit(False)]
    for cols, frame_bad, prefix in ((p.header_cols, bad, ""), (p.line_cols, lbad, "l.")):
        for c in cols:
            key = prefix + c
            if key in p.strings:
                frame_bad.append(pl.col(c).str.len_chars() > MAX_TEXT)
                frame_bad.append(pl.col(c).str.contains("\x00", literal=True))
            elif key in p.datetimes:
                frame_bad.append(pl.col(c).is_not_null() & ~pl.col(c).dt.year().is_between(1000, 9999))
    # --- header fields, typed
    exprs: dict[str, Any] = {}
    for f, fd in p.header.items():
        e, b = _typed(pl, p, fd, fd.column, "" , MAX_CHARS.get(f), f in m.money_fields)
        exprs[f] = e
        bad.extend(b)
    h = h.with_columns(bad_h=pl.any_horizontal(bad)).with_columns(**{f"c_{k}": v for k, v in exprs.items()})
    # --- lines, typed
    lexprs: dict[str, Any] = {}
    for f, fd in p.lines.items():
        e, b = _typed(pl, p, fd, fd.column, "l.", LINE_LIMITS.get(f), f in ("qty", "unit_price", "amount"))
        lexprs[f] = e
        lbad.extend(b)
    ln = ln.with_columns(bad_l=pl.any_horizontal(lbad)).with_columns(**{f"c_{k}": v for k, v in lexprs.items()})
    # each line's position in its order: the row number less its order's first row (the lines of an order are
    # one run of rows: no window function needed)
    row = pl.int_range(pl.len())
    ln = ln.with_columns(_i=row - pl.when((pl.col("_pos") != pl.col("_pos").shift(1)).fill_null(True)).then(row)
                         .forward_fill() + 1)
    if "line_no" not in lexprs:
        ln = ln.with_columns(c_line_no=pl.col("_i"))
    else:
        ln = ln.with_columns(c_line_no=pl.col("c_line_no").fill_null(pl.col("_i")))
    if "is_gift" not in lexprs:
        ln = ln.with_columns(c_is_gift=pl.lit(False))
    for f in ("source_line_id", "source_sku", "sku_name"):
        if f not in lexprs:
            ln = ln.with_columns(pl.lit(None, pl.String).alias(f"c_{f}"))
    if "source_line_id" in lexprs and f"l.{p.lines['source_line_id'].column}" in p.ints:
        ln = ln.with_columns(pl.col("c_source_line_id").cast(pl.String))
    qty, price, amount = pl.col("c_qty"), pl.col("c_unit_price"), pl.col("c_amount")
    lchecks = [qty.is_null(), qty <= 0, price.is_null(), amount.is_null()]  # sign and range: _typed
    # --- SKUs through the dictionary (per distinct SKU/name, in Python)
    if p.skus is not None:
        pairs = ln.select("c_source_sku", "c_sku_name").unique()
        canon = [p.skus.canonical_code(s, n) for s, n in zip(pairs["c_source_sku"].to_list(),
                                                             pairs["c_sku_name"].to_list())]
        known = [p.skus.lookup(s, n) is not None for s, n in zip(pairs["c_source_sku"].to_list(),
                                                                 pairs["c_sku_name"].to_list())]
        pairs = pairs.with_columns(c_canonical_sku=pl.Series(canon, dtype=pl.String),
                                   _known=pl.Series(known, dtype=pl.Boolean))
        ln = ln.join(pairs, on=["c_source_sku", "c_sku_name"], how="left", nulls_equal=True, maintain_order="left")
        lchecks.append(pl.col("c_canonical_sku").str.len_chars() > 128)
    else:
        ln = ln.with_columns(c_canonical_sku=pl.col("c_source_sku"), _known=pl.lit(False))
    rules = p.rules
    if rules is not None and rules.tolerance is not None:
        pf, af, qf = (x.cast(pl.Float64) for x in (price, amount, qty))
        if rules.min_price is not None:
            lchecks.append((pf < float(rules.min_price) * (1 + _BAND) + _BAND) & ~pl.col("c_is_gift"))
        if rules.max_price is not None:
            lchecks.append(pf > float(rules.max_price) * (1 - _BAND) - _BAND)
        tol = float(rules.tolerance)
        diff = (pf * qf - af).abs() - (tol + af * 0.5)
        lchecks.append(diff > -(_BAND * (1 + (pf * qf).abs() + af.abs())))
    if rules is not None and rules.unknown_sku_holds:
        lchecks.append(~pl.col("_known"))
    tf_ = (rules.test_filter or p.test_filter) if rules is not None else None
    if tf_ is not None and tf_.skus:
        lchecks.append(pl.col("c_canonical_sku").is_in(list(tf_.skus)).fill_null(False))
    ln = ln.with_columns(bad_l=pl.col("bad_l") | pl.any_horizontal(lchecks))
    # the line's stored JSON (hub_orders.lines): LINE_KEYS order, decimals as text, status filled in later
    plain = _plain(pl, ln, ["c_source_line_id", "c_canonical_sku", "c_source_sku", "c_sku_name"])
    line_json = pl.concat_str([
        pl.lit('{"line_no":'), pl.col("c_line_no").cast(pl.String),
        pl.lit(',"source_line_id":'), json_string(pl, pl.col("c_source_line_id"), "c_source_line_id" in plain),
        pl.lit(',"canonical_sku":'), json_string(pl, pl.col("c_canonical_sku"), "c_canonical_sku" in plain),
        pl.lit(',"source_sku":'), json_string(pl, pl.col("c_source_sku"), "c_source_sku" in plain),
        pl.lit(',"sku_name":'), json_string(pl, pl.col("c_sku_name"), "c_sku_name" in plain),
        pl.lit(',"qty":"'), qty.cast(pl.String), pl.lit('","unit_price":"'), price.cast(pl.String),
        pl.lit('","amount":"'), amount.cast(pl.String),
        pl.lit('","is_gift":'), pl.when(pl.col("c_is_gift")).then(pl.lit("true")).otherwise(pl.lit("false")),
        pl.lit(f',"line_status":"{STATUS_MARK}","source_line_status":null,"refund_status":"none"}}'),
    ], ignore_nulls=False)
    ln = ln.with_columns(_json=line_json)
    per_order = ln.group_by("_pos", maintain_order=True).agg(
        _n=pl.len(), _bad_l=pl.col("bad_l").any(), _goods=pl.col("c_amount").sum(), _gift=pl.col("c_is_gift").any(),
        _lines=pl.col("_json"),   # lists joined below: list.join is many times faster than str.join per group
        _fp=pl.concat_str([pl.col("c_canonical_sku").fill_null(""), pl.lit("\x1d"), _dec_text_expr(pl, qty)]),
        **({"_classes": pl.col("c_canonical_sku").replace_strict(p.skus.product_class, default=None,
                                                                 return_dtype=pl.String).drop_nulls().unique()}
           if p.skus is not None and p.skus.product_class else {}))
    per_order = per_order.with_columns(pl.col("_lines").list.join(","), pl.col("_fp").list.sort().list.join("\x1e"))
    h = h.join(per_order, on="_pos", how="left", maintain_order="left")
    del ln, per_order
    h = h.with_columns(hash=pl.Series(hashes, dtype=pl.String))
    # --- canonical header (canonicalize())
    col = lambda f, dt=pl.String: pl.col(f"c_{f}") if f in exprs else pl.lit(None, dt)  # noqa: E731
    checks = [pl.col("bad_h"), pl.col("_bad_l").fill_null(True), pl.col("_n").fill_null(0) == 0,
              pl.col("_n").fill_null(0) > MAX_LINES, col("source_order_id").is_null()]
    status = col("source_status").replace_strict(p.status_table, default=None, return_dtype=pl.String) \
        if "source_status" in exprs else pl.lit(None, pl.String)
    h = h.with_columns(status=status)
    checks += [pl.col("status").is_null(), pl.col("status") == ON_HOLD]
    hi = int(((now + timedelta(days=1)).timestamp() - 1) * 1e6)
    lo = int((datetime(1990, 1, 1, tzinfo=timezone.utc).timestamp() + 1) * 1e6)
    for f in ("created_at", "paid_at", "updated_at"):
        if f in exprs:
            us = pl.col(f"c_{f}").dt.epoch("us")
            checks.append(pl.col(f"c_{f}").is_not_null() & ((us < lo) | (us > hi)))
    goods = pl.col("_goods")
    checks.append(goods.cast(pl.Float64).abs() >= MAX_D * (1 - _BAND))
    # mobile: the fast pattern only (anything else is the row engine's normalize_mobile)
    if "receiver_mobile" in exprs:
        mob = pl.col("c_receiver_mobile")
        checks.append(mob.is_not_null() & ~mob.str.contains(r"^1[3-9][0-9]{9}$"))
    h = h.with_columns(_bad=pl.any_horizontal(checks))
    # address: province / city / district from the text (cleaning.normalize_address)
    if "receiver_address" in exprs:
        h = _address(pl, h, pl.col("c_receiver_address"))
    else:
        h = h.with_columns(receiver_province=pl.lit(None, pl.String), receiver_city=pl.lit(None, pl.String),
                           receiver_district=pl.lit(None, pl.String))
    # --- stateless rules (RuleSet.decide); anything that would hold goes to the row engine
    cust = col("customer_id")
    level = cust.replace_strict(p.customer_levels, default=None, return_dtype=pl.String) \
        if p.customer_levels and rules is not None else pl.lit(None, pl.String)
    h = h.with_columns(customer_level=level)
    total = col("total_amount", pl.Decimal(38, 4))
    holdable = pl.col("status").is_in(list(HOLDABLE))
    rbad = [pl.lit(False)]
    if rules is not None:
        words = list(rules.urgent_words)
        spec_req = col("special_requirements")
        urgent_word = spec_req.is_not_null() & spec_req.str.contains_any(words) if words else pl.lit(False)
        mapped_urgent = col("is_urgent", pl.Boolean).fill_null(False) if "is_urgent" in exprs else pl.lit(False)
        is_urgent = mapped_urgent | urgent_word.fill_null(False)
        tf = total.cast(pl.Float64).fill_null(0.0)
        high = pl.col("customer_level").is_in(list(rules.vip_levels)).fill_null(False)
        if rules.high_amount is not None:
            thr = float(rules.high_amount)
            near = (tf - thr).abs() <= _BAND * (1 + abs(thr))
            rbad.append(near)
            high = high | (tf >= thr)
        h = h.with_columns(priority=pl.when(is_urgent).then(pl.lit("urgent")).when(high).then(pl.lit("high"))
                           .otherwise(pl.lit("normal")),
                           is_urgent=pl.when(is_urgent).then(pl.lit(True)).otherwise(
                               col("is_urgent", pl.Boolean) if "is_urgent" in exprs else pl.lit(None, pl.Boolean)))
        hb = []  # holds of holdable orders
        for f in rules.required:
            hb.append(_empty(pl, f, exprs, h))
        if tf_ is not None:
            if tf_.keywords:
                for f in TestOrderFilter._FIELDS:
                    if f in exprs:
                        hb.append(pl.col(f"c_{f}").str.contains_any(list(tf_.keywords)).fill_null(False))
            if tf_.customers:
                hb.append(cust.is_in(list(tf_.customers)).fill_null(False))
        if rules.tolerance is not None and rules.max_total is not None:
            mt = float(rules.max_total)
            hb.append(tf > mt * (1 - _BAND) - _BAND)
        if rules.tolerance is not None and rules.check_total:
            hb.append(pl.lit(True))  # goods + shipping − discount vs total: left to the row engine
        # routing: the first route whose conditions hold, else the default warehouse
        region = pl.col("receiver_province").replace_strict(PROVINCE_REGION, default=None, return_dtype=pl.String)
        wh = pl.lit(rules.default_warehouse, pl.String)
        for r in reversed(rules.routes):
            cond = pl.lit(True)
            if r.product_classes and "_classes" not in h.columns:
                cond = pl.lit(False)
            elif r.product_classes:
                cond = cond & pl.col("_classes").list.set_intersection(list(r.product_classes)).list.len().gt(0) \
                    .fill_null(False)
            if r.customer_levels:
                cond = cond & pl.col("customer_level").is_in(list(r.customer_levels)).fill_null(False)
            if r.regions:
                cond = cond & (pl.col("receiver_province").is_in(list(r.regions)).fill_null(False)
                               | region.is_in(list(r.regions)).fill_null(False))
            if r.channels:
                cond = cond & pl.lit(m.channel in r.channels)
            wh = pl.when(cond).then(pl.lit(r.warehouse)).otherwise(wh)
        h = h.with_columns(warehouse_code=pl.when(holdable).then(wh).otherwise(pl.lit(None, pl.String)))
        if rules.routes or rules.default_warehouse:
            hb.append(pl.col("warehouse_code").is_null())
        rbad.append(holdable & pl.any_horizontal([pl.lit(False), *hb]))
    else:
        h = h.with_columns(priority=pl.lit(None, pl.String), warehouse_code=pl.lit(None, pl.String),
                           is_urgent=col("is_urgent", pl.Boolean))
    # a check that is null (unknown) counts as failed: the row engine decides that order
    h = h.with_columns(_ok=~(pl.col("_bad").fill_null(True) | pl.any_horizontal(rbad).fill_null(True)),
                       _holdable=holdable.fill_null(False))
    # the duplicate-submission fingerprint (DuplicateDetector.fingerprint, the same text)
    who = pl.when(cust.is_not_null()).then(cust).otherwise(col("receiver_mobile")).fill_null("")
    h = h.with_columns(_dupkey=pl.concat_str([pl.lit(f"{m.source}\x1f"), who, pl.lit("\x1f"),
                                              pl.col("_fp").fill_null(""), pl.lit("\x1f"), _dec_text_expr(pl, total)]))
    # what the later steps read (the source's own columns, the checks and the helpers go: memory per page)
    return h.select(p.header_key, *(f"c_{k}" for k in exprs), *_OUTPUTS)


#: the columns :func:`canonicalize` returns besides the header key and the mapped fields (``c_<field>``)
_OUTPUTS = ("_ok", "_holdable", "_dupkey", "hash", "_lines", "_goods", "_gift", "status", "customer_level",
            "receiver_province", "receiver_city", "receiver_district", "is_urgent", "priority", "warehouse_code")


def source_id_series(p: Plan, h: Any) -> Any:
    """The page's source order ids (``c_source_order_id`` of :func:`canonicalize`, in read order), alone, as a
    String series."""
    pl = _pl()
    fd = p.header.get("source_order_id")
    if fd is None:
        return pl.Series("s", [None] * len(h), dtype=pl.String)
    e, _ = _typed(pl, p, fd, fd.column, "", None, False)
    return h.select(e.cast(pl.String).alias("s"))["s"]


def _empty(pl, f: str, exprs: dict, h: Any):  # noqa: ANN001, ANN202
    """``not order.get(f)`` for a required field."""
    if f in ("receiver_province", "receiver_city", "receiver_district"):
        return pl.col(f).is_null()
    if f in ("order_id", "source_system", "channel", "status", "currency", "mapping_version", "raw_hash",
             "schema_version", "shop_id"):
        return pl.lit(False)
    if f == "goods_amount":
        return pl.col("_goods").is_null() | (pl.col("_goods") == 0)
    if f not in exprs:
        return pl.lit(True)
    c = pl.col(f"c_{f}")
    dt = h.schema[f"c_{f}"]
    if dt == pl.String:
        return c.is_null() | (c == "")
    if dt == pl.Boolean:
        return ~c.fill_null(False)
    return c.is_null() | (c == 0)


def _typed(pl, p: Plan, fd: Field, column: str | None, prefix: str, limit: int | None, money: bool):  # noqa: ANN001
    """A mapped field as a typed expression and the checks that send a row to the row engine."""
    if fd.typ == "const":
        v = fd.const
        dt = pl.Boolean if isinstance(v, bool) else pl.Int64 if isinstance(v, int) else pl.Float64 \
            if isinstance(v, float) else pl.String
        return pl.lit(v, dt), []
    c = pl.col(column)
    key = prefix + column
    if fd.typ == "str":
        s = c.cast(pl.String) if key in p.ints else c
        s = pl.when(s == "").then(pl.lit(None, pl.String)).otherwise(s)
        return s, ([s.str.len_chars() > limit] if limit is not None else [])
    if fd.typ in ("decimal", "money"):
        b = [c.cast(pl.Float64).abs() >= MAX_D * (1 - _BAND)]
        if money:
            b.append(c < 0)
        return c, b
    if fd.typ == "int":
        return c, []
    if fd.typ == "bool":
        return pl.when(c.is_null()).then(pl.lit(None, pl.Boolean)).otherwise(c != 0), []
    if fd.typ == "time":  # naive local time → the UTC instant
        return (c - pl.duration(seconds=int(p.offset.total_seconds()))).dt.replace_time_zone("UTC"), []
    raise AssertionError(fd.typ)


def _address(pl, h: Any, addr: Any) -> Any:  # noqa: ANN001
    """cleaning.normalize_address(None, None, None, address) as expressions; edge cases go to the row engine."""
    # the first of _PROV_PREFIX's names (full before short) the address starts with: an alternation tries its
    # branches in order at the one position ^ allows, as normalize_address's loop does
    head = addr.str.extract(_PROV_RE, 1)
    h = h.with_columns(_bad=pl.col("_bad") | (addr.is_not_null() & (addr.str.contains(_EDGE_SPACE)
                                                                   | addr.str.contains("\u3000", literal=True))),
                       receiver_province=head.replace_strict(_PROV_FULL, default=None, return_dtype=pl.String),
                       _rest=addr.str.slice(head.str.len_chars().fill_null(0)))
    rest, prov = pl.col("_rest"), pl.col("receiver_province")
    muni = prov.is_in(list(MUNICIPALITIES)).fill_null(False)
    rest = pl.when(muni & rest.str.starts_with(prov)).then(rest.str.slice(prov.str.len_chars())).otherwise(rest)
    h = h.with_columns(_rest=rest)
    rest = pl.col("_rest")
    city_m = rest.str.extract(_CITY_RE, 1)
    h = h.with_columns(receiver_city=pl.when(muni).then(prov).otherwise(city_m),
                       _rest=pl.when(muni & rest.str.starts_with(prov)).then(rest.str.slice(prov.str.len_chars()))
                       .when(~muni & city_m.is_not_null()).then(rest.str.slice(city_m.str.len_chars()))
                       .otherwise(rest))
    rest = pl.col("_rest")
    h = h.with_columns(receiver_district=rest.str.extract(_DISTRICT_RE, 1))
    return h.with_columns(receiver_province=pl.when(addr.is_null()).then(pl.lit(None, pl.String))
                          .otherwise(pl.col("receiver_province")),
                          receiver_city=pl.when(addr.is_null()).then(pl.lit(None, pl.String))
                          .otherwise(pl.col("receiver_city")),
                          receiver_district=pl.when(addr.is_null()).then(pl.lit(None, pl.String))
                          .otherwise(pl.col("receiver_district")))




# ---------------------------------------------------------------------------------------------------------------
# the hub rows of the orders this engine decided
# ---------------------------------------------------------------------------------------------------------------
def hub_frames(p: Plan, f: Any, *, run_id: str, now: datetime, shop: str) -> tuple[Any, Any]:
    """``hub_orders`` rows (columns in ``ORDER_COLS`` order, typed for the binary COPY as
    :func:`~orderhub.connectors.hub.store.polars_types` says) and their ``created`` lineage rows, for the decided
    rows of ``f`` (which carries ``status``, ``held``, ``hold_reasons``, ``merge_hint``)."""
    from orderhub.connectors.hub import schema as t
    from orderhub.connectors.hub.store import LINEAGE_COLS, ORDER_COLS, polars_types

    pl = _pl()
    m, rules = p.mapping, p.rules
    types = polars_types(t.orders)
    stamp = pl.lit(now.astimezone(timezone.utc)).cast(pl.Datetime("us", "UTC"))

    def null(name: str):  # noqa: ANN202
        typ = types[name]
        return pl.lit(None, pl.Decimal(38, 4) if typ == pl.Decimal else typ)

    def mapped(name: str):  # noqa: ANN202
        c = f"c_{name}"
        return pl.col(c) if c in f.columns else null(name)

    special = {
        "order_id": pl.col("order_id"), "source_system": pl.lit(m.source), "channel": pl.lit(m.channel),
        "shop_id": pl.lit(shop), "status": pl.col("status"), "base_status": pl.col("status"),
        "source_hold": pl.lit(False), "status_at": mapped("updated_at"),
        "status_rank": pl.col("status").replace_strict(RANK, default=None, return_dtype=pl.Int32),
        "customer_level": pl.col("customer_level"), "receiver_province": pl.col("receiver_province"),
        "receiver_city": pl.col("receiver_city"), "receiver_district": pl.col("receiver_district"),
        "currency": pl.lit("CNY"), "goods_amount": pl.col("_goods"), "has_gift": pl.col("_gift"),
        "is_urgent": pl.col("is_urgent"), "warehouse_hint": null("warehouse_hint"),
        "held": pl.col("held"), "hold_reasons": pl.col("hold_reasons"),
        "warehouse_code": pl.col("warehouse_code"), "priority": pl.col("priority"),
        "merge_hint": pl.col("merge_hint"), "mapping_version": pl.lit(m.label),
        "ruleset_version": pl.lit(rules.label if rules is not None else None, pl.String),
        "raw_hash": pl.col("hash"), "first_run_id": pl.lit(run_id), "last_run_id": pl.lit(run_id),
        "revision": pl.lit(1, pl.Int32), "hub_created_at": stamp, "hub_updated_at": stamp,
        "lines": pl.lit("[") + pl.col("_lines").str.replace_all(STATUS_MARK, pl.col("status"), literal=True)
        + pl.lit("]"),
    }
    orders = f.sort("order_id").select([(special[c] if c in special else mapped(c)).alias(c) for c in ORDER_COLS])
    # each column in its hub type (a decimal keeps its scale: the column's typmod rounds as it does for text)
    fix = [pl.col(c).cast(types[c]) for c, dt in orders.schema.items()
           if dt != types[c] and not (types[c] == pl.Decimal and isinstance(dt, pl.Decimal))]
    if fix:
        orders = orders.with_columns(fix)
    lineage = orders.select(
        pl.col("order_id"), pl.lit(run_id).alias("run_id"), pl.lit("created").alias("event"),
        pl.col("source_system"), pl.col("source_order_id"), pl.col("raw_hash"), pl.col("mapping_version"),
        pl.col("ruleset_version"), *[pl.lit(None, pl.String).alias(c) for c in ("target", "result", "target_ref",
                                                                              "message")],
        stamp.alias("at"))
    assert lineage.columns == LINEAGE_COLS
    return orders, lineage
