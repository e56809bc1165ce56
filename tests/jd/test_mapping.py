"""Records from tap-jd map into canonical orders through transforms/mappings/jd.yaml."""
from __future__ import annotations

from decimal import Decimal

from orderhub.connectors.jd.tap import TapJD
from orderhub.transforms.canonical import canonicalize
from orderhub.transforms.mapping import load_mapping
from orderhub.transforms.status import JD
from tests.jd.conftest import jd_config
from tests.taobao.tap_runner import run_tap


def test_tap_records_become_canonical_orders(jd_sandbox):
    app, url = jd_sandbox(shops=2, orders_per_shop=40)
    run = run_tap(TapJD, jd_config(app, url, order_api="jingdong.pop.order.enSearch"))
    mapping = load_mapping("jd")
    statuses = set()
    for rec in run.records:
        c = canonicalize(rec, mapping)
        statuses.add(c["status"])
        assert c["source_order_id"] == rec["orderId"] and c["shop_id"] == rec["_shop"]
        assert c["status"] == JD[rec["orderState"]]
        assert c["total_amount"] == Decimal(rec["orderPayment"])
        assert c["shipping_fee"] == Decimal(rec["freightPrice"])
        assert c["privacy_id"] == rec["consigneeInfo"]["encrypt_mobile"] and "*" in c["receiver_mobile"]
        assert c["source_hold"] == (rec["orderState"] in ("LOCKED", "PAUSE", "POP_ORDER_PAUSE"))
        assert [ln["qty"] for ln in c["lines"]] == [Decimal(i["itemTotal"]) for i in rec["itemInfoList"]]
    assert {"awaiting_confirmation", "shipped", "completed"} <= statuses
