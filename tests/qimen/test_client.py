"""QIMEN protocol client against the sandbox WMS: signature, method names, error classes, retries, stock."""
from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import quote, urlencode

import httpx
import pytest

from orderhub.connectors.common.errors import (
    BadRequestError,
    MalformedResponse,
    NetworkTimeout,
    RemoteBusinessError,
    ServerError,
    SignatureError,
)
from orderhub.connectors.qimen import DeliverySettings, QimenClient, build_delivery_order, sign, stock_snapshot
from orderhub.connectors.qimen.client import classify_failure, parse_response
from tests.qimen.conftest import APP_KEY, CST, CUSTOMER, SECRET, order

V11_PARAMS = {"method": "taobao.qimen.deliveryorder.create", "timestamp": "2015-04-26 00:00:07", "format": "xml",
              "app_key": "testerp_appkey", "v": "2.0", "sign_method": "md5", "customerId": "stub-cust-code"}
V11_BODY = ('<?xml version="1.0" encoding="utf-8"?><request><deliveryOrder><deliveryOrderCode>TB1234'
            '</deliveryOrderCode></deliveryOrder></request>')


def test_v11_vector():
    """reference §0.2 V11 (regression vector for our client↔sandbox pair)."""
    assert sign("test", V11_PARAMS, V11_BODY) == "BA1F56FA7AC9F186C5D0B4F50DD129DA"
    assert sign("test", V11_PARAMS, V11_BODY.encode()) == "BA1F56FA7AC9F186C5D0B4F50DD129DA"


def test_v11_request_passes_the_sandbox_signature_check(sandbox):
    srv = sandbox(app_key="testerp_appkey", app_secret="test", customer_id="stub-cust-code", check_timestamp=False)
    params = {**V11_PARAMS, "sign": "BA1F56FA7AC9F186C5D0B4F50DD129DA"}
    r = httpx.post(f"{srv.endpoint}?{urlencode(params, quote_via=quote)}",
                   content=V11_BODY.encode(), headers={"Content-Type": "application/xml;charset=UTF-8"})
    resp = parse_response(r.content)
    # the signature is accepted; the body is then refused for its missing fields, not for the sign
    assert (resp.flag, resp.code) == ("failure", "missing-parameter")
    assert "orderType" in resp.message
    params["sign"] = "0" * 32
    r = httpx.post(f"{srv.endpoint}?{urlencode(params, quote_via=quote)}",
                   content=V11_BODY.encode())
    assert parse_response(r.content).code == "sign-check-failure"


def test_sent_signature_is_md5_of_exact_bytes_received(wms, client):
    client.create_delivery_order(build_delivery_order(order(1, receiver_address="文三路 <b>&amp;</b> 1号"),
                                                      DeliverySettings(owner_code="OWNER-1")))
    got = wms.app.received[-1]
    params = "".join(k + got.query[k] for k in sorted(got.query) if k != "sign")
    expected = hashlib.md5(SECRET.encode() + params.encode() + got.body + SECRET.encode()).hexdigest().upper()
    assert got.query["sign"] == expected
    assert got.body.startswith(b'<?xml version="1.0" encoding="utf-8"?><request><deliveryOrder>')
    assert set(got.query) == {"method", "timestamp", "format", "app_key", "v", "sign_method", "customerId", "sign"}
    assert got.query["method"] == "taobao.qimen.deliveryorder.create"
    ts = datetime.strptime(got.query["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=CST)
    assert abs((datetime.now(CST) - ts).total_seconds()) < 60


@pytest.mark.parametrize("style,method", [("full", "taobao.qimen.deliveryorder.create"),
                                          ("short", "deliveryorder.create")])
def test_both_method_name_forms_are_accepted(wms, style, method):
    with QimenClient(wms.endpoint, APP_KEY, SECRET, CUSTOMER, method_style=style) as c:
        res = c.create_delivery_order(build_delivery_order(order(7), DeliverySettings(owner_code="OWNER-1")))
    assert wms.app.received[-1].query["method"] == method
    assert res.delivery_order_id == wms.app.delivery_orders[order(7)["order_id"]]["deliveryOrderId"]


def test_wrong_secret_is_a_signature_error_and_not_retried(wms):
    with QimenClient(wms.endpoint, APP_KEY, "not-the-secret", CUSTOMER, retry_attempts=4, retry_base=0.01) as c:
        with pytest.raises(SignatureError) as ei:
            c.query_inventory("WH-SH", ["SKU-001"])
    assert ei.value.retryable is False
    assert "not-the-secret" not in str(ei.value)
    assert wms.app.calls["inventory.query"] == 1


def test_stale_timestamp_is_refused(wms):
    stale = lambda: datetime.now(CST) - timedelta(minutes=30)  # noqa: E731
    with QimenClient(wms.endpoint, APP_KEY, SECRET, CUSTOMER, clock=stale, retry_base=0.01) as c:
        with pytest.raises(BadRequestError, match="timestamp"):
            c.query_inventory("WH-SH", ["SKU-001"])
    assert wms.app.calls["inventory.query"] == 1


def test_missing_required_field_is_bad_request_not_retried(wms, client):
    req = build_delivery_order(order(2), DeliverySettings(owner_code="OWNER-1"))
    req.find("deliveryOrder").remove(req.find("deliveryOrder/shopNick"))
    with pytest.raises(BadRequestError, match="shopNick"):
        client.create_delivery_order(req)
    assert wms.app.calls["deliveryorder.create"] == 1
    assert wms.app.delivery_orders == {}


def test_server_errors_are_retried_then_raised(wms, client):
    wms.app.faults.error_rate = 1.0
    with pytest.raises(ServerError):
        client.query_inventory("WH-SH", ["SKU-001"])
    assert wms.app.faults.injected["error"] == 3  # retry_attempts=3


def test_a_transient_error_then_success_is_one_delivery_order(wms, client):
    wms.app.faults.error_rate = 1.0
    calls = []

    def recover(code, stored):
        calls.append(code)

    wms.app.on_create = recover
    req = build_delivery_order(order(3), DeliverySettings(owner_code="OWNER-1"))
    with pytest.raises(ServerError):
        client.create_delivery_order(req)
    wms.app.faults.error_rate = 0.0
    assert client.create_delivery_order(req).duplicate is False
    assert client.create_delivery_order(req).duplicate is True
    assert len(wms.app.delivery_orders) == 1 and calls == [order(3)["order_id"]]


def test_truncated_answer_is_malformed_and_retried(wms, client):
    wms.app.faults.malformed_rate = 1.0
    with pytest.raises(MalformedResponse):
        client.query_inventory("WH-SH", ["SKU-001"])
    assert wms.app.faults.injected["malformed"] == 3


def test_timeout_is_a_network_timeout(wms):
    wms.app.faults.timeout_rate, wms.app.faults.timeout_seconds = 1.0, 1.0
    with QimenClient(wms.endpoint, APP_KEY, SECRET, CUSTOMER, timeout=0.3, retry_attempts=2, retry_base=0.01) as c:
        with pytest.raises(NetworkTimeout):
            c.query_inventory("WH-SH", ["SKU-001"])
    assert wms.app.faults.injected["timeout"] == 2


def test_failure_codes_map_to_the_error_hierarchy():
    def err(code, message="x"):
        xml = f"<response><flag>failure</flag><code>{code}</code><message>{message}</message></response>"
        return classify_failure(parse_response(xml.encode()), "deliveryorder.create")

    assert isinstance(err("sign-check-failure", "Illegal request"), SignatureError)
    assert isinstance(err("missing-parameter"), BadRequestError)
    assert isinstance(err("isv.invalid-parameter:orderType"), BadRequestError)
    assert isinstance(err("isp.service-unavailable"), ServerError) and err("isp.x").retryable
    business = err("40099", "库存不足 call 13812345678")
    assert isinstance(business, RemoteBusinessError) and business.remote_code == "40099"
    assert "13812345678" not in str(business)  # phones in WMS messages are masked
    gw = parse_response(b"<error_response><code>25</code><msg>Invalid signature</msg></error_response>")
    assert isinstance(classify_failure(gw, "x"), SignatureError)


def test_duplicate_answered_as_failure_is_still_recognised(sandbox):
    srv = sandbox(duplicate_style="failure")
    app = srv.app
    with QimenClient(srv.endpoint, APP_KEY, SECRET, CUSTOMER) as c:
        req = build_delivery_order(order(4), DeliverySettings(owner_code="OWNER-1"))
        first, again = c.create_delivery_order(req), c.create_delivery_order(req)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert first.delivery_order_id == again.delivery_order_id
    assert app.create_calls == 2 and len(app.delivery_orders) == 1


def test_query_inventory_sums_batches_and_reports_unknown_skus_as_zero(wms, client):
    wms.app.set_stock("WH-SH", "SKU-001", 100, lock_quantity=7)
    wms.app.set_stock("WH-SH", "SKU-001", 3, inventory_type="CC")  # defective stock is not available
    wms.app.set_stock("WH-GZ", "SKU-001", 40)
    wms.app.set_stock("WH-SH", "SKU-002", "12.5")
    assert client.query_inventory("WH-SH", ["SKU-001", "SKU-002", "SKU-404"]) == {
        "SKU-001": Decimal(100), "SKU-002": Decimal("12.5"), "SKU-404": Decimal(0)}
    sent = ET.fromstring(wms.app.received[-1].body)
    assert [c.findtext("itemCode") for c in sent.iter("criteria")] == ["SKU-001", "SKU-002", "SKU-404"]


def test_stock_snapshot_has_the_rules_shape(wms, client):
    wms.app.set_stock("WH-SH", "SKU-001", 100)
    wms.app.set_stock("WH-GZ", "SKU-002", 5)
    snap = stock_snapshot(client, ["WH-SH", "WH-GZ"], ["SKU-001", "SKU-002"])
    assert snap == {("WH-SH", "SKU-001"): Decimal(100), ("WH-SH", "SKU-002"): Decimal(0),
                    ("WH-GZ", "SKU-001"): Decimal(0), ("WH-GZ", "SKU-002"): Decimal(5)}
    assert all(isinstance(v, Decimal) for v in snap.values())


def test_inventory_query_is_chunked(wms):
    wms.app.set_stock("WH-SH", "SKU-7", 1)
    with QimenClient(wms.endpoint, APP_KEY, SECRET, CUSTOMER) as c:
        got = c.query_inventory("WH-SH", [f"SKU-{i}" for i in range(12)], batch_size=5)
    assert wms.app.calls["inventory.query"] == 3
    assert got["SKU-7"] == 1 and sum(got.values()) == 1


def test_query_delivery_order_reads_back_what_the_wms_stored(wms, client):
    req = build_delivery_order(order(5), DeliverySettings(owner_code="OWNER-1"))
    created = client.create_delivery_order(req)
    got = client.query_delivery_order(order(5)["order_id"])
    assert got["deliveryOrderId"] == created.delivery_order_id and got["status"] == "NEW"
    assert got["orderLines"] == [{"itemCode": "SKU-001", "planQty": "2", "actualQty": "0"}]
    assert client.query_delivery_order("o_unknown") is None
