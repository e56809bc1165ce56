"""The benchmark-schema mapping (transforms/mappings/erp_sql.yaml) over records read by the reader."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from orderhub.connectors.erp_sql.reader import OrderReader
from orderhub.transforms.canonical import canonicalize
from orderhub.transforms.mapping import load_mapping
from orderhub.transforms.model import canonical_order_id
from tests.erp_sql.conftest import CST, reader_config


def test_erp_sql_mapping_turns_so_header_rows_into_canonical_orders(erp):
    erp.add_orders(range(1, 6), lines=2)
    records = [r for b, _ in OrderReader(reader_config(erp, shop="book_a")).iter_batches({}) for r in b]
    mapping = load_mapping("erp_sql")
    orders = [canonicalize(r, mapping, now=dt.datetime(2026, 3, 2, tzinfo=CST)) for r in records]
    # status column A,B,C,D,Z (id % 5 → B,C,D,Z,A for ids 1..5)
    assert [(o["source_status"], o["status"]) for o in orders] == [
        ("B", "confirmed"), ("C", "shipped"), ("D", "completed"), ("Z", "cancelled"), ("A", "awaiting_confirmation")]
    o4 = orders[3]
    assert o4["order_id"] == canonical_order_id("erp", "book_a", "SO000004")
    assert (o4["shop_id"], o4["source_order_id"], o4["customer_id"]) == ("book_a", "SO000004", "C4")
    assert o4["is_urgent"] is True and orders[0]["is_urgent"] is False       # urgent column
    assert o4["special_requirements"] == "加急 请优先发货"                      # remark
    assert orders[0]["special_requirements"] is None                          # empty remark
    assert o4["created_at"] == dt.datetime(2026, 3, 1, 9, 0, tzinfo=CST)
    assert o4["total_amount"] == Decimal("1.17") and o4["goods_amount"] == Decimal("1.17")
    assert [(ln["line_no"], ln["source_sku"], ln["qty"], ln["amount"]) for ln in o4["lines"]] == [
        (1, "M8-BOLT-1", Decimal("1.0000"), Decimal("0.39")), (2, "M8-BOLT-2", Decimal("2.0000"), Decimal("0.78"))]
    assert o4["receiver_mobile"] == "13800000004"
