"""Cleaning: SKU aliases with folding, CN mobiles, addresses, test orders, duplicate submissions."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from orderhub.connectors.common.errors import RecordError
from orderhub.transforms.cleaning import (DuplicateDetector, SkuDictionary, TestOrderFilter, fold, normalize_address,
                                          normalize_mobile)

SKUS = SkuDictionary({"MB-C200": {"name": "奔驰C200", "aliases": ["Mercedes-Benz C200", "梅赛德斯-奔驰C200"],
                                  "class": "auto"},
                      "M8-NUT": {"aliases": ["M8螺母"]}}, version="3")


@pytest.mark.parametrize("raw", ["奔驰C200", "Mercedes-Benz C200", "MB-C200", "mb-c200", "ＭＢ－Ｃ２００",
                                 "mercedes benz c200", "梅赛德斯-奔驰Ｃ２００", "  MB C200 "])
def test_aliases_fold_to_one_canonical_code(raw):
    assert SKUS.canonical(raw) == ("MB-C200", True)


def test_unknown_sku_keeps_its_code_and_name_is_a_fallback():
    assert SKUS.canonical(" X-1 ") == ("X-1", False)
    assert SKUS.canonical("unknown", "奔驰C200") == ("MB-C200", True)
    assert SKUS.product_class["MB-C200"] == "auto" and SKUS.label == "skus@3"


def test_conflicting_aliases_are_a_config_error():
    from orderhub.connectors.common.errors import ConfigError

    with pytest.raises(ConfigError, match="folds to the same key"):
        SkuDictionary({"A": {"aliases": ["ab-c"]}, "B": {"aliases": ["AB C"]}})


def test_fold_is_nfkc_and_casefold():
    assert fold("ＡＢＣ－１２３") == fold("abc123") == "abc123"


@pytest.mark.parametrize("raw,expected", [("13812345678", "13812345678"), ("+86 138-1234-5678", "13812345678"),
                                          ("0086 13812345678", "13812345678"), ("138****5678", "138****5678"),
                                          ("021-12345678", "021-12345678"), ("13812345678-1234", "13812345678-1234")])
def test_valid_phones(raw, expected):
    assert normalize_mobile(raw) == expected


@pytest.mark.parametrize("raw", ["1234", "23812345678", "138123456789", "abc", "12812345678"])
def test_invalid_mobiles_are_record_errors(raw):
    with pytest.raises(RecordError) as e:
        normalize_mobile(raw)
    assert e.value.code == "bad_phone" and e.value.field == "receiver_mobile"


@pytest.mark.parametrize("text,expected", [
    ("江苏省常州市武进区湖塘镇1号", ("江苏省", "常州市", "武进区")),
    ("上海浦东新区张江路1号", ("上海市", "上海市", "浦东新区")),
    ("广东深圳市南山区科技园", ("广东省", "深圳市", "南山区")),
    ("内蒙古呼和浩特市新城区", ("内蒙古自治区", "呼和浩特市", "新城区")),
    ("新疆维吾尔自治区伊犁哈萨克自治州伊宁市", ("新疆维吾尔自治区", "伊犁哈萨克自治州", "伊宁市")),
])
def test_address_is_split_into_province_city_district(text, expected):
    a = normalize_address(None, None, None, text)
    assert (a.province, a.city, a.district) == expected


def test_given_parts_win_and_short_province_expands():
    a = normalize_address("江苏", "苏州市", None, "苏州市工业园区星湖街1号")
    assert (a.province, a.city, a.district) == ("江苏省", "苏州市", "工业园区")


def test_test_orders_are_flagged():
    f = TestOrderFilter(skus=frozenset({"TEST-SKU"}))
    assert f.is_test({"customer_name": "测试订单-张三", "lines": []})
    assert f.is_test({"customer_name": "A", "lines": [{"canonical_sku": "TEST-SKU"}]})
    assert f.is_test({"customer_name": "正常客户", "special_requirements": "尽快发货", "lines": []}) is None


def _o(oid, minutes, qty="2", total="10", cust="C1"):
    return {"order_id": oid, "source_order_id": oid, "source_system": "erp", "customer_id": cust,
            "total_amount": Decimal(total), "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc) +
            timedelta(minutes=minutes), "lines": [{"canonical_sku": "A", "qty": Decimal(qty)}]}


def test_duplicate_submission_within_the_window_is_detected():
    d = DuplicateDetector(window=timedelta(minutes=10))
    assert d.check(_o("o1", 0)) is None
    assert d.check(_o("o2", 5)) == "o1"            # same customer, lines, amount, 5 min later
    assert d.check(_o("o3", 30)) is None           # outside the window
    assert d.check(_o("o4", 6, qty="3")) is None   # different lines
    assert d.check(_o("o5", 6, cust="C2")) is None  # different customer
    assert d.check(_o("o1", 0)) is None            # the same order seen again is not its own duplicate
