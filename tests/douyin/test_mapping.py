"""Sandbox records through transforms/mappings/douyin.yaml into canonical orders (fen → yuan, epoch seconds,
after-sale states on lines, gifts)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from orderhub.connectors.douyin.tap import TapDouyin
from orderhub.transforms.canonical import canonicalize
from orderhub.transforms.mapping import load_mapping
from tests.alibaba1688.harness import run_tap, tap_config


def test_every_sandbox_order_maps_to_a_canonical_order(gw):
    run = run_tap(TapDouyin, tap_config(gw.app, gw.server))
    mapping = load_mapping("douyin")
    now = datetime.now(timezone.utc)
    orders = {o["source_order_id"]: o for o in (canonicalize(r, mapping, now=now) for r in run.records)}
    assert len(orders) == 120
    for oid, o in orders.items():
        raw = gw.app.orders[oid]
        assert o["source_status"] == str(raw["status"]) and o["shop_id"] == raw["shop"]
        assert o["updated_at"] == datetime.fromtimestamp(raw["updated"], timezone.utc)
        assert o["paid_at"] == (datetime.fromtimestamp(raw["paid"], timezone.utc) if raw["paid"] else None)
        assert o["shipping_fee"] == Decimal(raw["post"]) / 100  # fen → yuan
        assert o["total_amount"] == sum(l["amount"] for l in o["lines"]) + o["shipping_fee"]
        assert o["has_gift"] == any(l["gift"] for l in raw["lines"])
        assert o["is_urgent"] == ("加急" in raw["seller_words"])
        assert "*" in o["receiver_mobile"] and o["privacy_id"].count("#") == 6
        for line, src in zip(o["lines"], raw["lines"]):
            assert line["unit_price"] == Decimal(src["price"]) / 100 and line["qty"] == src["num"]
            want = {0: "none", 6: "refund_requested", 12: "refunded"}[src["after_sale"]]
            assert line["refund_status"] == want
    assert {"pending_payment", "awaiting_confirmation", "shipped", "completed", "cancelled"} <= {
        o["status"] for o in orders.values()}
