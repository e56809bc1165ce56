"""Bad rows are quarantined with file, row and reason code; good orders of the same file go through; an order
with any bad row is held whole."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

from orderhub.connectors.orderfile.samples import write_csv, write_xlsx

from .conftest import run_tap

D = Decimal
HEADER = ["订单号", "下单日期", "客户名称", "收货人", "联系电话", "收货地址", "商品编码", "商品名称", "数量", "单价",
          "金额", "备注"]


def _row(no, date="2024-05-06", customer="客户甲", receiver="张三", sku="SKU1", qty="1", price="1.00", amount="1.00",
         remark=""):
    return [no, date, customer, receiver, "13800000001", "浙江省杭州市西湖区文三路1号", sku, "螺栓", qty, price,
            amount, remark]


BAD_FILE_ROWS = [
    ["五月第一周 微信订单（含错误）"],                                              # 1 title
    HEADER,                                                                          # 2
    _row("A-001", qty="10", price="1.00", amount="10.00"),                           # 3 good
    _row("A-001", sku="SKU2", qty="5", price="2.00", amount="10.00"),                # 4 good
    _row("B-002", qty="十个", amount="10.00"),                                       # 5 bad_qty
    _row("B-002", sku="SKU2"),                                                       # 6 held with B-002
    _row(""),                                                                        # 7 missing_order_no (joins B-002)
    _row("C-003", date="2024-13-45"),                                                # 8 bad_date
    _row("D-004", receiver="王五"),                                                  # 9 held with D-004
    _row("D-004", receiver="赵六", sku="SKU2"),                                      # 10 conflicting_header
    _row("E-005", qty="3", price="2.00", amount="7.00"),                             # 11 amount_mismatch
    _row("F-006", amount="abc"),                                                     # 12 bad_amount
    _row("1.23457E+17"),                                                             # 13 bad_order_no
    _row("G-007", qty="2", price="3.50", amount="7.00"),                             # 14 good
    _row("H-008", qty="-2"),                                                         # 15 bad_qty
    _row("I-009", qty="0"),                                                          # 16 bad_qty
    _row("I-009", qty="", sku="SKU2"),                                               # 17 bad_qty (empty)
    ["合计", "", "", "", "", "", "", "", "", "", "", ""],                             # 18 skipped
]


def test_bad_rows_are_quarantined_and_good_orders_go_through(tmp_path: Path):
    write_csv(tmp_path / "错误订单.csv", BAD_FILE_ROWS, "gbk")
    run = run_tap({"path": str(tmp_path), "shop": "wechat-sales"})
    assert sorted(run.orders) == ["A-001", "G-007"]
    assert run.orders["A-001"]["goods_amount"] == D("20.00") and run.orders["A-001"]["_rows"] == [3, 4]
    assert run.orders["G-007"]["lines"][0]["amount"] == D("7.00")
    f = "错误订单.csv"
    assert run.reasons() == {
        (f, 5, "bad_qty", "qty"), (f, 6, "order_incomplete", None),
        (f, 7, "missing_order_no", "order_no"),
        (f, 8, "bad_date", "order_date"),
        (f, 9, "order_incomplete", None), (f, 10, "conflicting_header", "receiver_name"),
        (f, 11, "amount_mismatch", "amount"),
        (f, 12, "bad_amount", "amount"),
        (f, 13, "bad_order_no", "order_no"),
        (f, 15, "bad_qty", "qty"),
        (f, 16, "bad_qty", "qty"), (f, 17, "bad_qty", "qty"),  # every row bad: no order_incomplete needed
    }


def test_a_reject_names_its_file_row_order_and_keeps_the_raw_row(tmp_path: Path):
    write_csv(tmp_path / "错误订单.csv", BAD_FILE_ROWS, "gbk")
    run = run_tap({"path": str(tmp_path), "shop": "wechat-sales"})
    by_row = {r["row"]: r for r in run.rejects}
    r5 = by_row[5]
    assert r5["order_no"] == "B-002" and r5["sheet"] is None and r5["_shop"] == "wechat-sales"
    assert r5["raw"]["数量"] == "十个" and r5["raw"]["订单号"] == "B-002"
    assert r5["message"] == "数量: '十个' is not a number"
    assert len(r5["file_sha256"]) == 64 and r5["reject_id"] == f"{r5['file_sha256'][:16]}::5"
    assert by_row[6]["message"].startswith("order B-002 is held whole because row 5: bad_qty")
    # names and phones are masked in messages (the raw row keeps them: it is the quarantined data)
    assert by_row[10]["message"] == ("order D-004: receiver_name is '赵*' here but '王*' on row 9; "
                                     "one order must have one receiver_name")
    assert "Excel" in by_row[13]["message"] and by_row[13]["order_no"] is None
    assert by_row[7]["order_no"] == "B-002" and "order B-002 above is held" in by_row[7]["message"]
    assert by_row[11]["message"] == "金额: 7.00 is not 数量 × 单价 = 3 × 2.00 = 6.00"
    assert [p["code"] for p in by_row[16]["problems"]] == ["bad_qty"]


def test_every_problem_of_a_row_is_listed(tmp_path: Path):
    write_csv(tmp_path / "o.csv", [HEADER, _row("X-1", date="昨天", qty="很多", amount="abc")], "utf-8")
    (r,) = run_tap({"path": str(tmp_path), "shop": "s"}).rejects
    assert [(p["code"], p["field"]) for p in r["problems"]] == [
        ("bad_date", "order_date"), ("bad_qty", "qty"), ("bad_amount", "amount")]
    assert r["reason_code"] == "bad_date"


def test_xlsx_bad_cells_are_quarantined_by_sheet_and_row(tmp_path: Path):
    t = datetime(2024, 5, 10, 9, 0)
    rows = [
        ["订单编号", "下单时间", "客户名称", "SKU", "品名", "数量", "单价", "加急"],
        [123456789012345678, t, "客户甲", "SKU1", "螺栓", 1, 1.0, ""],   # Excel keeps 15 digits: bad_order_no
        ["X-2", "昨天", "客户乙", "SKU1", "螺栓", 1, 1.0, ""],              # bad_date
        ["X-3", t, "客户丙", "SKU1", "螺栓", 1, 1.0, "可能"],               # bad_flag
        ["X-4", t, "客户丁", "SKU1", "螺栓", 2, 1.25, "是"],                # good
    ]
    write_xlsx(tmp_path / "展会.xlsx", rows, sheet="第一天", extra_sheets=False)
    run = run_tap({"path": str(tmp_path), "shop": "expo"})
    assert list(run.orders) == ["X-4"] and run.orders["X-4"]["urgent"] is True
    assert run.orders["X-4"]["lines"][0]["amount"] == D("2.50")
    assert {(r["sheet"], r["row"], r["reason_code"], r["field"]) for r in run.rejects} == {
        ("第一天", 2, "bad_order_no", "order_no"), ("第一天", 3, "bad_date", "order_date"),
        ("第一天", 4, "bad_flag", "urgent")}


def test_unreadable_files_give_one_file_level_reject_each(tmp_path: Path):
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 this is not a zip")
    (tmp_path / "binary.csv").write_bytes(b"\x80\x81\xff\xfe\x00 not text" * 10)
    write_csv(tmp_path / "notes.csv", [["只是一些备注"], ["没有订单"]], "utf-8")
    write_csv(tmp_path / "good.csv", [HEADER, _row("OK-1")], "utf-8")
    run = run_tap({"path": str(tmp_path), "shop": "s"})
    assert list(run.orders) == ["OK-1"]
    assert run.reasons() == {
        ("old.xls", 0, "unsupported_format", None), ("broken.xlsx", 0, "unreadable_file", None),
        ("binary.csv", 0, "bad_encoding", None), ("notes.csv", 0, "no_header_row", None)}
    msg = {r["file"]: r["message"] for r in run.rejects}
    assert "save it as .xlsx" in msg["old.xls"]
    assert "best candidate row 1 has nothing known" in msg["notes.csv"]


def test_merged_order_number_cells_continue_the_order_above_when_configured(tmp_path: Path):
    rows = [["订单号", "客户", "品名", "数量", "单价"],
            ["M-1", "客户甲", "螺栓", 10, 0.5], [None, None, "螺母", 10, 0.2], [None, None, "垫圈", 10, 0.1],
            ["M-2", "客户乙", "螺栓", 1, 0.5]]
    path = write_xlsx(tmp_path / "合并单元格.xlsx", rows, extra_sheets=False)
    import openpyxl

    wb = openpyxl.load_workbook(path)
    wb.active.merge_cells("A2:A4")  # one order number for three rows: only A2 keeps a value
    wb.save(path)
    strict = run_tap({"path": str(tmp_path), "shop": "s"})  # default: an empty 订单号 is an error …
    assert list(strict.orders) == ["M-2"]  # … and M-1 is held rather than shipped with one line of three
    assert strict.reasons() == {("合并单元格.xlsx", 2, "order_incomplete", None),
                                ("合并单元格.xlsx", 3, "missing_order_no", "order_no"),
                                ("合并单元格.xlsx", 4, "missing_order_no", "order_no")}
    assert {r["order_no"] for r in strict.rejects} == {"M-1"}
    assert "blank_order_no: continue" in strict.rejects[1]["message"]
    merged = run_tap({"path": str(tmp_path), "shop": "s", "blank_order_no": "continue"})
    assert merged.rejects == []
    assert [ln["sku_name"] for ln in merged.orders["M-1"]["lines"]] == ["螺栓", "螺母", "垫圈"]
    assert merged.orders["M-1"]["goods_amount"] == D("8.00")


def test_header_aliases_from_config_extend_and_move_defaults(tmp_path: Path):
    rows = [["微信单号", "货品", "件数", "备注", "颜色"], ["W1", "螺栓", "3", "红色", "红"], ["W1", "螺母", "4", "蓝色", "蓝"]]
    write_csv(tmp_path / "wx.csv", rows, "utf-8-sig")
    cfg = {"path": str(tmp_path), "shop": "s",
           "header_aliases": {"order_no": ["微信单号"], "sku_name": ["货品"], "line_remark": ["备注"]}}
    o = run_tap(cfg).orders["W1"]
    assert [(ln["sku_name"], ln["qty"], ln["line_remark"], ln["extras"]) for ln in o["lines"]] == [
        ("螺栓", D("3"), "红色", {"颜色": "红"}), ("螺母", D("4"), "蓝色", {"颜色": "蓝"})]
    assert o["remark"] is None


def test_a_first_row_without_order_number_is_rejected_on_its_own(tmp_path: Path):
    write_csv(tmp_path / "o.csv", [HEADER, _row(""), _row("K-1")], "utf-8")
    run = run_tap({"path": str(tmp_path), "shop": "s"})
    assert list(run.orders) == ["K-1"]
    assert [(r["row"], r["reason_code"], r["order_no"], r["message"]) for r in run.rejects] == [
        (2, "missing_order_no", None, "订单号: is empty")]


def test_hidden_sheets_are_skipped_and_named_sheets_are_required(tmp_path: Path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "订单"
    for r in [["订单号", "品名", "数量"], ["V-1", "螺栓", 1]]:
        wb.active.append(r)
    hidden = wb.create_sheet("旧订单")
    for r in [["订单号", "品名", "数量"], ["OLD-1", "螺栓", 1]]:
        hidden.append(r)
    hidden.sheet_state = "hidden"
    wb.save(tmp_path / "book.xlsx")
    assert list(run_tap({"path": str(tmp_path), "shop": "s"}).orders) == ["V-1"]
    assert list(run_tap({"path": str(tmp_path), "shop": "s", "sheets": ["旧订单"]}).orders) == ["OLD-1"]
    missing = run_tap({"path": str(tmp_path), "shop": "s", "sheets": ["五月"]})
    assert missing.reasons() == {("book.xlsx", 0, "no_header_row", None)}


def test_grouping_spilled_to_disk_gives_the_same_records_as_in_memory(tmp_path: Path):
    write_csv(tmp_path / "错误订单.csv", BAD_FILE_ROWS, "gbk")
    in_memory = run_tap({"path": str(tmp_path), "shop": "s"})
    spilled = run_tap({"path": str(tmp_path), "shop": "s", "spill_rows": 2})
    assert spilled.order_records == in_memory.order_records
    assert spilled.rejects == in_memory.rejects


def test_excel_unicode_text_export_utf16_with_tabs_is_read(tmp_path: Path):
    text = "\t".join(HEADER) + "\r\n" + "\t".join(_row("U-1", qty="2", amount="2.00")) + "\r\n"
    (tmp_path / "unicode.txt").write_bytes(text.encode("utf-16"))
    run = run_tap({"path": str(tmp_path), "shop": "s", "glob": ["*.txt"]})
    assert run.orders["U-1"]["lines"][0]["amount"] == D("2.00") and run.rejects == []


def test_a_csv_cell_over_one_megabyte_rejects_the_file_without_partial_orders(tmp_path: Path):
    write_csv(tmp_path / "huge.csv", [HEADER, _row("P-1"), _row("P-1", remark="x" * (1 << 20) + "y")], "utf-8")
    run = run_tap({"path": str(tmp_path), "shop": "s"})
    assert run.order_records == []
    assert run.reasons() == {("huge.csv", 0, "bad_csv", None)}
    assert "row 3" in run.rejects[0]["message"]
