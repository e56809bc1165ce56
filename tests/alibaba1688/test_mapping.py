"""Sandbox records through transforms/mappings/alibaba1688.yaml into canonical orders."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from orderhub.connectors.alibaba1688.tap import TapAlibaba1688
from orderhub.transforms.canonical import canonicalize
from orderhub.transforms.mapping import load_mapping
from tests.alibaba1688.harness import run_tap, tap_config


def test_every_sandbox_order_maps_to_a_canonical_order(gw):
    run = run_tap(TapAlibaba1688, tap_config(gw.app, gw.server))
    mapping = load_mapping("alibaba1688")
    now = datetime.now(timezone.utc)
    orders = {o["source_order_id"]: o for o in (canonicalize(r, mapping, now=now) for r in run.records)}
    assert len(orders) == 120
    for oid, o in orders.items():
        raw = gw.app.orders[oid]
        assert o["source_status"] == raw["status"] and o["shop_id"] == raw["shop"]
        assert o["channel"] == "1688" and o["mapping_version"] == "alibaba1688@1"
        assert o["updated_at"] == datetime.fromtimestamp(raw["modified"] / 1000, timezone.utc)
        assert o["discount_amount"] == Decimal(raw["discount_fen"]) / 100  # baseInfo.discount is fen
        assert o["total_amount"] == sum(l["amount"] for l in o["lines"]) + raw["shipping"]
        assert [l["source_sku"] for l in o["lines"]] == [l["cargo"] for l in raw["lines"]]
        assert "*" in o["receiver_mobile"] and o["privacy_id"].startswith("caid-")
        assert o["is_urgent"] == ("加急" in raw["memo"])
        assert o["needs_invoice"] == ("专票" in raw["memo"])
    statuses = {o["status"] for o in orders.values()}
    assert {"pending_payment", "awaiting_confirmation", "shipped", "completed"} <= statuses
    assert any(l["refund_status"] == "refund_requested" for o in orders.values() for l in o["lines"])
