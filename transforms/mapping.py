"""Declarative, versioned mapping files (see ``mappings/README.md``), compiled to Python functions.

``load_mapping("taobao")`` reads ``mappings/taobao.yaml``; a path works too. The YAML is validated (every
error names the key) and turned into Python source once, so mapping a record costs no interpretation.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orderhub.connectors.common.config import load_yaml
from orderhub.connectors.common.errors import ConfigError, RecordError
from orderhub.transforms import convert
from orderhub.transforms.model import HEADER_FIELDS, LINE_FIELDS, LINE_MAX_CHARS, MAX_CHARS
from orderhub.transforms.status import StatusMap, status_map

MAPPINGS_DIR = Path(__file__).parent / "mappings"

HEADER_INPUTS = set(HEADER_FIELDS) - {
    "order_id", "schema_version", "source_system", "channel", "status", "mapping_version", "raw_hash", "held",
    "hold_reasons", "warehouse_code", "priority", "merge_hint", "ruleset_version"}
LINE_INPUTS = (set(LINE_FIELDS) - {"canonical_sku", "source_line_status"})
TYPES = {"str", "decimal", "money", "int", "bool", "time"}
TOP_KEYS = {"source", "channel", "version", "money_unit", "timezone", "status_map", "line_status_map",
            "refund_status_map", "header", "lines", "description", "sku_aliases"}
DEFAULT_TYPES = {
    "created_at": "time", "paid_at": "time", "updated_at": "time", "shipped_at": "time",
    "total_amount": "money", "goods_amount": "money", "shipping_fee": "money", "discount_amount": "money",
    "paid_amount": "money", "is_urgent": "bool", "has_gift": "bool", "needs_invoice": "bool", "source_hold": "bool",
    "qty": "decimal", "unit_price": "money", "amount": "money", "is_gift": "bool", "line_no": "int",
}


@dataclass
class Mapping:
    """A compiled mapping. ``header(record)`` returns typed canonical header fields; ``lines(...)`` maps,
    checks and totals the lines (see :meth:`_Compiler.lines_function`)."""

    name: str
    source: str
    channel: str
    version: str
    money_unit: str
    timezone: str
    status: StatusMap
    line_status: StatusMap | None
    refund_status: StatusMap | None
    header: Callable[[dict], dict]
    lines: Callable[..., tuple[list[dict], Any, bool]]
    lines_path: tuple[str, ...]
    money_fields: tuple[str, ...] = ()
    time_fields: tuple[str, ...] = ()
    lines_nested: bool = False
    lines_key: str = "lines"
    source_code: str = field(repr=False, default="")
    spec: dict = field(repr=False, default_factory=dict)
    header_text_limits: tuple[tuple[str, int], ...] = tuple(MAX_CHARS.items())   # checked after mapping
    line_text_limits: tuple[tuple[str, int], ...] = tuple(LINE_MAX_CHARS.items())

    label: str = field(init=False, default="")  # name@version, recorded with every order

    def __post_init__(self) -> None:
        self.label = f"{self.name}@{self.version}"


#: a line's text limits by the mapping's field name (``line_status`` holds the source's ``source_line_status``)
LINE_LIMIT_SOURCE = {"source_line_status": "line_status"}
LINE_LIMITS = {LINE_LIMIT_SOURCE.get(k, k): n for k, n in LINE_MAX_CHARS.items() if k != "canonical_sku"}


class _Compiler:
    def __init__(self, spec: dict, name: str) -> None:
        self.spec, self.name = spec, name
        self.consts: dict[str, Any] = {}
        self.tz = convert.zone(spec.get("timezone", "Asia/Shanghai"))
        self.fen = spec.get("money_unit", "yuan") == "fen"
        self.limits: dict[str, int] = {}     # the section's text limits (the hub's column widths)
        self.checked: set[str] = set()       # fields whose generated code checks that limit inline

    def const(self, value: Any) -> str:
        key = f"_c{len(self.consts)}"
        self.consts[key] = value
        return key

    def access(self, p: str, key: str) -> str:
        if not isinstance(p, str) or not p.strip():
            raise ConfigError("a path must be a non-empty string", key=key)
        alts = [tuple(a.strip().split(".")) for a in p.split("|")]
        for a in alts:
            if not all(a):
                raise ConfigError(f"bad path {p!r}", key=key)
        if len(alts) == 1 and len(alts[0]) == 1:
            return f"r.get({alts[0][0]!r})"
        if len(alts) == 1:
            return f"_path(r, {alts[0]!r})"
        return f"_first_path(r, {tuple(alts)!r})"

    def expr(self, spec: Any, fld: str, key: str) -> str:
        typ = DEFAULT_TYPES.get(fld, "str")
        if isinstance(spec, str):
            return self.typed(self.access(spec, key), typ, fld, {}, key)
        if not isinstance(spec, dict):
            if isinstance(spec, (int, float, bool)) or spec is None:
                return self.const(spec)
            raise ConfigError(f"expected a path or a {{path: …}} table, got {type(spec).__name__}", key=key)
        unknown = set(spec) - {"path", "type", "format", "unit", "default", "map", "strict", "contains", "const",
                               "concat", "sep"}
        if unknown:
            raise ConfigError(f"unknown option(s) {sorted(unknown)}", key=key)
        if "const" in spec:
            return self.const(spec["const"])
        if "concat" in spec:
            parts = spec["concat"]
            if not isinstance(parts, list) or not parts:
                raise ConfigError("concat needs a list of paths", key=key)
            inner = ", ".join(f"_str({self.access(p, key)}, {fld!r})" for p in parts)
            src = f"_concat(({inner},), {spec.get('sep', '')!r})"
        elif "path" in spec:
            src = self.access(spec["path"], key)
        else:
            raise ConfigError("needs path, const or concat", key=key)
        if "contains" in spec:
            words = spec["contains"]
            words = (words,) if isinstance(words, str) else tuple(words)
            return f"_contains({src}, {self.const(words)})"
        if "map" in spec:
            if not isinstance(spec["map"], dict):
                raise ConfigError("map must be a table", key=key)
            table = {str(k) if k is not None else "": v for k, v in spec["map"].items()}
            src = f"_map({src}, {self.const(table)}, {bool(spec.get('strict'))}, {fld!r})"
        if "default" in spec:
            src = f"_default({src}, {self.const(spec['default'])})"
        typ = spec.get("type", typ)
        if typ not in TYPES:
            raise ConfigError(f"unknown type {typ!r}; use one of {sorted(TYPES)}", key=key)
        return self.typed(src, typ, fld, spec, key)

    def typed(self, src: str, typ: str, fld: str, spec: dict, key: str) -> str:
        if typ == "str":
            n = self.limits.get(fld)
            if n is not None:  # the length check inline: one len() instead of a second pass over the record
                self.checked.add(fld)
                ints = " else str(v) if v.__class__ is int and -_INT38 < v < _INT38" if n >= 40 else ""
                return (f"(v if (v := {src}).__class__ is str and v and len(v) <= {n}{ints} "
                        f"else None if v is None or v == '' else _strl(v, {fld!r}, {n}))")
            return f"(v if (v := {src}).__class__ is str and v else None if v is None or v == '' else _str(v, {fld!r}))"
        if typ == "decimal":
            return (f"(v if (v := {src}).__class__ is _D and v.is_finite() and -_MAXD < v < _MAXD "
                    f"else _dec(v, {fld!r}))")
        if typ == "money":
            fen = spec.get("unit", "fen" if self.fen else "yuan") == "fen"
            if fen:
                return f"_fen({src}, {fld!r})"
            return (f"(v if (v := {src}).__class__ is _D and v.is_finite() and -_MAXD < v < _MAXD "
                    f"else _money(v, {fld!r}))")
        if typ == "int":
            return f"(v if (v := {src}).__class__ is int else _int(v, {fld!r}))"
        if typ == "bool":
            return f"_bool({src}, {fld!r})"
        if typ == "time":
            fmt = spec.get("format")
            return (f"(_combine(v, v.time(), _TZ) if (v := {src}).__class__ is _DT and v.tzinfo is None "
                    f"else _time(v, {fld!r}, {fmt!r}, _TZ))")
        raise AssertionError(typ)

    def function(self, fname: str, fields: dict, allowed: set[str], section: str) -> str:
        if not isinstance(fields, dict):
            raise ConfigError("must be a table of canonical field: expression", key=section)
        self.limits = MAX_CHARS
        lines = [f"def {fname}(r):", "    return {"]
        for fld, spec in fields.items():
            if fld not in allowed:
                raise ConfigError(f"{fld!r} is not a canonical field here; allowed: {', '.join(sorted(allowed))}",
                                  key=f"{section}.{fld}")
            lines.append(f"        {fld!r}: {self.expr(spec, fld, f'{section}.{fld}')},")
        lines.append("    }")
        return "\n".join(lines)


    def lines_function(self, fields: dict, lines_path: str, status_maps: bool) -> str:
        """``lines(raw_lines, order_status, sku_canon, line_map, refund_map)`` → (lines, goods, has_gift).
        The loop is generated so each line costs one dict display and a few inline checks."""
        if not isinstance(fields, dict):
            raise ConfigError("must be a table of canonical field: expression", key="lines.fields")
        exprs = {}
        self.limits = LINE_LIMITS
        self.checked = set()
        for fld, spec in fields.items():
            if fld not in LINE_INPUTS:
                raise ConfigError(f"{fld!r} is not a canonical line field; allowed: {', '.join(sorted(LINE_INPUTS))}",
                                  key=f"lines.fields.{fld}")
            exprs[fld] = self.expr(spec, fld, f"lines.fields.{fld}")
        g = lambda f, d="None": exprs.get(f, d)  # noqa: E731
        body = [
            "def lines(raw, status, sku_canon, line_map, refund_map, sid):",
            "    out = []",
            "    goods = _D0",
            "    gift = False",
            "    i = 0",
            "    for r in raw:",
            "        i += 1",
            "        if r.__class__ is not dict:",
            "            raise _RecordError('a line must be an object', code='wrong_type', field=f'lines[{i-1}]', record_id=sid)",
            "        try:",
            f"            qty = {g('qty')}",
            f"            price = {g('unit_price')}",
            f"            amount = {g('amount')}",
            f"            src_sku = {g('source_sku')}",
            f"            name = {g('sku_name')}",
            f"            raw_ls = {g('line_status')}",
            f"            raw_rs = {g('refund_status')}",
            f"            is_gift = {g('is_gift', 'False')}",
            f"            line_no = {g('line_no', 'i')}",
            f"            line_id = {g('source_line_id')}",
            "        except _RecordError as exc:",
            "            raise _RecordError(exc.message.split(': ', 1)[-1], code=exc.code, field=f'lines[{i-1}].{exc.field}', record_id=sid) from None",
            "        if qty is None or qty <= _D0:",
            "            raise _RecordError(f'quantity must be > 0, got {qty}', code='bad_qty', field=f'lines[{i-1}].qty', record_id=sid)",
            "        if amount is None:",
            "            if price is not None:",
            "                amount = qty * price",
            "                if amount >= _MAXD or amount <= -_MAXD:",
            "                    raise _RecordError(f'qty × unit price = {amount:.4E} is out of range', code='number_out_of_range', field=f'lines[{i-1}].amount', record_id=sid)",
            "                amount = amount.quantize(_CENT)",
            "        elif price is None:",
            "            price = amount / qty",
            "            if price >= _MAXD:",
            "                raise _RecordError(f'amount / qty = {price:.4E} is out of range', code='number_out_of_range', field=f'lines[{i-1}].unit_price', record_id=sid)",
            "            price = price.quantize(_CENT)",
            "        if price is not None and price < _D0 or amount is not None and amount < _D0:",
            "            raise _RecordError('is negative', code='negative_amount', field=f'lines[{i-1}].unit_price' if price < _D0 else f'lines[{i-1}].amount', record_id=sid)",
            "        if amount is not None:",
            "            goods += amount",
            "        if is_gift:",
            "            gift = True",
            "        out.append({",
            "            'line_no': line_no if line_no is not None else i, 'source_line_id': line_id,",
            "            'canonical_sku': sku_canon(src_sku, name) if sku_canon is not None else src_sku,",
            "            'source_sku': src_sku, 'sku_name': name, 'qty': qty, 'unit_price': price, 'amount': amount,",
            "            'is_gift': is_gift,",
            "            'line_status': status if raw_ls is None else line_map(raw_ls, f'lines[{i-1}].line_status'),",
            "            'source_line_status': raw_ls,",
            "            'refund_status': 'none' if raw_rs is None else refund_map(raw_rs, f'lines[{i-1}].refund_status') if refund_map is not None else raw_rs,",
            "        })",
            "    return out, goods, gift",
        ]
        return "\n".join(body)


def compile_mapping(spec: dict, *, name: str = "inline") -> Mapping:
    """Validate and compile a mapping given as a dict (the parsed YAML)."""
    if not isinstance(spec, dict):
        raise ConfigError("a mapping file must be a YAML table", key=name)
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}", key=name)
    for k in ("source", "version", "status_map", "header", "lines"):
        if k not in spec:
            raise ConfigError("is required", key=f"{name}.{k}")
    if spec.get("money_unit", "yuan") not in ("yuan", "fen"):
        raise ConfigError("must be yuan or fen", key=f"{name}.money_unit")
    header = spec["header"]
    for req in ("source_order_id", "source_status"):
        if req not in (header or {}):
            raise ConfigError("is required", key=f"{name}.header.{req}")
    lines_spec = spec["lines"]
    if not isinstance(lines_spec, dict) or "path" not in lines_spec or "fields" not in lines_spec:
        raise ConfigError("needs path and fields", key=f"{name}.lines")
    if "qty" not in lines_spec["fields"]:
        raise ConfigError("is required", key=f"{name}.lines.fields.qty")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(spec.get("timezone", "Asia/Shanghai"))
    except Exception:  # noqa: BLE001
        raise ConfigError(f"unknown time zone {spec.get('timezone')!r}", key=f"{name}.timezone") from None
    c = _Compiler(spec, name)
    head_src = c.function("header", header, HEADER_INPUTS, "header")
    # text limits the generated code does not check itself; canonicalize() checks these after mapping
    header_unchecked = tuple((k, n) for k, n in MAX_CHARS.items() if k in header and k not in c.checked)
    src = head_src + "\n\n" + c.lines_function(lines_spec["fields"], str(lines_spec["path"]), True)
    line_unchecked = tuple((k, n) for k, n in LINE_MAX_CHARS.items()
                           if k != "canonical_sku" and LINE_LIMIT_SOURCE.get(k, k) not in c.checked)
    ns: dict[str, Any] = {
        "_D": convert.D, "_DT": convert.DT, "_TZ": c.tz, "_combine": convert.DT.combine, "_str": convert.to_str,
        "_strl": convert.to_str_limited, "_dec": convert.to_decimal,
        "_money": convert.to_money, "_fen": convert.fen_to_yuan, "_int": convert.to_int, "_bool": convert.to_bool,
        "_time": convert.to_time, "_path": convert.path, "_first_path": convert.first_path,
        "_contains": convert.contains, "_map": convert.map_value, "_concat": convert.concat,
        "_default": convert.default, "_RecordError": RecordError, "_D0": convert.D(0),
        "_CENT": convert.D("0.01"), "_MAXD": convert.MAX_DECIMAL, "_INT38": 10 ** 38, **c.consts,
    }
    exec(compile(src, f"<mapping {name}>", "exec"), ns)  # noqa: S102 - source generated from validated spec
    source = str(spec["source"])
    smap = status_map(spec["status_map"], source=source)
    lmap = status_map(spec["line_status_map"], source=source) if spec.get("line_status_map") else None
    rmap = (status_map(spec["refund_status_map"], source=source, kind="refund_status")
            if spec.get("refund_status_map") else None)
    return Mapping(name=name, source=source, channel=str(spec.get("channel", source)), version=str(spec["version"]),
                   money_unit=spec.get("money_unit", "yuan"), timezone=spec.get("timezone", "Asia/Shanghai"),
                   status=smap, line_status=lmap, refund_status=rmap, header=ns["header"], lines=ns["lines"],
                   lines_path=tuple(str(lines_spec["path"]).split(".")), source_code=src, spec=spec,
                   money_fields=tuple(f for f in header if DEFAULT_TYPES.get(f) == "money" or
                                      isinstance(header[f], dict) and header[f].get("type") in ("money", "decimal")),
                   time_fields=tuple(f for f in ("created_at", "paid_at", "updated_at") if f in header),
                   lines_nested="." in str(lines_spec["path"]), lines_key=str(lines_spec["path"]),
                   header_text_limits=header_unchecked, line_text_limits=line_unchecked)


_cache: dict[str, Mapping] = {}


def load_mapping(name_or_path: str | Path, *, overrides: dict | None = None) -> Mapping:
    """Load a mapping by name (``taobao`` → ``mappings/taobao.yaml``) or by path; compiled once per process."""
    p = Path(name_or_path)
    if not p.suffix:
        p = MAPPINGS_DIR / f"{name_or_path}.yaml"
    key = f"{p.resolve()}|{sorted((overrides or {}).items())!r}"
    if key in _cache:
        return _cache[key]
    if not p.exists():
        available = ", ".join(sorted(x.stem for x in MAPPINGS_DIR.glob("*.yaml")))
        raise ConfigError(f"mapping {name_or_path!r} not found (built-in: {available})", key="mapping")
    spec = load_yaml(p, resolve_refs=False)
    if overrides:
        spec = {**spec, **overrides}
    m = _cache[key] = compile_mapping(spec, name=p.stem)
    return m


def main(argv: list[str] | None = None) -> int:
    """``python -m orderhub.transforms.mapping check FILE``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "check":
        print("usage: python -m orderhub.transforms.mapping check FILE", file=sys.stderr)
        return 2
    try:
        m = load_mapping(args[1])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {m.label} (source {m.source}, channel {m.channel}, status map {m.status.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
