"""tap-orderfile: orders from CSV/Excel files (the WeChat / phone / trade-show channel) as Singer records.

Two streams read the same new files: ``file_orders`` (one record per order, lines nested) and
``orderfile_rejects`` (one record per quarantined row, with file, row and reason code). A file is new when its
SHA-256 is not yet in the stream's state, so a renamed copy is skipped and an edited file is read again. The
reading rules live in :mod:`orderhub.connectors.orderfile.reader`; this module is the singer-sdk skin.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers.conform import TypeConformanceLevel

from orderhub.connectors.orderfile.aliases import FIELDS
from orderhub.connectors.orderfile.files import FileRefused, Inbox, sha256_of
from orderhub.connectors.orderfile.reader import FileStats, ReaderSettings, read_order_file

LOGGED_REJECTS_PER_FILE = 20

_Str, _Num, _Bool, _Int, _Time = th.StringType, th.DecimalType, th.BooleanType, th.IntegerType, th.DateTimeType
_STRINGS = th.ObjectType(additional_properties=th.StringType)
_DESC = {  # field → Chinese term, shown in the catalog
    "order_no": "订单号", "order_date": "下单日期 (tz-aware)", "customer_code": "客户编码", "customer_name": "客户名称",
    "receiver_name": "收货人", "receiver_mobile": "手机 (or the mobile found in 电话)", "receiver_phone": "电话",
    "receiver_province": "省", "receiver_city": "市", "receiver_district": "区/县", "receiver_address": "收货地址",
    "receiver_zip": "邮编", "status": "状态 as written (none: the mapping's default 'new')", "salesperson": "业务员",
    "warehouse": "发货仓库", "delivery_date": "交货日期", "invoice_title": "发票抬头", "needs_invoice": "是否开票",
    "total_amount": "订单金额 as written", "shipping_fee": "运费", "discount_amount": "优惠金额",
    "remark": "备注 (rows of one order joined with '; ')", "urgent": "加急: the 加急 column, or 加急/急单/特急 in 备注",
    "goods_amount": "Σ line amounts", "line_count": "行数",
}
_KIND_TYPE = {"order_no": _Str, "time": _Time, "code": _Str, "text": _Str, "phone": _Str, "flag": _Bool,
              "money": _Num, "qty": _Num}

LINE_SCHEMA = th.ObjectType(
    th.Property("line_no", _Int, required=True, description="1, 2, … within the order, in file order"),
    th.Property("sku", _Str, description="商品编码/物料编码"),
    th.Property("sku_name", _Str, description="商品名称/品名"),
    th.Property("spec", _Str, description="规格型号"),
    th.Property("unit", _Str, description="单位"),
    th.Property("qty", _Num, required=True, description="数量 (> 0)"),
    th.Property("unit_price", _Num, description="单价"),
    th.Property("amount", _Num, description="金额; 数量 × 单价 when the sheet has no 金额 column"),
    th.Property("is_gift", _Bool, description="赠品"),
    th.Property("line_remark", _Str, description="行备注"),
    th.Property("extras", _STRINGS, description="columns with no known meaning, by header text"),
    th.Property("_sheet", _Str, description="worksheet (xlsx)"),
    th.Property("_row", _Int, required=True, description="row number in the sheet, as Excel shows it"),
)

ORDER_SCHEMA = th.PropertiesList(
    *[th.Property(f, _KIND_TYPE[kind], required=f == "order_no", description=_DESC.get(f))
      for f, (kind, level) in FIELDS.items() if level != "line"],
    th.Property("goods_amount", _Num, description=_DESC["goods_amount"]),
    th.Property("line_count", _Int, required=True, description=_DESC["line_count"]),
    th.Property("lines", th.ArrayType(LINE_SCHEMA), required=True),
    th.Property("_shop", _Str, required=True, description="channel/account name from the `shop` setting"),
    th.Property("_file", _Str, required=True, description="file path relative to the inbox folder"),
    th.Property("_file_sha256", _Str, required=True, description="SHA-256 of the file content"),
    th.Property("_sheet", _Str, description="worksheet of the first row (xlsx)"),
    th.Property("_rows", th.ArrayType(_Int), required=True, description="row numbers the order came from"),
).to_dict()

REJECT_SCHEMA = th.PropertiesList(
    th.Property("reject_id", _Str, required=True, description="<sha256[:16]>:<sheet>:<row>, stable across runs"),
    th.Property("_shop", _Str, required=True),
    th.Property("file", _Str, required=True, description="file path relative to the inbox folder"),
    th.Property("file_sha256", _Str, description="null when the file could not be read at all"),
    th.Property("sheet", _Str),
    th.Property("row", _Int, required=True, description="row number as Excel shows it; 0 = the whole file"),
    th.Property("order_no", _Str, description="the order the row belongs to, when known"),
    th.Property("reason_code", _Str, required=True,
                description="bad_qty, bad_price, bad_amount, amount_mismatch, bad_date, bad_flag, bad_order_no, "
                            "missing_order_no, missing_sku, conflicting_header, order_incomplete; file level: "
                            "bad_encoding, bad_csv, no_header_row, unreadable_file, unsupported_format, "
                            "outside_folder"),
    th.Property("field", _Str, description="the tap field at fault (qty, order_date, …)"),
    th.Property("message", _Str, required=True, description="what is wrong and how to fix it (phones masked)"),
    th.Property("problems", th.ArrayType(th.ObjectType(
        th.Property("code", _Str), th.Property("field", _Str), th.Property("message", _Str))),
        description="every problem of the row; the first one is reason_code"),
    th.Property("raw", _STRINGS, description="the row as written: header text → cell text"),
).to_dict()


class _InboxStream(Stream):
    """Reads every new file of the inbox; keeps the SHA-256 of files it has read in its state (``files``).

    Both streams read each new file (each keeps its own list, so either can be deselected and a crash between
    them loses nothing); the rejects stream skips a file that ``file_orders`` found clean in the same run."""

    kind: str = ""
    # records come out of the reader already typed exactly as the schema says (Decimal, str, bool, int)
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    _tap: TapOrderFile

    def get_records(self, context: dict | None) -> Iterable[dict[str, Any]]:
        cfg = self.config
        settings = ReaderSettings.from_config(cfg)
        inbox = Inbox(cfg["path"], cfg.get("glob"), cfg.get("ignore"), cfg.get("min_file_age_seconds") or 0)
        done: dict[str, Any] = self.stream_state.setdefault("files", {})
        this_run: set[str] = set()
        for f in inbox.files():
            if isinstance(f, FileRefused):
                yield from self._refused(f, done)
                continue
            try:
                fh = inbox.open(f)
            except FileRefused as refused:
                yield from self._refused(refused, done)
                continue
            with fh:
                sha = sha256_of(fh)
                if sha in done or sha in this_run:
                    self.logger.debug("%s: already imported (same content as %s)", f.name,
                                      done.get(sha, {}).get("file", "a file of this run"))
                    continue
                clean = self._tap.clean_files.get(sha)
                if self.kind == "reject" and clean is not None:
                    # file_orders read this very content in this run and found no bad row: nothing to re-read
                    this_run.add(sha)
                    done[sha] = dict(clean)
                    self.state_manager.is_flushed = False
                    continue
                before = os.fstat(fh.fileno())
                stats = FileStats()
                shown = 0
                for item in read_order_file(fh, name=f.name, sha256=sha, settings=settings, stats=stats):
                    if item.kind != self.kind:
                        continue
                    if self.kind == "reject" and shown < LOGGED_REJECTS_PER_FILE:
                        shown += 1
                        r = item.record
                        self.logger.warning("%s row %s quarantined: %s (%s)", r["file"], r["row"], r["reason_code"],
                                            r["message"])  # messages carry no clear phone/address (reader masks)
                    yield item.record
                if self.kind == "reject" and stats.rejected_rows > shown:
                    self.logger.warning("%s: … and %d more rows quarantined", f.name, stats.rejected_rows - shown)
                after = os.fstat(fh.fileno())
            if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
                self.logger.warning("%s changed while it was read; it will be read again next run", f.name)
                continue
            this_run.add(sha)
            done[sha] = {"file": f.name, "orders": stats.orders, "rejected_rows": stats.rejected_rows,
                         "read_at": datetime.now(UTC).isoformat(timespec="seconds")}
            if self.kind == "order" and stats.rejected_rows == 0:
                self._tap.clean_files[sha] = done[sha]
            self.state_manager.is_flushed = False  # the state changed even if no record of this stream did
            if self.kind == "order":
                self.logger.info("%s: %d orders (%d lines), %d rows rejected, %d orders held, %s%s", f.name,
                                 stats.orders, stats.lines, stats.rejected_rows, stats.held_orders,
                                 stats.format, f" {stats.encoding}" if stats.encoding else "")

    def _refused(self, refused: FileRefused, done: dict[str, Any]) -> Iterable[dict]:
        self.logger.warning("not read: %s", refused)
        if self.kind != "reject":
            return
        name = refused.name
        key = f"refused:{refused.code}:{name}"
        if key in done:
            return  # reported on an earlier run
        done[key] = {"file": name, "read_at": datetime.now(UTC).isoformat(timespec="seconds")}
        self.state_manager.is_flushed = False
        yield {
            "reject_id": key, "_shop": self.config["shop"], "file": name, "file_sha256": None, "sheet": None,
            "row": 0, "order_no": None, "reason_code": refused.code, "field": None, "message": str(refused),
            "problems": [{"code": refused.code, "field": None, "message": str(refused)}], "raw": {},
        }


class FileOrdersStream(_InboxStream):
    """One record per order, its rows nested as ``lines``."""

    name = "file_orders"
    kind = "order"
    primary_keys = ("_shop", "order_no")
    schema = ORDER_SCHEMA


class OrderFileRejectsStream(_InboxStream):
    """One record per quarantined row (or per unreadable file, row 0)."""

    name = "orderfile_rejects"
    kind = "reject"
    primary_keys = ("reject_id",)
    schema = REJECT_SCHEMA


class TapOrderFile(Tap):
    """Orders from CSV/.xlsx files dropped into a folder (WeChat, phone, trade-show orders)."""

    name = "tap-orderfile"
    message_writer_class = MsgSpecWriter

    config_jsonschema = th.PropertiesList(
        th.Property("path", _Str, required=True, description="the folder order files are dropped into"),
        th.Property("shop", _Str, required=True,
                    description="channel/account name written to `_shop` (e.g. wechat-sales, expo-2024)"),
        th.Property("glob", th.ArrayType(_Str), default=["*.csv", "*.xlsx", "*.xls"],
                    description="file patterns relative to `path` (`**/*.csv` for sub-folders); no `..`"),
        th.Property("ignore", th.ArrayType(_Str), default=["~$*", ".*"],
                    description="file-name patterns never read (Excel lock files, hidden files)"),
        th.Property("min_file_age_seconds", th.NumberType, default=0,
                    description="skip files modified more recently than this (still being copied)"),
        th.Property("header_aliases", th.ObjectType(additional_properties=th.ArrayType(_Str)),
                    description="field → extra column names, e.g. {\"order_no\": [\"微信单号\"]}; a name given here "
                                "moves to that field"),
        th.Property("ignore_columns", th.ArrayType(_Str), description="column names to drop (default 序号, 行号)"),
        th.Property("header_scan_rows", _Int, default=20, description="rows searched for the header row"),
        th.Property("blank_order_no", _Str, default="reject", allowed_values=["reject", "continue"],
                    description="`continue`: a row with an empty 订单号 continues the order above (merged cells)"),
        th.Property("sheets", th.ArrayType(_Str), description=".xlsx sheets to read (default: every visible one)"),
        th.Property("encoding", _Str, default="auto", description="CSV encoding; auto = UTF-8(-BOM), else GB18030"),
        th.Property("delimiter", _Str, default="auto", description="CSV delimiter; auto picks , tab ; or |"),
        th.Property("timezone", _Str, default="Asia/Shanghai", description="zone of dates written in the files"),
        th.Property("check_line_amount", _Bool, default=True,
                    description="reject a row whose 金额 differs from 数量 × 单价 by more than amount_tolerance"),
        th.Property("amount_tolerance", _Str, default="0.01"),
        th.Property("summary_markers", th.ArrayType(_Str), description="cells marking a 合计 row to skip"),
        th.Property("urgent_words", th.ArrayType(_Str), description="words in 备注 that make an order urgent"),
        th.Property("spill_rows", _Int, default=10000,
                    description="rows of one file held in memory before grouping moves to a temporary SQLite file"),
    ).to_dict()

    @cached_property
    def clean_files(self) -> dict[str, dict[str, Any]]:
        """sha256 → state entry of the files ``file_orders`` read without a bad row in this run."""
        return {}

    def discover_streams(self) -> list[Stream]:
        return [FileOrdersStream(self), OrderFileRejectsStream(self)]


if __name__ == "__main__":
    TapOrderFile.cli()
