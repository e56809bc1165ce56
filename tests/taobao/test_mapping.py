"""Records from tap-taobao map into canonical orders through transforms/mappings/taobao.yaml."""
from __future__ import annotations

from decimal import Decimal

from orderhub.connectors.taobao.tap import TapTaobao
from orderhub.transforms.canonical import canonicalize
from orderhub.transforms.mapping import load_mapping
from orderhub.transforms.status import TAOBAO, TAOBAO_REFUND
from tests.taobao.conftest import after_this_second, tap_config
from tests.taobao.tap_runner import run_tap


def test_tap_records_become_canonical_orders(top_sandbox):
    app, url = top_sandbox(shops=2, orders_per_shop=40, buyer_message_rate=0.5)
    cfg = tap_config(app, url)
    first = run_tap(TapTaobao, cfg)
    for _ in range(3):                      # refunds asked and agreed on some lines
        app.change_statuses(30)
    after_this_second()
    second = run_tap(TapTaobao, cfg, state=first.state)
    mapping = load_mapping("taobao")
    seen_refund = set()
    for rec in first.records + second.records:
        c = canonicalize(rec, mapping)
        assert c["source_order_id"] == rec["tid_str"] and c["shop_id"] == rec["_shop"]
        assert c["status"] == TAOBAO[rec["status"]] and c["source_status"] == rec["status"]
        assert c["total_amount"] == Decimal(rec["payment"]) and c["currency"] == "CNY"
        assert c["privacy_id"] == rec["oaid"] and "*" in c["receiver_mobile"]
        assert c["special_requirements"] == rec.get("buyer_message")
        assert c["updated_at"].utcoffset().total_seconds() == 8 * 3600
        assert [ln["source_line_id"] for ln in c["lines"]] == [o["oid_str"] for o in rec["orders"]["order"]]
        for ln, raw in zip(c["lines"], rec["orders"]["order"]):
            assert ln["refund_status"] == TAOBAO_REFUND[raw["refund_status"]]
            seen_refund.add(ln["refund_status"])
    assert {"none", "refund_requested", "refunded"} <= seen_refund
    # the canonical id is stable across runs: the same trade read twice maps to the same order_id
    again = {r["tid_str"]: canonicalize(r, mapping)["order_id"] for r in first.records}
    for r in second.records:
        assert canonicalize(r, mapping)["order_id"] == again[r["tid_str"]]
