"""The example files (GBK CSV with a title row, UTF-8-BOM CSV, .xlsx with a merged title and non-adjacent rows)
become exactly the orders written in them."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from orderhub.connectors.orderfile.files import sha256_of
from orderhub.connectors.orderfile.reader import FileStats, ReaderSettings, read_order_file

from .conftest import run_tap

D = Decimal


def test_three_sample_files_give_seven_orders_with_thirteen_lines(config):
    run = run_tap(config)
    assert run.rejects == []
    assert sorted(run.orders) == ["EXPO-001", "EXPO-002", "TEL-0508-01", "TEL-0508-02",
                                  "WX240506001", "WX240506002", "WX240506003"]
    assert sum(len(o["lines"]) for o in run.order_records) == 13
    by_file = {}
    for o in run.order_records:
        by_file.setdefault(o["_file"], []).append(o["order_no"])
    assert {f: len(v) for f, v in by_file.items()} == {
        "微信订单_20240506.csv": 3, "电话订单_20240508.csv": 2, "广州五金展_20240510.xlsx": 2}
    assert {o["_shop"] for o in run.order_records} == {"wechat-sales"}


def test_gbk_csv_order_spread_over_three_rows_reads_back_exact_amounts(config):
    o = run_tap(config).orders["WX240506003"]
    assert o["_rows"] == [7, 8, 9]  # title row, blank row and header row above it
    assert o["customer_name"] == "义乌市小商品批发部"
    assert o["order_date"] == "2024-05-06T15:20:00+08:00"
    assert [(ln["sku"], ln["qty"], ln["unit_price"], ln["amount"]) for ln in o["lines"]] == [
        ("JG-W10", D("1000"), D("0.05"), D("50.00")),  # "1,000"
        ("JG-S4-20", D("500"), D("0.08"), D("40.00")),
        ("JG-M8-50", D("100"), D("0.35"), D("35.00")),
    ]
    assert o["goods_amount"] == D("125.00")
    assert o["receiver_mobile"] == "13957990001"  # written "139 5799 0001"
    assert o["remark"] == "请开专票; 加急"  # remarks of all rows; the 加急 one makes the order urgent
    assert o["urgent"] is True


def test_full_width_digits_and_a_landline_in_the_mobile_column(config):
    run = run_tap(config)
    first = run.orders["WX240506001"]
    assert first["lines"][0]["qty"] == D("200")  # written "２００"
    assert first["goods_amount"] == D("94.00")
    assert first["urgent"] is False
    second = run.orders["WX240506002"]
    assert second["urgent"] is True  # 加急 column says 是
    assert second["receiver_mobile"] is None
    assert second["receiver_phone"] == "0577-86861234"


def test_utf8_bom_csv_derives_amounts_and_finds_the_mobile_in_the_phone_cell(config):
    run = run_tap(config)
    o = run.orders["TEL-0508-01"]
    assert o["receiver_province"] == "江苏省" and o["receiver_district"] == "工业园区"
    assert [(ln["qty"], ln["unit_price"], ln["amount"]) for ln in o["lines"]] == [
        (D("30"), D("9.80"), D("294.00")),  # "３０" and "¥9.80"; no 金额 column: 数量 × 单价
        (D("20"), D("8.50"), D("170.00")),
    ]
    assert o["receiver_phone"] == "0512-66881234 / 13962100001"
    assert (o["shipping_fee"], o["needs_invoice"], o["total_amount"]) == (D("15"), True, None)
    assert o["receiver_mobile"] == "13962100001"
    two = run.orders["TEL-0508-02"]
    assert two["lines"][0]["qty"] == D("300") and two["lines"][0]["unit"] == "件"  # "300件"
    assert two["urgent"] is False  # 备注 says 不加急


def test_xlsx_rows_of_one_order_need_not_be_adjacent(config):
    run = run_tap(config)
    one, two = run.orders["EXPO-001"], run.orders["EXPO-002"]
    assert one["_sheet"] == "订单" and one["_rows"] == [4, 6] and two["_rows"] == [5, 7]
    assert one["order_date"] == "2024-05-10T10:30:00+08:00"
    assert one["customer_code"] == "C0088"
    assert [(ln["sku"], ln["qty"], ln["amount"], ln["is_gift"]) for ln in one["lines"]] == [
        ("JG-B6204", D("100"), D("850"), False), ("JG-GIFT-01", D("1"), D("0"), True)]
    assert two["goods_amount"] == D("470") and two["total_amount"] == D("470") and two["urgent"] is True


def test_encodings_are_detected_per_file(inbox):
    settings = ReaderSettings(shop="s")
    seen = {}
    for p in sorted(Path(inbox).iterdir()):
        stats = FileStats()
        with open(p, "rb") as fh:
            items = list(read_order_file(fh, name=p.name, sha256=sha256_of(fh), settings=settings, stats=stats))
        seen[p.name] = (stats.format, stats.encoding, stats.orders, stats.lines, stats.skipped_rows, len(items))
    assert seen == {
        "微信订单_20240506.csv": ("csv", "gb18030", 3, 6, 1, 3),  # the 合计 row is skipped
        "电话订单_20240508.csv": ("csv", "utf-8-sig", 2, 3, 0, 2),
        "广州五金展_20240510.xlsx": ("xlsx", None, 2, 4, 0, 2),
    }


def test_sample_orders_map_to_canonical_orders(config):
    from orderhub.transforms.canonical import canonicalize
    from orderhub.transforms.mapping import load_mapping

    mapping = load_mapping("orderfile")
    out = {o["order_no"]: canonicalize(o, mapping) for o in run_tap(config).order_records}
    c = out["WX240506003"]
    assert (c["source_system"], c["channel"], c["shop_id"], c["source_order_id"]) == \
        ("orderfile", "file", "wechat-sales", "WX240506003")
    assert c["status"] == "awaiting_confirmation" and c["source_status"] == "new"
    assert c["created_at"].isoformat() == "2024-05-06T15:20:00+08:00"
    assert c["total_amount"] == D("125.00") and c["is_urgent"] is True
    assert [(ln["source_sku"], ln["qty"], ln["amount"]) for ln in c["lines"]] == [
        ("JG-W10", D("1000"), D("50.00")), ("JG-S4-20", D("500"), D("40.00")), ("JG-M8-50", D("100"), D("35.00"))]
    assert out["EXPO-001"]["has_gift"] is True
    totals = {}
    for c in out.values():
        totals[c["source_order_id"][:3]] = totals.get(c["source_order_id"][:3], D(0)) + c["total_amount"]
    # WX2: the 合计 row of the sheet says 644.00; TEL: 464.00 + 15 运费 + 180.00; EXP: the 订单金额 column
    assert totals == {"WX2": D("644.00"), "TEL": D("659.00"), "EXP": D("1320")}
    assert len({c["order_id"] for c in out.values()}) == 7


def test_a_two_line_gbk_file_is_read_as_gbk(tmp_path: Path):
    (tmp_path / "短.csv").write_bytes("订单号,品名,数量\nA1,螺栓,2\n".encode("gbk"))  # statistical detectors say cp949
    o = run_tap({"path": str(tmp_path), "shop": "s"}).orders["A1"]
    assert (o["lines"][0]["sku_name"], o["lines"][0]["qty"]) == ("螺栓", D("2"))
