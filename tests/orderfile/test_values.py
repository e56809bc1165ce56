"""Cells typed by hand: full-width digits, currency signs, Chinese dates, yes/no words, Excel-mangled numbers."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from orderhub.connectors.orderfile import values as V
from orderhub.connectors.orderfile.aliases import build_alias_index, match_header

SH = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("cell, expected", [
    ("１２.５０", Decimal("12.50")), ("¥1,234.50", Decimal("1234.50")), ("￥８元", Decimal("8")),
    (" 0.35 ", Decimal("0.35")), (0.1 + 0.2, Decimal("0.3")), (850, Decimal("850")), ("", None), (None, None),
])
def test_money_cells(cell, expected):
    assert V.decimal(cell, "bad_amount", "金额") == expected


@pytest.mark.parametrize("cell", ["abc", "1e5", "NaN", "1,23", "12.3.4", True, float("inf")])
def test_money_cells_that_are_refused(cell):
    with pytest.raises(V.BadValue) as err:
        V.decimal(cell, "bad_amount", "金额")
    assert err.value.code == "bad_amount"


@pytest.mark.parametrize("cell, expected", [
    ("200", (Decimal("200"), None)), ("３００件", (Decimal("300"), "件")), ("2.5 kg", (Decimal("2.5"), "kg")),
    (12, (Decimal("12"), None)),
])
def test_quantities(cell, expected):
    assert V.quantity(cell, "数量") == expected


@pytest.mark.parametrize("cell", ["0", "-1", "十个", "1/2"])
def test_quantities_that_are_refused(cell):
    with pytest.raises(V.BadValue, match="数量"):
        V.quantity(cell, "数量")


@pytest.mark.parametrize("cell, expected", [
    ("2024-05-06", "2024-05-06T00:00:00+08:00"), ("2024/5/6", "2024-05-06T00:00:00+08:00"),
    ("2024.5.6", "2024-05-06T00:00:00+08:00"), ("2024年5月6日", "2024-05-06T00:00:00+08:00"),
    ("20240506", "2024-05-06T00:00:00+08:00"), ("２０２４－０５－０６ １４：３０", "2024-05-06T14:30:00+08:00"),
    ("2024-05-06T14:30:05", "2024-05-06T14:30:05+08:00"), (datetime(2024, 5, 6, 9), "2024-05-06T09:00:00+08:00"),
    (date(2024, 5, 6), "2024-05-06T00:00:00+08:00"), (45418, "2024-05-06T00:00:00+08:00"),  # Excel serial
])
def test_dates(cell, expected):
    assert V.order_time(cell, SH, "日期").isoformat() == expected


@pytest.mark.parametrize("cell", ["5/6/2024", "2024-02-30", "昨天", "1999-01-01", "2024-13-01"])
def test_dates_that_are_refused(cell):
    with pytest.raises(V.BadValue) as err:
        V.order_time(cell, SH, "日期")
    assert err.value.code == "bad_date"


@pytest.mark.parametrize("cell, expected", [("是", True), ("Y", True), ("√", True), ("加急", True), ("否", False),
                                            ("N", False), ("０", False), ("", None), (True, True)])
def test_flags(cell, expected):
    assert V.flag(cell, "加急") is expected


def test_order_numbers_excel_has_damaged_are_refused():
    assert V.order_no(2024050601.0, "订单号") == "2024050601"
    assert V.order_no('="00123"', "订单号") == "00123"
    assert V.order_no("ＷＸ００１", "订单号") == "WX001"
    for bad in (1.2345678901234568e17, "1.23457E+17", "1.2E17"):
        with pytest.raises(V.BadValue) as err:
            V.order_no(bad, "订单号")
        assert err.value.code == "bad_order_no"


def test_urgent_words_are_found_unless_negated():
    words = ("加急", "急单", "特急")
    assert V.mentions("周五前到，加急！", words)
    assert not V.mentions("不加急", words) and not V.mentions("无需加急", words)
    assert V.mentions("不要拖，特急", words)


def test_mobile_numbers_are_found_inside_phone_cells():
    assert V.mobile_in("0512-66881234 / 13962100001") == "13962100001"
    assert V.mobile_in("+86 138-1234-5678") == "13812345678"
    assert V.mobile_in("１３８１２３４５６７８") == "13812345678"
    assert V.mobile_in("0577-86861234") is None


def test_headers_match_after_folding_but_never_by_substring():
    index, _ = build_alias_index()
    assert match_header(" 单价（元） ", index) == "unit_price"
    assert match_header("订 单 号*", index) == "order_no"
    assert match_header("ＳＫＵ", index) == "sku"
    assert match_header("数量(件)", index) == "qty"
    assert match_header("商品编码", index) == "sku" and match_header("商品", index) == "sku_name"
    assert match_header("商品编码2", index) is None
