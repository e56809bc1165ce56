"""Stock from the WMS feeds the canonical layer's rules, whose decisions the WMS then receives."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from orderhub.connectors.common.config import load_yaml
from orderhub.connectors.qimen import QimenDeliveryWriter, stock_snapshot
from tests.qimen.conftest import target_config

canonical = pytest.importorskip("orderhub.transforms.canonical")
rules = pytest.importorskip("orderhub.transforms.rules")
mapping = pytest.importorskip("orderhub.transforms.mapping")
cleaning = pytest.importorskip("orderhub.transforms.cleaning")


def file_order(no: str, sku: str, qty: int, remark: str = "") -> dict:
    """A record as tap-orderfile emits it (transforms/mappings/orderfile.yaml)."""
    return {"order_no": no, "_shop": "wechat-1", "status": "已确认", "order_date": "2024-05-01T10:00:00+08:00",
            "customer_name": f"客户{no}", "receiver_name": "王五", "receiver_mobile": "13912345678",
            "receiver_province": "浙江省", "receiver_city": "宁波市", "receiver_district": "鄞州区",
            "receiver_address": "中山东路1号", "total_amount": Decimal(qty * 10), "remark": remark,
            "lines": [{"line_no": 1, "sku": sku, "sku_name": sku, "qty": Decimal(qty), "unit_price": Decimal(10),
                       "amount": Decimal(qty * 10)}]}


def test_wms_stock_drives_holds_and_released_orders_reach_the_wms_as_decided(wms, client):
    wms.app.set_stock("WH-EAST", "SKU-001", 5)
    wms.app.set_stock("WH-EAST", "SKU-002", 1)
    wms.app.set_stock("WH-SOUTH", "SKU-002", 50)  # stock elsewhere does not cover an order routed to WH-EAST
    stock = stock_snapshot(client, ["WH-EAST", "WH-SOUTH"], ["SKU-001", "SKU-002"])
    skus = cleaning.SkuDictionary({"SKU-001": {"aliases": ["螺栓M8"]}, "SKU-002": {"aliases": ["扳手"]}})
    spec = {**load_yaml(rules.RULES_DIR / "default.yaml", resolve_refs=False), "inventory": {"factor": 1}}
    canon = canonical.Canonicalizer(mapping.load_mapping("orderfile"), skus=skus,
                                    rules=rules.RuleSet(spec, name="default-with-stock"),
                                    context=rules.RuleContext(stock=stock))
    batch = canon.run([file_order("F1", "螺栓M8", 2), file_order("F2", "扳手", 10),
                       file_order("F3", "螺栓M8", 3, remark="加急，今天发")],
                      now=datetime(2024, 5, 1, 12, tzinfo=timezone.utc))
    assert not batch.quarantined
    by_no = {o["source_order_id"]: o for o in batch.orders}
    assert [c["code"] for c in by_no["F2"]["hold_reasons"]] == ["insufficient_stock"]

    with QimenDeliveryWriter.from_config(target_config(wms)) as w:
        results = {r["order_id"]: r for r in w.send(batch.orders)}
    assert results[by_no["F2"]["order_id"]]["result"] == "held"
    stored = wms.app.delivery_orders
    assert sorted(stored) == sorted([by_no["F1"]["order_id"], by_no["F3"]["order_id"]])
    f1, f3 = (stored[by_no[n]["order_id"]] for n in ("F1", "F3"))
    assert (f1["deliveryOrder"]["warehouseCode"], f1["deliveryOrder"]["isUrgency"]) == ("WH-EAST", "N")
    assert (f3["deliveryOrder"]["warehouseCode"], f3["deliveryOrder"]["isUrgency"]) == ("WH-EAST", "Y")
    assert f3["deliveryOrder"]["remark"] == "加急，今天发"
    assert [(x["itemCode"], x["planQty"]) for x in f1["orderLines"]] == [("SKU-001", "2")]
