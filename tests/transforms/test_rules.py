"""Rules: holds with reason codes, routing, priority, merge hints; every decision records the rule-set version."""
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from orderhub.transforms import Canonicalizer, RuleContext, RuleSet, SkuDictionary

NOW = datetime(2026, 11, 21, tzinfo=timezone.utc)
SPEC = {
    "name": "t", "version": 7,
    "credit": {"factor": 1.2},
    "inventory": {"factor": 1},
    "required_fields": ["receiver_address"],
    "price_sanity": {"min_unit_price": 0.01, "max_unit_price": 1000, "amount_tolerance": 0.05},
    "routing": {"default_warehouse": "WH-EAST", "capacity": {"WH-SOUTH": 1},
                "rules": [{"when": {"product_class": "bulky"}, "warehouse": "WH-BULKY"},
                          {"when": {"region": ["华南"]}, "warehouse": "WH-SOUTH"},
                          {"when": {"customer_level": "vip"}, "warehouse": "WH-VIP"}]},
    "priority": {"vip_levels": ["vip"], "amount_threshold": 1000, "urgent_keywords": ["加急"]},
    "merge": {"min_orders": 2, "window_hours": 24},
}
SKUS = SkuDictionary({"BIG": {"class": "bulky"}, "M8-BOLT-20": {}, "M8-NUT": {}})


def run(erp_mapping, records, ctx=None, spec=SPEC):
    return Canonicalizer(erp_mapping, rules=RuleSet(spec), skus=SKUS, context=ctx or RuleContext()).run(records, now=NOW)


def codes(o):
    return [r["code"] for r in o["hold_reasons"]]


def test_credit_hold_and_consumption(erp_mapping, make_order):
    ctx = RuleContext(credit={"C1": Decimal("300")})
    res = run(erp_mapping, [make_order(1), make_order(2, receiver_name="李四", receiver_phone="13800000000")], ctx)
    a, b = res.orders
    assert not a["held"] and a["status"] == "confirmed"           # 235 × 1.2 = 282 ≤ 300
    assert {ln["line_status"] for ln in a["lines"]} == {"confirmed"}
    assert {ln["line_status"] for ln in b["lines"]} == {"awaiting_confirmation"}
    assert codes(b) == ["credit_exceeded"] and b["status"] == "awaiting_confirmation"
    assert ctx.credit["C1"] == Decimal("300") - Decimal("282.0")
    assert a["ruleset_version"] == b["ruleset_version"] == "t@7"


def test_inventory_coverage_at_the_routed_warehouse(erp_mapping, make_order):
    stock = {("WH-EAST", "M8-BOLT-20"): Decimal(600), ("WH-EAST", "M8-NUT"): Decimal(900)}
    res = run(erp_mapping, [make_order(1), make_order(2, customer_code="C9")], RuleContext(stock=stock))
    assert not res.orders[0]["held"]
    assert codes(res.orders[1]) == ["insufficient_stock"]
    assert "M8-BOLT-20: need 500" in res.orders[1]["hold_reasons"][0]["message"]
    assert stock[("WH-EAST", "M8-BOLT-20")] == Decimal(100)


def test_required_fields_and_price_sanity(erp_mapping, make_order):
    res = run(erp_mapping, [make_order(1, receiver_address=None),
                            make_order(2, customer_code="C2", lines=[{"sku": "M8-NUT", "qty": "1", "price": "5000"}]),
                            make_order(3, customer_code="C3", lines=[{"sku": "M8-NUT", "qty": "2", "price": "1",
                                                                       "amount": "900"}])])
    assert codes(res.orders[0]) == ["missing_field"]
    assert codes(res.orders[1]) == ["price_too_high"]
    assert codes(res.orders[2]) == ["amount_mismatch"]


def test_routing_by_class_region_level_and_capacity(erp_mapping, make_order):
    south = "广东省深圳市南山区科技园1号"
    res = run(erp_mapping, [
        make_order(1, lines=[{"sku": "BIG", "qty": "1", "price": "10"}]),
        make_order(2, customer_code="C2", receiver_address=south),
        make_order(3, customer_code="C3", receiver_address=south, receiver_phone="13700000000"),  # WH-SOUTH is full
        make_order(4, customer_code="C4", receiver_phone="13600000000"),
    ], RuleContext(customer_levels={"C4": "vip"}))
    assert [o["warehouse_code"] for o in res.orders] == ["WH-BULKY", "WH-SOUTH", "WH-EAST", "WH-VIP"]
    assert res.orders[3]["priority"] == "high" and res.orders[3]["customer_level"] == "vip"


def test_priority_urgent_and_amount(erp_mapping, make_order):
    res = run(erp_mapping, [make_order(1, remark="加急!"), make_order(2, customer_code="C2", urgent=1),
                            make_order(3, customer_code="C3", total_amount="2000.00",
                                       lines=[{"sku": "M8-NUT", "qty": "100", "price": "20"}]),
                            make_order(4, customer_code="C4", receiver_phone="13500000000")])
    assert [o["priority"] for o in res.orders] == ["urgent", "urgent", "high", "normal"]


def test_merge_hint_for_the_same_receiver(erp_mapping, make_order):
    res = run(erp_mapping, [make_order(1), make_order(2, customer_code="C2"),
                            make_order(3, customer_code="C3", receiver_name="别人", receiver_phone="13300000000")])
    a, b, c = res.orders
    assert a["merge_hint"] is None and b["merge_hint"] is not None and c["merge_hint"] is None


def test_test_orders_and_duplicates_are_held(erp_mapping, make_order):
    spec = {**SPEC, "test_orders": {"keywords": ["测试单"]}, "duplicates": {"window_minutes": 10}}
    res = run(erp_mapping, [make_order(1), make_order(2), make_order(3, customer_code="C3", remark="测试单")], spec=spec)
    assert codes(res.orders[1]) == ["duplicate_submission"] and "SO1" in res.orders[1]["hold_reasons"][0]["message"]
    assert codes(res.orders[2]) == ["test_order"]


def test_shipped_orders_are_not_held_again(erp_mapping, make_order):
    res = run(erp_mapping, [make_order(1, status="C", receiver_address=None)])
    assert not res.orders[0]["held"] and res.orders[0]["status"] == "shipped"


def test_rule_set_errors_name_the_key():
    from orderhub.connectors.common.errors import ConfigError

    with pytest.raises(ConfigError, match="version"):
        RuleSet({"name": "x"})
    with pytest.raises(ConfigError, match="routing.rules\\[0\\].when"):
        RuleSet({"version": 1, "routing": {"rules": [{"warehouse": "W", "when": {"colour": "red"}}]}})
    with pytest.raises(ConfigError, match="credit.factor"):
        RuleSet({"version": 1, "credit": {"factor": "lots"}})


def test_default_rule_set_loads():
    assert RuleSet.load("default").label == "default@1"
