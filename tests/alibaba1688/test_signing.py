"""1688 ``_aop_signature`` (reference §3.2): the official vector V7 as a hard assertion, V8 as a regression
vector — both through the client's signer and through the sandbox gateway's verifier."""
from __future__ import annotations

import hashlib
import hmac

import httpx

from orderhub.connectors.alibaba1688.client import Alibaba1688Client, aop_signature, format_aop_time, parse_aop_time

V7_PATH, V7_SECRET, V7_SIGN = "param2/1/system/currentTime/1000000", "test123", "33E54F4F7B989E3E0E912D3FBD2F1A03CA7CCE88"
V8_PATH = "param2/1/com.alibaba.trade/alibaba.trade.getSellerOrderList/1000000"
V8_PARAMS = {"access_token": "test-token", "modifyStartTime": "20240101000000000+0800",
             "modifyEndTime": "20240101003000000+0800", "page": "1", "pageSize": "20",
             "needBuyerAddressAndPhone": "true"}
V8_SIGN = "532BC6EBC16C97972CB1A61858113D03B5228567"


def test_official_vector_v7_signs_exactly():
    assert aop_signature(V7_PATH, {"b": "2", "a": "1"}, V7_SECRET) == V7_SIGN


def test_regression_vector_v8_signs_exactly():
    assert aop_signature(V8_PATH, V8_PARAMS, V7_SECRET) == V8_SIGN


def test_signature_sorts_joined_key_values_not_keys():
    # "a"+"b1" = "ab1" sorts after "ab"+"0" = "ab0": sorting by key would put "a" first.
    assert aop_signature("p", {"a": "b1", "ab": "0"}, "s") == aop_signature("p", {"ab": "0", "a": "b1"}, "s")
    expected = hmac.new(b"s", b"pab0ab1", hashlib.sha1).hexdigest().upper()
    assert aop_signature("p", {"a": "b1", "ab": "0"}, "s") == expected


def test_client_builds_the_v8_form_from_typed_params():
    c = Alibaba1688Client("1000000", V7_SECRET, send_timestamp=False)
    form = c.signed_params("com.alibaba.trade", "alibaba.trade.getSellerOrderList", {
        "modifyStartTime": parse_aop_time("20240101000000000+0800"),
        "modifyEndTime": parse_aop_time("20240101003000000+0800"), "page": 1, "pageSize": 20,
        "needBuyerAddressAndPhone": True}, access_token="test-token")
    c.close()
    assert form["_aop_signature"] == V8_SIGN
    assert form["modifyEndTime"] == "20240101003000000+0800"


def test_date_format_round_trips_with_millis():
    assert format_aop_time(parse_aop_time("20180721172608123+0800")) == "20180721172608123+0800"


def _post(url, path, form):
    return httpx.post(f"{url}/openapi/{path}", data=form)


def test_sandbox_verifier_accepts_v7_and_refuses_one_changed_character(sandbox):
    gw = sandbox(app_key="1000000", app_secret=V7_SECRET)
    ok = _post(gw.url, V7_PATH, {"b": "2", "a": "1", "_aop_signature": V7_SIGN})
    # signature accepted: the gateway moves on and asks for a user token
    assert ok.status_code == 401 and ok.json()["error_message"] == "Request need user authenticated"
    bad = _post(gw.url, V7_PATH, {"b": "2", "a": "1", "_aop_signature": V7_SIGN[:-1] + "9"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "gw.SignatureInvalid"
    missing = _post(gw.url, V7_PATH, {"b": "2", "a": "1"})
    assert missing.json()["error_code"] == "gw.SignatureMissing"


def test_sandbox_verifier_accepts_v8(sandbox):
    gw = sandbox(app_key="1000000", app_secret=V7_SECRET)
    resp = _post(gw.url, V8_PATH, {**V8_PARAMS, "_aop_signature": V8_SIGN})
    assert resp.status_code == 401  # signature fine; "test-token" is not a sandbox token
    tampered = _post(gw.url, V8_PATH, {**V8_PARAMS, "page": "2", "_aop_signature": V8_SIGN})
    assert tampered.json()["error_code"] == "gw.SignatureInvalid"


def test_sandbox_refuses_app_key_outside_the_path_and_stale_timestamps(gw, client):
    resp = httpx.post(f"{gw.url}/openapi/param2/1/com.alibaba.trade/alibaba.trade.getSellerOrderList",
                      data={"_aop_signature": "x"})
    assert resp.json()["error_code"] == "gw.AppKeyMissing"
    form = client.signed_params("com.alibaba.trade", "alibaba.trade.getSellerOrderList", {"page": 1},
                                access_token=gw.app.token_of("b2b-seller-1"), timestamp_ms=1_000_000_000_000)
    stale = httpx.post(f"{gw.url}/openapi/{client.url_path('com.alibaba.trade', 'alibaba.trade.getSellerOrderList')}",
                       data=form)
    assert stale.status_code == 400 and stale.json()["error_code"] == "gw.TimestampInvalid"
