"""QimenDeliveryWriter against the sandbox WMS: exactly-once delivery, holds, routing, breaker, XML safety."""
from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from orderhub.connectors.qimen import CircuitBreaker, QimenDeliveryWriter, delivery_order_code
from tests.qimen.conftest import order, target_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def writer_for(wms, breaker=None, **over):
    return QimenDeliveryWriter.from_config(target_config(wms, **over), breaker=breaker)


def test_same_stream_twice_gives_one_delivery_order_per_order(wms):
    orders = [order(i) for i in range(6)]
    with writer_for(wms) as w:
        first = w.send(orders)
        second = w.send(orders)
    assert [r["result"] for r in first] == ["created"] * 6
    assert [r["result"] for r in second] == ["unchanged"] * 6
    stored = wms.app.delivery_orders
    assert sorted(stored) == sorted(o["order_id"] for o in orders)
    assert wms.app.create_calls == 12 and set(wms.app.create_calls_by_code.values()) == {2}
    # the answer to the re-send carries the WMS's existing id, recorded as target_ref both times
    assert [r["target_ref"] for r in second] == [stored[o["order_id"]]["deliveryOrderId"] for o in orders]
    assert [r["target_ref"] for r in first] == [r["target_ref"] for r in second]


def test_held_order_never_reaches_the_wms(wms):
    held = order(1, held=True, hold_reasons=[{"code": "credit_exceeded", "message": "余额不足"},
                                             {"code": "insufficient_stock", "message": "SKU-001: need 2"}])
    with writer_for(wms) as w:
        results = w.send([held, order(2)])
    assert results[0]["result"] == "held"
    assert results[0]["reason"] == "credit_exceeded,insufficient_stock"
    assert "余额不足" in results[0]["message"]
    assert list(wms.app.delivery_orders) == [order(2)["order_id"]]
    assert wms.app.create_calls_by_code[order(1)["order_id"]] == 0


@pytest.mark.parametrize("status", ["pending_payment", "awaiting_confirmation", "shipped", "cancelled", "on_hold"])
def test_orders_outside_the_sendable_statuses_are_skipped(wms, status):
    with writer_for(wms) as w:
        (r,) = w.send([order(1, status=status)])
    assert (r["result"], r["reason"]) == ("skipped", "status_not_sendable")
    assert wms.app.create_calls == 0


def test_sendable_statuses_is_a_setting(wms):
    with writer_for(wms, sendable_statuses=["allocated"]) as w:
        results = w.send([order(1, status="confirmed"), order(2, status="allocated")])
    assert [r["result"] for r in results] == ["skipped", "created"]


def test_warehouse_and_priority_arrive_as_decided(wms):
    orders = [order(1, warehouse_code="WH-GZ", priority="urgent"),
              order(2, warehouse_code="WH-SH", priority="high"),
              order(3, warehouse_code="WH-BJ", priority="normal")]
    with writer_for(wms) as w:
        w.send(orders)
    got = {o["order_id"]: wms.app.delivery_orders[o["order_id"]]["deliveryOrder"] for o in orders}
    assert [(d["warehouseCode"], d["isUrgency"], d["extendProps"]["priority"]) for d in got.values()] == [
        ("WH-GZ", "Y", "urgent"), ("WH-SH", "N", "high"), ("WH-BJ", "N", "normal")]


def test_high_priority_can_be_sent_as_urgent(wms):
    with writer_for(wms, urgent_priorities=["urgent", "high"]) as w:
        w.send([order(1, priority="high")])
    assert wms.app.delivery_orders[order(1)["order_id"]]["deliveryOrder"]["isUrgency"] == "Y"


def test_delivery_order_read_back_matches_the_canonical_order(wms):
    o = order(9, special_requirements="请用木箱包装，周末不收货", seller_memo="老客户", order_type="exchange",
              lines=[{"line_no": 1, "source_line_id": "L1", "canonical_sku": "SKU-001", "sku_name": "螺栓",
                      "qty": Decimal("3"), "unit_price": Decimal("1.50"), "is_gift": False},
                     {"line_no": 2, "source_line_id": "L2", "canonical_sku": "SKU-009", "sku_name": "扳手(赠品)",
                      "qty": Decimal("1"), "unit_price": Decimal("8"), "is_gift": True},
                     {"line_no": 3, "source_line_id": "L3", "canonical_sku": "SKU-002", "sku_name": "已退款",
                      "qty": Decimal("1"), "unit_price": Decimal("9"), "refund_status": "refunded"}])
    with writer_for(wms) as w:
        (r,) = w.send([o])
    stored = wms.app.delivery_orders[delivery_order_code(o["order_id"])]
    d = stored["deliveryOrder"]
    assert r["target_ref"] == stored["deliveryOrderId"]
    assert d["deliveryOrderCode"] == o["order_id"]
    assert d["orderType"] == "HHCK"
    assert (d["createTime"], d["payTime"]) == ("2024-05-01 10:09:00", "2024-05-01 10:14:00")
    assert d["remark"] == d["buyerMessage"] == "请用木箱包装，周末不收货"
    assert d["sellerMessage"] == "老客户"
    assert (d["totalAmount"], d["freight"], d["sourcePlatformCode"], d["shopNick"]) == ("25.00", "5.00", "TB",
                                                                                        "shop-1")
    assert d["receiverInfo"] == {"name": "张三", "zipCode": "310000", "mobile": "13812345678", "province": "浙江省",
                                 "city": "杭州市", "area": "西湖区", "detailAddress": "文三路9号"}
    assert d["senderInfo"]["name"] == "华东仓发货组"
    lines = [(x["orderLineNo"], x["itemCode"], x["planQty"], x["actualPrice"], x["ownerCode"], x["sourceOrderCode"],
              x.get("extendProps")) for x in stored["orderLines"]]
    assert lines == [("1", "SKU-001", "3", "1.50", "OWNER-1", "T1009", None),
                     ("2", "SKU-009", "1", "0.00", "OWNER-1", "T1009", {"isGift": "Y"})]


def test_xml_injection_text_in_receiver_fields_arrives_intact(wms):
    evil = ('</detailAddress></receiverInfo><orderType>QTCK</orderType><x a="1">&amp;&lt;&#x41;'
            '<![CDATA[ ]]></x><!-- --> 文三路 "1" \'号\' & <script>')
    name = '张三</name><name>李四'
    with writer_for(wms) as w:
        (r,) = w.send([order(1, receiver_address=evil, receiver_name=name, special_requirements="<remark/>&")])
    assert r["result"] == "created"
    d = wms.app.delivery_orders[order(1)["order_id"]]["deliveryOrder"]
    assert d["receiverInfo"]["detailAddress"] == evil
    assert d["receiverInfo"]["name"] == name
    assert d["remark"] == "<remark/>&"
    assert d["orderType"] == "JYCK"


def test_bad_order_fails_with_its_field_named_and_the_rest_go_on(wms):
    bad_sku = order(1, lines=[{"line_no": 1, "canonical_sku": None, "source_sku": "x", "qty": Decimal(1)}])
    bad_qty = order(2, lines=[{"line_no": 1, "canonical_sku": "SKU-001", "qty": Decimal("1.5")}])
    no_wh = order(3, warehouse_code=None)
    with writer_for(wms) as w:
        results = w.send([bad_sku, bad_qty, no_wh, order(4)])
    assert [r["result"] for r in results] == ["failed", "failed", "failed", "created"]
    assert "lines[0].canonical_sku" in results[0]["message"]
    assert "lines[0].qty" in results[1]["message"]
    assert "warehouse_code" in results[2]["message"]
    assert list(wms.app.delivery_orders) == [order(4)["order_id"]]


def test_order_with_only_refunded_lines_is_held_not_sent(wms):
    o = order(1, lines=[{"line_no": 1, "canonical_sku": "SKU-001", "qty": Decimal(1), "refund_status": "refunded"}])
    with writer_for(wms) as w:
        (r,) = w.send([o])
    assert (r["result"], r["reason"]) == ("held", "no_shippable_lines")
    assert wms.app.create_calls == 0


def test_default_warehouse_is_used_when_routing_chose_none(wms):
    with writer_for(wms, default_warehouse_code="OTHER") as w:
        w.send([order(1, warehouse_code=None)])
    assert wms.app.delivery_orders[order(1)["order_id"]]["deliveryOrder"]["warehouseCode"] == "OTHER"


def test_wms_refusing_one_order_does_not_trip_the_breaker(wms):
    # a business refusal proves the WMS is up: the next orders are still sent
    orders = [order(i, lines=[{"line_no": 1, "canonical_sku": "SKU-001", "qty": Decimal(1)}]) for i in range(5)]
    wms.app.required = {**wms.app.required, "orderLine": ["sourceOrderCode", "ownerCode", "itemCode", "planQty",
                                                          "actualPrice", "itemName"]}
    with writer_for(wms) as w:
        results = w.send(orders)
    assert [r["result"] for r in results] == ["failed"] * 5
    assert {r["reason"] for r in results} == {"bad_request"}
    assert w.breaker.state == "closed" and wms.app.calls["deliveryorder.create"] == 5


def test_outage_trips_the_breaker_and_a_rerun_after_recovery_delivers_each_order_once(wms):
    orders = [order(i) for i in range(10)]
    wms.app.outage = True
    with writer_for(wms, breaker_failure_threshold=3, retry_attempts=2) as w:
        down = w.send(orders)
    assert [r["result"] for r in down] == ["failed"] * 3 + ["held"] * 7
    assert {r["reason"] for r in down[3:]} == {"wms_unavailable"}
    assert len(wms.app.received) == 3 * 2  # K orders × attempts, then nothing: no hammering
    wms.app.outage = False
    with writer_for(wms) as w:
        up = w.send(orders)
    assert [r["result"] for r in up] == ["created"] * 10
    assert sorted(wms.app.delivery_orders) == sorted(o["order_id"] for o in orders)
    assert set(wms.app.create_calls_by_code.values()) == {1}


def test_half_open_probe_after_cooldown_lets_orders_flow_again(wms):
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, cooldown=30, clock=clock)
    wms.app.outage = True
    with writer_for(wms, retry_attempts=1, breaker=breaker) as w:
        assert [r["result"] for r in w.send([order(i) for i in range(4)])] == ["failed", "failed", "held", "held"]
        clock.now += 10  # still cooling down: not even a probe
        assert w.send([order(4)])[0]["reason"] == "wms_unavailable"
        assert len(wms.app.received) == 2
        clock.now += 25  # cool-down over; the WMS is still down: one probe, then open again
        assert [r["result"] for r in w.send([order(5), order(6)])] == ["failed", "held"]
        assert len(wms.app.received) == 3 and breaker.state == "open"
        wms.app.outage = False
        clock.now += 31  # recovered: the probe succeeds and the rest flows
        assert [r["result"] for r in w.send([order(i) for i in range(7)])] == ["created"] * 7
    assert breaker.state == "closed" and breaker.trips == 2
    assert len(wms.app.delivery_orders) == 7


def test_signature_misconfiguration_trips_the_breaker_without_retries(wms):
    with writer_for(wms, app_secret="wrong-secret", retry_attempts=4, breaker_failure_threshold=2) as w:
        results = w.send([order(i) for i in range(5)])
    assert [r["reason"] for r in results] == ["signature_invalid"] * 2 + ["wms_unavailable"] * 3
    assert len(wms.app.received) == 2


def test_results_are_recorded_in_the_hub_ledger_and_lineage(wms, tmp_path):
    from orderhub.connectors.hub.store import HubStore

    hub_url = f"sqlite:///{tmp_path / 'hub.db'}"
    orders = [order(1), order(2, held=True, hold_reasons=[{"code": "credit_exceeded", "message": "m"}]),
              order(3, status="shipped"), order(4, lines=[{"line_no": 1, "canonical_sku": None, "qty": 1}])]
    with writer_for(wms, hub_url=hub_url, run_id="run-42", hub_batch_size=2) as w:
        w.send(orders)
    hub = HubStore(hub_url)
    ledger = hub.delivered("qimen", [o["order_id"] for o in orders])
    assert {oid: row["result"] for oid, row in ledger.items()} == {
        order(1)["order_id"]: "created", order(2)["order_id"]: "held", order(4)["order_id"]: "failed"}
    row = ledger[order(1)["order_id"]]
    stored = wms.app.delivery_orders[order(1)["order_id"]]
    assert (row["target_ref"], row["run_id"]) == (stored["deliveryOrderId"], "run-42")
    assert row["payload_hash"] == hashlib.blake2b(stored["body"], digest_size=16).hexdigest()
    assert "canonical_sku" in ledger[order(4)["order_id"]]["message"]


def test_orders_in_the_hub_ledger_are_not_sent_again_even_during_an_outage(wms, tmp_path):
    from orderhub.connectors.hub.store import HubStore

    hub_url = f"sqlite:///{tmp_path / 'hub.db'}"
    orders = [order(i) for i in range(4)]
    with writer_for(wms, hub_url=hub_url) as w:
        w.send(orders[:2])
    wms.app.outage = True
    with writer_for(wms, hub_url=hub_url, retry_attempts=1, breaker_failure_threshold=1) as w:
        results = w.send(orders)
    assert [(r["result"], r["message"]) for r in results[:2]] == [("unchanged", "already delivered (hub ledger)")] * 2
    assert [r["reason"] for r in results[2:]] == ["server_error", "wms_unavailable"]
    assert len(wms.app.received) == 2 + 1  # the first run's two creates, then one failed call
    ledger = HubStore(hub_url).delivered("qimen", [o["order_id"] for o in orders[:2]])
    assert [ledger[o["order_id"]]["target_ref"] for o in orders[:2]] == [
        wms.app.delivery_orders[o["order_id"]]["deliveryOrderId"] for o in orders[:2]]


def test_delivery_order_code_is_stable_and_fits_the_field():
    assert delivery_order_code("o_3fa85f6457174562b3fc2c96") == "o_3fa85f6457174562b3fc2c96"
    assert delivery_order_code("o_1", "ACME-") == "ACME-o_1"
    odd = "taobao:店铺一:123456789012345678"
    assert delivery_order_code(odd) == delivery_order_code(odd)
    assert delivery_order_code(odd).startswith("h_") and len(delivery_order_code(odd)) <= 50
    assert delivery_order_code("x" * 60) != delivery_order_code("x" * 61)


def test_characters_xml_cannot_carry_are_dropped_not_sent_broken(wms):
    with writer_for(wms) as w:
        (r,) = w.send([order(1, receiver_address="文三路\x071号\x00", special_requirements="a\x1bb\tc")])
    assert r["result"] == "created"
    d = wms.app.delivery_orders[order(1)["order_id"]]["deliveryOrder"]
    assert (d["receiverInfo"]["detailAddress"], d["remark"]) == ("文三路1号", "ab\tc")
