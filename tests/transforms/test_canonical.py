"""Canonicalization: stable ids, exact money and times, JSON Schema, and quarantine of bad records."""
from datetime import datetime, timezone
from decimal import Decimal

import fastjsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderhub.connectors.common.errors import RecordError
from orderhub.transforms import Canonicalizer, canonical_order_id, canonicalize, compile_mapping, json_schema
from orderhub.transforms.model import to_record

NOW = datetime(2026, 11, 21, tzinfo=timezone.utc)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=20), st.one_of(st.none(), st.text(max_size=20)), st.text(min_size=1, max_size=30))
def test_canonical_ids_are_stable_and_distinct(source, shop, oid):
    a = canonical_order_id(source, shop, oid)
    assert a == canonical_order_id(source, shop, oid)
    assert a.startswith("o_") and len(a) == 26
    assert a != canonical_order_id(source, shop, oid + "x")
    assert a != canonical_order_id(source + "x", shop, oid)


def test_erp_record_becomes_an_exact_canonical_order(erp_mapping, make_order):
    o = canonicalize(make_order(), erp_mapping, now=NOW)
    assert o["order_id"] == canonical_order_id("erp", "main", "SO1")
    assert o["status"] == "awaiting_confirmation" and o["source_status"] == "A"
    assert o["total_amount"] == Decimal("235.00") and o["goods_amount"] == Decimal("235.00")
    assert o["created_at"] == datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)  # 09:00 Shanghai
    assert (o["receiver_province"], o["receiver_city"], o["receiver_district"]) == ("江苏省", "常州市", "武进区")
    assert [(ln["canonical_sku"], ln["qty"], ln["amount"]) for ln in o["lines"]] == [
        ("M8-BOLT-20", Decimal("500"), Decimal("175.00")), ("M8-NUT", Decimal("500"), Decimal("60.00"))]
    assert o["mapping_version"] == "erp_sql@1" and len(o["raw_hash"]) == 32


def test_output_validates_against_the_exported_json_schema(erp_mapping, make_order):
    validate = fastjsonschema.compile(json_schema())
    record = to_record(canonicalize(make_order(), erp_mapping, now=NOW))
    validate(record)
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validate({**record, "lines": [{"sku": "no qty"}]})


FEN = {
    "source": "douyin-test", "version": 1, "money_unit": "fen", "status_map": "douyin",
    "header": {"source_order_id": "order_id", "source_status": "order_status",
               "created_at": {"path": "create_time", "type": "time", "format": "epoch_s"},
               "total_amount": "order_amount", "shipping_fee": "post_amount"},
    "lines": {"path": "sku_order_list", "fields": {"qty": "item_num", "unit_price": "origin_amount",
                                                     "amount": "pay_amount", "source_sku": "code|sku_id",
                                                     "refund_status": "after_sale_info.after_sale_status"}},
    "refund_status_map": "douyin_after_sale",
}


def test_fen_amounts_and_unix_seconds_are_converted():
    m = compile_mapping(FEN, name="dy")
    o = canonicalize({"order_id": "6900", "order_status": 2, "create_time": 1700000000, "order_amount": 19900,
                      "post_amount": 0,
                      "sku_order_list": [{"item_num": 2, "origin_amount": 9950, "pay_amount": 19900, "sku_id": 77,
                                          "after_sale_info": {"after_sale_status": 7}}]}, m)
    assert o["total_amount"] == Decimal("199.00") and o["lines"][0]["unit_price"] == Decimal("99.50")
    assert o["created_at"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert o["lines"][0]["source_sku"] == "77" and o["lines"][0]["refund_status"] == "returning"
    assert o["status"] == "awaiting_confirmation"


def test_mapping_errors_name_the_key():
    from orderhub.connectors.common.errors import ConfigError

    bad = dict(FEN, header={**FEN["header"], "total_amount": {"path": "x", "type": "moneyy"}})
    with pytest.raises(ConfigError, match="header.total_amount"):
        compile_mapping(bad, name="dy")
    with pytest.raises(ConfigError, match="nonsense"):
        compile_mapping(dict(FEN, header={**FEN["header"], "nonsense": "x"}), name="dy")
    with pytest.raises(ConfigError, match="lines.fields.qty"):
        compile_mapping(dict(FEN, lines={"path": "l", "fields": {"amount": "a"}}), name="dy")


MALFORMED = [
    ("missing id", {"bill_no": None}, "missing_id", "source_order_id"),
    ("wrong type", {"total_amount": {"a": 1}}, "wrong_type", "total_amount"),
    ("not a number", {"total_amount": "12元"}, "bad_number", "total_amount"),
    ("bad phone", {"receiver_phone": "1234"}, "bad_phone", "receiver_mobile"),
    ("negative qty", {"lines": [{"sku": "A", "qty": "-1", "price": "1"}]}, "bad_qty", "lines[0].qty"),
    ("zero qty", {"lines": [{"sku": "A", "qty": "0", "price": "1"}]}, "bad_qty", "lines[0].qty"),
    ("unknown status", {"status": "QQ"}, "unknown_status", "source_status"),
    ("invalid utf-8", {"customer_name": b"\xff\xfe".decode("utf-8", "surrogateescape")}, "invalid_text",
     "customer_name"),
    ("10 MB string", {"remark": "x" * 10_000_000}, "text_too_long", "remark"),
    # the hub's column widths: checked by the generated mapping code, or after it for fields set later
    ("long customer", {"customer_code": "C" * 129}, "text_too_long", "customer_id"),
    ("long name", {"customer_name": "名" * 256}, "text_too_long", "customer_name"),
    ("long shop", {"_shop": "s" * 129}, "text_too_long", "shop_id"),
    ("long sku", {"lines": [{"sku": "A" * 129, "qty": "1", "price": "1"}]}, "text_too_long", "lines[0].source_sku"),
    ("long sku name", {"lines": [{"sku": "A", "sku_name": "螺" * 256, "qty": "1", "price": "1"}]},
     "text_too_long", "lines[0].sku_name"),
    ("NUL", {"receiver_name": "a\x00b"}, "invalid_text", "receiver_name"),
    ("zero date", {"order_date": "0000-00-00 00:00:00"}, "bad_time", "created_at"),
    ("1970", {"order_date": "1970-01-01 08:00:00"}, "implausible_time", "created_at"),
    ("future", {"order_date": "2031-01-01 00:00:00"}, "implausible_time", "created_at"),
    ("no lines", {"lines": []}, "no_lines", "lines"),
    ("overflow", {"total_amount": "1e40"}, "number_out_of_range", "total_amount"),
    ("negative total", {"total_amount": "-5"}, "negative_amount", "total_amount"),
]


@pytest.mark.parametrize("case,patch,code,field", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_record_is_quarantined_and_the_batch_goes_on(erp_mapping, make_order, case, patch, code, field):
    good1, good2 = make_order(1), make_order(2, customer_code="C2")
    bad = make_order(3)
    bad.update(patch)
    res = Canonicalizer(erp_mapping).run([good1, bad, good2], now=NOW)
    assert [o["source_order_id"] for o in res.orders] == ["SO1", "SO2"]
    assert len(res.quarantined) == 1
    q = res.quarantined[0]
    assert (q.reason_code, q.field) == (code, field)
    assert q.raw is bad and q.message
    if case != "missing id":
        assert q.source_order_id == "SO3"
    if code == "text_too_long" and case != "10 MB string":
        assert "characters long (limit" in q.message


def test_text_at_the_limit_is_accepted(erp_mapping, make_order):
    res = Canonicalizer(erp_mapping).run([make_order(1, customer_code="C" * 128, customer_name="名" * 255)], now=NOW)
    assert not res.quarantined and res.orders[0]["customer_id"] == "C" * 128


def test_quarantine_message_never_contains_the_full_phone(erp_mapping, make_order):
    res = Canonicalizer(erp_mapping).run([make_order(receiver_phone="139123456789999")], now=NOW)
    assert res.quarantined and "139123456789999" not in res.quarantined[0].message


def test_a_non_dict_record_is_quarantined(erp_mapping):
    res = Canonicalizer(erp_mapping).run(["not an order", 42], now=NOW)
    assert [q.reason_code for q in res.quarantined] == ["wrong_type", "wrong_type"]


def test_same_record_gives_the_same_raw_hash_and_order(erp_mapping, make_order):
    a = canonicalize(make_order(), erp_mapping)
    b = canonicalize(make_order(), erp_mapping)
    assert a == b
    c = canonicalize(make_order(total_amount="236.00"), erp_mapping)
    assert c["raw_hash"] != a["raw_hash"] and c["order_id"] == a["order_id"]


def test_integer_line_ids_and_numbers_take_the_fast_path_exactly(erp_mapping, make_order):
    big = 10 ** 40  # beyond the fast path's range: still text, through the checked conversion
    rec = make_order(1, lines=[{"id": 7, "line_no": 2, "sku": "A", "qty": "1", "price": "1"},
                               {"id": big, "line_no": "3", "sku": "B", "qty": "1", "price": "1"}])
    res = Canonicalizer(erp_mapping).run([rec, make_order(2, lines=[{"id": 1, "line_no": True, "sku": "A",
                                                                      "qty": "1", "price": "1"}])], now=NOW)
    (o,) = res.orders
    assert [(ln["source_line_id"], ln["line_no"]) for ln in o["lines"]] == [("7", 2), (str(big), 3)]
    (q,) = res.quarantined
    assert (q.reason_code, q.field) == ("wrong_type", "lines[0].line_no")
