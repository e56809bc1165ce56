"""Read one order spreadsheet (CSV or .xlsx) into orders with nested lines, and quarantine its bad rows.

Plain Python, no singer-sdk: :func:`read_order_file` takes an open file and yields :class:`Item` s, each an
order (``kind == "order"``, the ``file_orders`` record) or a rejected row (``kind == "reject"``, the
``orderfile_rejects`` record). Nothing is yielded before the whole file has been read, because an order's rows
may be anywhere in the file; a file that cannot be read to the end (bad encoding, broken CSV quoting, broken
.xlsx) therefore gives one file-level reject (row 0) and no orders at all.

Rules (README "How rows become orders"):

* the header row is the first row, among the first ``header_scan_rows`` of a sheet, that names an order number,
  a quantity and a SKU code or name; rows above it (titles, dates) are skipped;
* rows sharing an order number form one order; order-level fields come from the first row that has them, and a
  different non-empty value on a later row is a ``conflicting_header`` error on that row; remarks are joined
  and 加急 is true if any row says so;
* an order with any bad row is held whole: its bad rows are rejected with their reasons, its good rows with
  ``order_incomplete`` (a partial order shipped is worse than a complete one held); a row with an empty order
  number right below an order belongs to it (merged cells): it holds that order, or continues it when
  ``blank_order_no`` is ``continue``;
* blank rows, a repeated header row and 合计/总计 rows are skipped, not rejected.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import IO, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orderhub.connectors.common.errors import ConfigError
from orderhub.connectors.common.privacy import mask_address, mask_name, mask_phone, mask_text
from orderhub.connectors.orderfile import values as V
from orderhub.connectors.orderfile.aliases import FIELDS, build_alias_index, fold_header, match_header
from orderhub.connectors.orderfile.files import FileFormatError, csv_encodings, csv_rows, sniff_format, xlsx_rows
from orderhub.connectors.orderfile.grouping import RowGrouper


ORDER_FIELDS = [f for f, (_, level) in FIELDS.items() if level in ("order", "merge")]
LINE_FIELDS = [f for f, (_, level) in FIELDS.items() if level == "line"]
_CENT = Decimal("0.01")
_MONEY_CODE = {"unit_price": "bad_price"}  # every other money field: bad_amount
DEFAULT_SUMMARY_MARKERS = ["合计", "总计", "小计", "合计金额:", "total"]
DEFAULT_URGENT_WORDS = ["加急", "急单", "特急", "紧急", "急件"]


class Item(NamedTuple):
    kind: str  # "order" | "reject"
    record: dict[str, Any]


@dataclass
class FileStats:
    """What happened to one file; logged and kept in the tap state."""

    format: str = ""
    encoding: str | None = None
    rows: int = 0
    skipped_rows: int = 0
    orders: int = 0
    lines: int = 0
    rejected_rows: int = 0
    held_orders: int = 0
    spilled: bool = False


@dataclass
class ReaderSettings:
    """Reading rules; :meth:`from_config` validates the tap config and names the bad key."""

    shop: str
    aliases: dict[str, str] = field(default_factory=lambda: build_alias_index()[0])
    ignored: set[str] = field(default_factory=lambda: build_alias_index()[1])
    header_scan_rows: int = 20
    blank_order_no: str = "reject"  # "continue": an empty order number continues the order above (merged cells)
    sheets: list[str] | None = None
    encoding: str = "auto"
    delimiter: str = "auto"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    check_line_amount: bool = True
    amount_tolerance: Decimal = Decimal("0.01")
    summary_markers: frozenset[str] = frozenset(fold_header(m) for m in DEFAULT_SUMMARY_MARKERS)
    urgent_words: tuple[str, ...] = tuple(DEFAULT_URGENT_WORDS)
    spill_rows: int = 10_000  # about 3 KB a row: ~30 MB before grouping moves to disk

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReaderSettings:
        shop = config.get("shop")
        if not isinstance(shop, str) or not shop.strip():
            raise ConfigError("is required: the channel/account name put in `_shop` (e.g. wechat-sales)", key="shop")
        aliases, ignored = build_alias_index(config.get("header_aliases"), config.get("ignore_columns"))
        blank = config.get("blank_order_no", "reject")
        if blank not in ("reject", "continue"):
            raise ConfigError("must be 'reject' or 'continue'", key="blank_order_no")
        try:
            tz = ZoneInfo(config.get("timezone") or "Asia/Shanghai")
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {config.get('timezone')!r}", key="timezone") from None
        try:
            tolerance = Decimal(str(config.get("amount_tolerance", "0.01")))
        except ArithmeticError:
            raise ConfigError("must be a number such as 0.01", key="amount_tolerance") from None
        sheets = config.get("sheets") or None
        if sheets is not None and (not isinstance(sheets, list) or not all(isinstance(s, str) for s in sheets)):
            raise ConfigError("must be a list of sheet names", key="sheets")
        return cls(
            shop=shop.strip(), aliases=aliases, ignored=ignored,
            header_scan_rows=int(config.get("header_scan_rows") or 20),
            blank_order_no=blank, sheets=sheets,
            encoding=config.get("encoding") or "auto", delimiter=config.get("delimiter") or "auto",
            timezone=tz, check_line_amount=bool(config.get("check_line_amount", True)), amount_tolerance=tolerance,
            summary_markers=frozenset(fold_header(m) for m in config.get("summary_markers", DEFAULT_SUMMARY_MARKERS)),
            urgent_words=tuple(config.get("urgent_words", DEFAULT_URGENT_WORDS)),
            spill_rows=int(config.get("spill_rows") or 10_000),
        )


# --- rows -------------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Row:
    """One data row: where it is, what it said (``raw``), what it means (``values``) and what is wrong."""

    sheet: str
    row: int
    raw: dict[str, str]
    values: dict[str, Any]
    extras: dict[str, str]
    problems: list[tuple[str, str | None, str]]


@dataclass
class _Layout:
    labels: list[str]                # header text per column ('' when blank)
    fields: dict[str, int]           # field → first column naming it
    extra_cols: list[int]            # named columns that are neither fields nor ignored
    width: int


def _col_letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def _has_required(fields: Iterable[str]) -> bool:
    f = set(fields)
    return "order_no" in f and "qty" in f and bool(f & {"sku", "sku_name"})


def _layout(cells: list[Any], s: ReaderSettings) -> _Layout:
    labels = [V.text(c) for c in cells]
    fields: dict[str, int] = {}
    extra: list[int] = []
    for i, label in enumerate(labels):
        if not label:
            continue
        f = match_header(label, s.aliases)
        if f and f not in fields:
            fields[f] = i
        elif fold_header(label) not in s.ignored:
            extra.append(i)  # an unknown column, or a second column for a field: kept under `extras`
    return _Layout(labels, fields, extra, len(labels))


_PARSE_KIND = {  # cells arrive cleaned: a str is trimmed already (see _collect)
    "order_no": lambda v, s, label: V.order_no(v, label),
    "time": lambda v, s, label: V.order_time(v, s.timezone, label),
    "code": lambda v, s, label: (V.fold(v) if v.__class__ is str else V.folded(v)) or None,
    "text": lambda v, s, label: (v if v.__class__ is str else V.text(v)) or None,
    "phone": lambda v, s, label: (V.fold(v) if v.__class__ is str else V.folded(v)) or None,
    "flag": lambda v, s, label: V.flag(v, label),
}


def _parse_row(sheet: str, n: int, cells: list[Any], lay: _Layout, s: ReaderSettings) -> Row:
    """``cells``: strings already cleaned by :func:`values.text`, other values (xlsx numbers, dates) as read."""
    raw: dict[str, str] = {}
    for i, cell in enumerate(cells):
        t = cell if cell.__class__ is str else V.text(cell)
        if i < lay.width and lay.labels[i]:
            label = lay.labels[i]
        elif t:
            label = _col_letter(i)
        else:
            continue
        while label in raw:
            label += "'"
        raw[label] = t
    values: dict[str, Any] = {}
    problems: list[tuple[str, str | None, str]] = []
    for f, i in lay.fields.items():
        cell = cells[i] if i < len(cells) else None
        kind = FIELDS[f][0]
        label = lay.labels[i]
        try:
            if kind == "money":
                d = V.decimal(cell, _MONEY_CODE.get(f, "bad_amount"), label)
                if d is not None and d < 0:
                    raise V.BadValue(_MONEY_CODE.get(f, "bad_amount"), f"{label}: {d} is negative")
                values[f] = d
            elif kind == "qty":
                q, unit = V.quantity(cell, label)
                values[f] = q
                if unit and "unit" not in values:
                    values["_unit_in_qty"] = unit
            else:
                values[f] = _PARSE_KIND[kind](cell, s, label)
        except V.BadValue as bad:
            problems.append((bad.code, f, str(bad)))
            values[f] = None
    if not values.get("unit") and values.get("_unit_in_qty"):
        values["unit"] = values["_unit_in_qty"]
    values.pop("_unit_in_qty", None)
    extras = {lay.labels[i]: raw[lay.labels[i]] for i in lay.extra_cols if i < len(cells) and raw.get(lay.labels[i])}

    bad_fields = {p[1] for p in problems}
    label = {f: lay.labels[i] for f, i in lay.fields.items()}
    if values.get("qty") is None and "qty" not in bad_fields:
        problems.append(("bad_qty", "qty", f"{label['qty']}: is empty"))
    if not values.get("sku") and not values.get("sku_name") and not bad_fields & {"sku", "sku_name"}:
        names = "/".join(label[f] for f in ("sku", "sku_name") if f in label)
        problems.append(("missing_sku", "sku", f"{names}: is empty; say which product"))
    q, price, amount = values.get("qty"), values.get("unit_price"), values.get("amount")
    if q is not None and price is not None:
        expected = (q * price).quantize(_CENT, rounding=ROUND_HALF_UP)
        if amount is None and "amount" not in bad_fields:
            values["amount"] = expected  # derived: 数量 × 单价 when the sheet has no 金额
        elif amount is not None and s.check_line_amount and abs(amount - expected) > s.amount_tolerance:
            problems.append(("amount_mismatch", "amount",
                             f"{label.get('amount', 'amount')}: {amount} is not {label['qty']} × "
                             f"{label.get('unit_price', 'price')} = {q} × {price} = {expected}"))
    return Row(sheet, n, raw, values, extras, problems)


# --- the file ---------------------------------------------------------------------------------------------------
_ORPHAN = "\x00row"  # group key prefix of a row without an order number: it forms no order


def read_order_file(fh: IO[bytes], *, name: str, sha256: str, settings: ReaderSettings,
                    stats: FileStats | None = None) -> Iterator[Item]:
    """Orders and rejected rows of one file. ``name`` is the file's path relative to the inbox folder and
    ``sha256`` its content hash (both go into every record). ``stats`` is filled in as a side effect."""
    stats = stats if stats is not None else FileStats()
    fmt = sniff_format(fh, name)
    stats.format = fmt
    ctx = _FileContext(name, sha256, settings)
    if fmt == "xls":
        yield ctx.file_reject("unsupported_format", "old binary Excel (.xls) is not read; save it as .xlsx "
                              "(Excel: 另存为 → Excel 工作簿) or CSV and drop it again")
        stats.rejected_rows = 1
        return
    grouper: RowGrouper | None = None
    try:
        if fmt == "xlsx":
            grouper = RowGrouper(settings.spill_rows)
            _collect(xlsx_rows(fh, settings.sheets), grouper, settings, stats)
        else:
            for enc in csv_encodings(fh, settings.encoding):
                grouper = RowGrouper(settings.spill_rows)
                _reset(stats)
                try:
                    _collect(csv_rows(fh, enc, settings.delimiter), grouper, settings, stats)
                except UnicodeDecodeError:
                    grouper.close()
                    grouper = None
                    continue
                stats.encoding = enc
                break
            if grouper is None:
                tried = ", ".join(csv_encodings(fh, settings.encoding))
                raise FileFormatError("bad_encoding", f"not readable as {tried}; save it as UTF-8 or GBK CSV")
        stats.spilled = grouper.spilled
        for key, rows in grouper.groups():
            yield from ctx.emit(key, rows, stats)
    except FileFormatError as err:
        _reset(stats)
        stats.rejected_rows = 1
        yield ctx.file_reject(err.code, str(err), row=0)
    finally:
        if grouper is not None:
            grouper.close()


def _reset(stats: FileStats) -> None:
    stats.rows = stats.skipped_rows = stats.orders = stats.lines = stats.rejected_rows = stats.held_orders = 0


def _skippable(cells: list[Any], lay: _Layout, s: ReaderSettings) -> bool:
    """A 合计/总计 row (a marker cell and no real order number), or the header row repeated (sheets pasted
    together)."""
    i = lay.fields["order_no"]
    no = cells[i] if i < len(cells) else ""
    if no.__class__ is not str:
        return False
    if no == lay.labels[i]:
        q = lay.fields["qty"]
        return q < len(cells) and cells[q] == lay.labels[q]
    if not no or len(no) <= 8 and fold_header(no) in s.summary_markers:
        return any(c.__class__ is str and c and len(c) <= 8 and fold_header(c) in s.summary_markers for c in cells)
    return False


def _collect(rows: Iterator[tuple[str, int, list[Any]]], grouper: RowGrouper, s: ReaderSettings,
             stats: FileStats) -> None:
    """Parse every row into ``grouper``; raise :class:`FileFormatError` when no sheet has a header row."""
    sheet: str | None = None
    lay: _Layout | None = None
    best: tuple[int, str, int, list[str]] | None = None  # (fields matched, sheet, row, fields) for the error
    found_header = False
    previous_key: str | None = None
    for sh, n, cells in rows:
        if sh != sheet:
            sheet, lay, previous_key = sh, None, None
        if lay is None:
            if n > s.header_scan_rows:
                continue  # this sheet has no header row near the top: not an order sheet
            if not any(V.text(c) for c in cells):
                continue
            cand = _layout(cells, s)
            if _has_required(cand.fields):
                lay, found_header = cand, True
            elif best is None or len(cand.fields) > best[0]:
                best = (len(cand.fields), sh, n, list(cand.fields))
            continue
        cells = [V.text(c) if c.__class__ is str or c is None else c for c in cells]
        if not any(c != "" for c in cells):
            continue
        stats.rows += 1
        if _skippable(cells, lay, s):
            stats.skipped_rows += 1
            continue
        row = _parse_row(sh, n, cells, lay, s)
        key = row.values.get("order_no")
        bad_no = any(p[1] == "order_no" for p in row.problems)
        if key is None and not bad_no:
            label = lay.labels[lay.fields["order_no"]]
            if previous_key is None:
                row.problems.insert(0, ("missing_order_no", "order_no", f"{label}: is empty"))
            else:
                # most likely a merged order-number cell: the row belongs to the order above. With "reject" it
                # holds that order too, since shipping it without this row would ship a partial order.
                key = previous_key
                if s.blank_order_no == "reject":
                    row.problems.insert(0, ("missing_order_no", "order_no", (
                        f"{label}: is empty; order {key} above is held with this row (fill in the order number, "
                        "or set blank_order_no: continue when the sheet merges order-number cells)")))
        if key is None:
            key = f"{_ORPHAN}:{sh}:{n}"
            previous_key = None
        else:
            previous_key = key
        grouper.add(key, row)
    if not found_header:
        if best:
            have = ", ".join(best[3]) or "nothing known"
            where = f"best candidate {('sheet ' + repr(best[1]) + ' ') if best[1] else ''}row {best[2]} has {have}"
        else:
            where = "the file is empty"
        raise FileFormatError("no_header_row", "no header row naming an order number (订单号), a quantity (数量) "
                              f"and a SKU code or name (商品编码/商品名称) in the first {s.header_scan_rows} rows; "
                              + where)


def _same(kind: str, a: Any, b: Any) -> bool:
    if a == b:
        return True
    if kind in ("text", "code"):
        return "".join(str(a).split()) == "".join(str(b).split())
    if kind == "phone":
        return "".join(ch for ch in str(a) if ch.isdigit()) == "".join(ch for ch in str(b) if ch.isdigit())
    return a == b


def _masked(f: str, v: Any) -> str:
    if f in ("receiver_phone", "receiver_mobile"):
        return str(mask_phone(str(v)))
    if f == "receiver_address":
        return str(mask_address(str(v)))
    if f == "receiver_name":
        return str(mask_name(str(v)))
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M") if (v.hour or v.minute) else v.strftime("%Y-%m-%d")
    return str(v)


class _FileContext:
    def __init__(self, name: str, sha256: str, settings: ReaderSettings) -> None:
        self.name, self.sha, self.s = name, sha256, settings

    def _reject(self, sheet: str, row: int, order_no: str | None, problems: list[tuple[str, str | None, str]],
                raw: dict[str, str]) -> Item:
        code, fld, msg = problems[0]
        return Item("reject", {
            "reject_id": f"{self.sha[:16] or self.name}:{sheet}:{row}",
            "_shop": self.s.shop,
            "file": self.name,
            "file_sha256": self.sha or None,
            "sheet": sheet or None,
            "row": row,
            "order_no": order_no,
            "reason_code": code,
            "field": fld,
            "message": mask_text(msg),
            "problems": [{"code": c, "field": f, "message": mask_text(m)} for c, f, m in problems],
            "raw": raw,
        })

    def file_reject(self, code: str, message: str, row: int = 0) -> Item:
        return self._reject("", row, None, [(code, None, message)], {})

    def emit(self, key: str, rows: list[Row], stats: FileStats) -> Iterator[Item]:
        if key.startswith(_ORPHAN):
            for r in rows:
                stats.rejected_rows += 1
                yield self._reject(r.sheet, r.row, None, r.problems, r.raw)
            return
        header: dict[str, Any] = {}
        header_row: dict[str, int] = {}
        remarks: list[str] = []
        flags: dict[str, bool | None] = {}
        for r in rows:
            for f in ORDER_FIELDS:
                v = r.values.get(f)
                if v is None:
                    continue
                kind, level = FIELDS[f]
                if level == "merge":
                    if kind == "flag":
                        flags[f] = bool(flags.get(f)) or v
                    elif v not in remarks:
                        remarks.append(v)
                elif f not in header:
                    header[f], header_row[f] = v, r.row
                elif not _same(kind, header[f], v):
                    r.problems.append(("conflicting_header", f,
                                       f"order {key}: {f} is {_masked(f, v)!r} here but {_masked(f, header[f])!r} "
                                       f"on row {header_row[f]}; one order must have one {f}"))
        bad = [r for r in rows if r.problems]
        if bad:
            stats.held_orders += 1
            first_bad = bad[0]
            why = f"row {first_bad.row}: {first_bad.problems[0][0]}"
            for r in rows:
                stats.rejected_rows += 1
                problems = r.problems or [("order_incomplete", None,
                                           f"order {key} is held whole because {why}; fix that row and drop the "
                                           "file again")]
                yield self._reject(r.sheet, r.row, key, problems, r.raw)
            return
        yield Item("order", self._order(key, rows, header, remarks, flags, stats))

    def _order(self, key: str, rows: list[Row], header: dict[str, Any], remarks: list[str],
               flags: dict[str, bool | None], stats: FileStats) -> dict[str, Any]:
        lines = []
        for i, r in enumerate(rows, start=1):
            v = r.values
            lines.append({
                "line_no": i,
                "sku": v.get("sku"),
                "sku_name": v.get("sku_name"),
                "spec": v.get("spec"),
                "unit": v.get("unit"),
                "qty": v.get("qty"),
                "unit_price": v.get("unit_price"),
                "amount": v.get("amount"),
                "is_gift": bool(v.get("is_gift")),
                "line_remark": v.get("line_remark"),
                "extras": r.extras or None,
                "_sheet": r.sheet or None,
                "_row": r.row,
            })
        amounts = [ln["amount"] for ln in lines]
        remark = "; ".join(remarks) or None
        rec: dict[str, Any] = {f: header.get(f) for f in ORDER_FIELDS if FIELDS[f][1] == "order"}
        for f in ("order_date", "delivery_date"):
            if rec.get(f) is not None:
                rec[f] = rec[f].isoformat()
        rec["order_no"] = key
        rec["remark"] = remark
        rec["urgent"] = bool(flags.get("urgent")) or V.mentions(remark, self.s.urgent_words) or any(
            V.mentions(ln["line_remark"], self.s.urgent_words) for ln in lines)
        rec["needs_invoice"] = flags.get("needs_invoice")
        # 手机 holds a landline and 电话 a mobile often enough: the mobile is the first mobile number in either
        # (digits only), the phone is 电话 as written, or a 手机 cell that held no mobile number
        mob_cell, tel_cell = rec.get("receiver_mobile"), rec.get("receiver_phone")
        rec["receiver_mobile"] = V.mobile_in(mob_cell) or V.mobile_in(tel_cell)
        rec["receiver_phone"] = tel_cell or (mob_cell if mob_cell and not V.mobile_in(mob_cell) else None)
        rec["goods_amount"] = sum(amounts, Decimal(0)) if all(a is not None for a in amounts) else None
        rec["line_count"] = len(lines)
        rec["lines"] = lines
        rec["_shop"] = self.s.shop
        rec["_file"] = self.name
        rec["_file_sha256"] = self.sha
        rec["_sheet"] = rows[0].sheet or None
        rec["_rows"] = [r.row for r in rows]
        stats.orders += 1
        stats.lines += len(lines)
        return rec
