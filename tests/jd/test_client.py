"""JOS signing (reference §0.2 V5/V6, §2.2), the sandbox verifier, timestamps and the error envelope (§2.5)."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import pytest

from orderhub.connectors.common.errors import (
    AuthError, BadRequestError, ConfigError, PermissionDenied, RateLimitedError, RemoteBusinessError,
    SignatureError, TransientError,
)
from orderhub.connectors.jd.client import (
    SHANGHAI, JDClient, JosSigner, jd_error, jd_string_to_sign, jd_timestamp, param_json, sign_jd,
)
from orderhub.infra.sandboxes import jd as sandbox

V5 = {"360buy_param_json": '{"end_date":null,"optional_fields":null,"order_state":"WAIT_SELLER_STOCK_OUT",'
                           '"page":"1","page_size":"200","start_date":null}',
      "access_token": "yourtoken", "app_key": "yourappkey", "method": "jingdong.pop.order.search",
      "timestamp": "2021-05-07 09:20:39.683+0800", "v": "2.0"}
V5_STRING = ("yourappSecret360buy_param_json" + V5["360buy_param_json"] + "access_tokenyourtokenapp_keyyourappkey"
             "methodjingdong.pop.order.searchtimestamp2021-05-07 09:20:39.683+0800v2.0yourappSecret")
V6 = {"v": "2.0", "method": "jingdong.innovation.product.write.createSkus", "app_key": "yourappkey",
      "access_token": "yourtoken", "360buy_param_json": '{"paramStrin":"abc"}', "timestamp": "2019-06-27 15:41:49"}
VECTORS = [("V5", V5, "D70825340F4084360B9362B60DFD7930"), ("V6", V6, "E79CD3D49918172CA907A4CB493D9361")]


def test_v5_string_to_sign_is_the_published_one():
    assert "yourappSecret" + jd_string_to_sign(V5) + "yourappSecret" == V5_STRING


@pytest.mark.parametrize("vid,params,expected", VECTORS, ids=["V5", "V6"])
def test_client_signer_reproduces_vector(vid, params, expected):
    assert sign_jd(params, "yourappSecret") == expected
    signed = JosSigner("yourappkey", "yourappSecret").sign_params(params)
    assert signed["sign"] == expected and "format" not in signed and "sign_method" not in signed


@pytest.mark.parametrize("vid,params,expected", VECTORS, ids=["V5", "V6"])
def test_sandbox_verifier_accepts_vector_and_rejects_a_changed_one(vid, params, expected):
    assert sandbox.verify_sign({**params, "sign": expected}, "yourappSecret")
    assert not sandbox.verify_sign({**params, "sign": expected}, "yourappSecreT")
    assert not sandbox.verify_sign({**params, "360buy_param_json": params["360buy_param_json"] + " ",
                                    "sign": expected}, "yourappSecret")   # the JSON is signed byte for byte


@pytest.mark.parametrize("vid,params,expected", VECTORS, ids=["V5", "V6"])
def test_sandbox_gateway_accepts_published_request_over_http(jd_sandbox, vid, params, expected):
    """Sent at the vector's own time, signature and timestamp pass and the sandbox answers 15 Invalid Method
    (V5's method is served, so it passes to the token check: 19); a changed sign gives 12."""
    when = sandbox.parse_timestamp(params["timestamp"])
    app, url = jd_sandbox(app_key="yourappkey", app_secret="yourappSecret", shops=1, orders_per_shop=0,
                          clock=lambda: when)
    ok = httpx.post(url + "/routerjson", data={**params, "sign": expected}).json()["error_response"]["code"]
    assert ok == ("19" if vid == "V5" else "15")
    bad = httpx.post(url + "/routerjson", data={**params, "sign": expected[::-1]}).json()
    assert bad["error_response"]["code"] == "12"


def test_param_json_is_sorted_and_compact():
    assert param_json({"page": "1", "end_date": None, "b": "中"}) == '{"b":"中","end_date":null,"page":"1"}'


def test_timestamp_is_the_sdk_format_in_gmt8():
    assert jd_timestamp(0.5) == "1970-01-01 08:00:00.500+0800"


@pytest.mark.parametrize("skew,accepted", [(-350, True), (350, True), (-370, False), (370, False)])
def test_gateway_allows_six_minutes_of_clock_difference(jd_sandbox, skew, accepted):
    app, url = jd_sandbox(shops=1, orders_per_shop=1)
    client = JDClient("test-app", "test-secret", api_url=url + "/routerjson", qps=500,
                      clock=lambda: time.time() + skew)
    now = datetime.now(SHANGHAI)
    call = lambda: client.orders_page(app.tokens["jdshop1"], now - timedelta(days=1), now, 1)  # noqa: E731
    if accepted:
        call()
    else:
        with pytest.raises(BadRequestError, match="clock"):
            call()
        assert app.log.count(code="8") == 1


@pytest.mark.parametrize("code,cls", [
    ("2", RateLimitedError), ("19", AuthError), ("18", AuthError), ("12", SignatureError), ("11", SignatureError),
    ("65", TransientError), ("24", PermissionDenied), ("15", BadRequestError), ("21", BadRequestError),
    ("8", BadRequestError), ("5", BadRequestError), ("999", RemoteBusinessError),
])
def test_error_envelope_maps_to_the_hierarchy(code, cls):
    exc = jd_error({"code": code, "zh_desc": "x", "en_desc": "y"}, shop="jd-flagship", ban_seconds=60)
    assert type(exc) is cls and exc.shop == "jd-flagship"
    if code == "19":
        assert "jd-flagship" in str(exc) and "Renew the access token" in str(exc)
    if code == "2":
        assert exc.retry_after == 60   # JOS does not announce the length: the configured cool-down


def test_page_size_and_window_limits_are_enforced_by_the_sandbox(jd_sandbox):
    app, url = jd_sandbox(shops=1, orders_per_shop=1)
    client = JDClient("test-app", "test-secret", api_url=url + "/routerjson", qps=500)
    tok = app.tokens["jdshop1"]
    base = {"order_state": "WAIT_SELLER_STOCK_OUT,FINISHED_L", "optional_fields": "orderId,modified", "page": "1"}
    body = client.call("jingdong.pop.order.search", {**base, "page_size": "101", "start_date": "2026-01-01 00:00:00",
                                                     "end_date": "2026-01-02 00:00:00"}, access_token=tok)
    assert body["searchorderinfo_result"]["apiResult"]["success"] is False
    body = client.call("jingdong.pop.order.search", {**base, "page_size": "10", "start_date": "2026-01-31 00:00:00",
                                                     "end_date": "2026-03-01 00:00:00"}, access_token=tok)
    assert "一个月" in body["searchorderinfo_result"]["apiResult"]["chineseErrCode"]
    with pytest.raises(ConfigError, match="1 month"):   # the client refuses to send such a window at all
        client.orders_page(tok, datetime(2026, 1, 31, tzinfo=SHANGHAI), datetime(2026, 3, 1, tzinfo=SHANGHAI), 1)
    # only WAIT_SELLER_STOCK_OUT may omit the dates (then the last month)
    body = client.call("jingdong.pop.order.search", {"order_state": "WAIT_SELLER_STOCK_OUT", "page": "1",
                                                     "page_size": "10", "optional_fields": "orderId"},
                       access_token=tok)
    assert body["searchorderinfo_result"]["apiResult"]["success"] is True


def test_busy_gateway_code_65_is_retried(jd_sandbox):
    app, url = jd_sandbox(shops=1, orders_per_shop=30, busy_rate=0.4)
    client = JDClient("test-app", "test-secret", api_url=url + "/routerjson", qps=500, attempts=8,
                      backoff_base=0.01)
    now = datetime.now(SHANGHAI)
    lo = now - timedelta(days=3)
    rows = client.fetch_window(app.tokens["jdshop1"], lo, now, page_size=10, shop="jdshop1")
    assert {r["orderId"] for r in rows} == app.orders_modified_between(lo, now, "jdshop1")
    assert app.log.count(code="65") > 0


def test_access_token_that_expires_becomes_an_auth_error_and_is_not_retried(jd_sandbox):
    app, url = jd_sandbox(shops=1, orders_per_shop=3, token_ttl_seconds=60)
    client = JDClient("test-app", "test-secret", api_url=url + "/routerjson", qps=500)
    now = datetime.now(SHANGHAI)
    client.orders_page(app.tokens["jdshop1"], now - timedelta(days=1), now, 1, shop="jdshop1")
    app.started -= 61
    with pytest.raises(AuthError, match="jdshop1"):
        client.orders_page(app.tokens["jdshop1"], now - timedelta(days=1), now, 1, shop="jdshop1")
    assert app.log.count(code="19") == 1
