"""TOP signing (reference §0.2 vectors, §1.2): the client's signer and the sandbox's verifier agree with the
platform's published vectors; every sign method works end to end; timestamps are GMT+8 within ±10 minutes."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import httpx
import pytest

from orderhub.connectors.common.errors import BadRequestError, SignatureError
from orderhub.connectors.taobao.client import (
    SHANGHAI, TaobaoClient, TopSigner, sign_top, top_string_to_sign, top_time,
)
from orderhub.infra.sandboxes import taobao as sandbox

V1_PARAMS = {"method": "taobao.item.seller.get", "app_key": "12345678", "session": "test",
             "timestamp": "2016-01-01 12:00:00", "format": "json", "v": "2.0", "sign_method": "md5",
             "fields": "num_iid,title,nick,price,num", "num_iid": "11223344"}
V1_STRING = ("helloworldapp_key12345678fieldsnum_iid,title,nick,price,numformatjsonmethodtaobao.item.seller.get"
             "num_iid11223344sessiontestsign_methodmd5timestamp2016-01-01 12:00:00v2.0helloworld")
V2_PARAMS = {"method": "taobao.user.seller.get", "timestamp": "2013-05-06 13:52:03", "format": "xml",
             "app_key": "test", "v": "2.0", "fields": "nick", "sign_method": "md5", "session": "test"}
VECTORS = [  # (id, params, secret, sign_method, expected)
    ("V1", V1_PARAMS, "helloworld", "md5", "66987CB115214E59E6EC978214934FB8"),
    ("V2", V2_PARAMS, "test", "md5", "72CB4D809B375A54502C09360D879C64"),
    ("V3", {**V1_PARAMS, "sign_method": "hmac"}, "helloworld", "hmac", "D56D7858309C31B6251083A874D48273"),
    ("V4", {**V1_PARAMS, "sign_method": "hmac-sha256"}, "helloworld", "hmac-sha256",
     "04DB15AD0774D5CFCE2C837DE43E3FCEA9011ED74F3038FB6AB5F3C4CEA119E8"),
]


def test_v1_string_to_sign_is_the_published_one():
    assert "helloworld" + top_string_to_sign(V1_PARAMS) + "helloworld" == V1_STRING


@pytest.mark.parametrize("vid,params,secret,method,expected", VECTORS, ids=[v[0] for v in VECTORS])
def test_client_signer_reproduces_vector(vid, params, secret, method, expected):
    assert sign_top(params, secret, method) == expected
    assert TopSigner(params["app_key"], secret, method).sign_params(params)["sign"] == expected


@pytest.mark.parametrize("vid,params,secret,method,expected", VECTORS, ids=[v[0] for v in VECTORS])
def test_sandbox_verifier_accepts_vector_and_rejects_a_changed_one(vid, params, secret, method, expected):
    assert sandbox.verify_sign({**params, "sign": expected}, secret)
    assert not sandbox.verify_sign({**params, "sign": expected}, secret + "x")
    assert not sandbox.verify_sign({**params, "num_iid": "1", "sign": expected}, secret)
    assert not sandbox.verify_sign({**params, "sign": expected.lower()}, secret)  # TOP signs are uppercase hex


@pytest.mark.parametrize("vid,params,secret,expected", [(v[0], v[1], v[2], v[4]) for v in VECTORS[:2]],
                         ids=["V1", "V2"])
def test_sandbox_gateway_accepts_published_request_over_http(top_sandbox, vid, params, secret, expected):
    """The vector's own request, sent to the sandbox gateway at the vector's own time: the signature and the
    timestamp pass (the answer is 22 Invalid Method: the sandbox serves only order APIs); one changed byte
    in the sign gives 25 Invalid Signature."""
    when = datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).timestamp()
    app, url = top_sandbox(app_key=params["app_key"], app_secret=secret, shops=1, orders_per_shop=0,
                           clock=lambda: when)
    ok = httpx.post(url + "/router/rest", data={**params, "sign": expected}).json()
    assert ok["error_response"]["code"] == 22
    bad = httpx.post(url + "/router/rest", data={**params, "sign": "0" + expected[1:]}).json()
    assert bad["error_response"]["code"] == 25


@pytest.mark.parametrize("method", ["md5", "hmac", "hmac-sha256"])
def test_every_sign_method_is_accepted_by_the_gateway(top_sandbox, method):
    app, url = top_sandbox(shops=1, orders_per_shop=5)
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", sign_method=method, qps=100)
    now = datetime.now(SHANGHAI)
    trades, total = client.trades_increment_page(app.sessions["shop1"], now - _day(), now, 1, shop="shop1")
    assert total == len(app.orders_modified_between(now - _day(), now, "shop1"))
    assert app.log.count(code=0) == 1


def test_wrong_secret_is_a_signature_error_naming_what_to_check(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=1)
    client = TaobaoClient("test-app", "not-the-secret", api_url=url + "/router/rest", qps=100)
    now = datetime.now(SHANGHAI)
    with pytest.raises(SignatureError, match="app_secret"):
        client.trades_increment_page(app.sessions["shop1"], now - _day(), now, 1)
    assert app.log.count(code=25) == 1  # not retried


def test_timestamp_is_gmt8_text():
    assert top_time(0) == "1970-01-01 08:00:00"
    assert top_time(datetime(2024, 1, 1, 0, 0, tzinfo=timezone.utc)) == "2024-01-01 08:00:00"


@pytest.mark.parametrize("skew,accepted", [(-590, True), (590, True), (-610, False), (610, False)])
def test_gateway_allows_ten_minutes_of_clock_difference(top_sandbox, skew, accepted):
    app, url = top_sandbox(shops=1, orders_per_shop=1)
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=100,
                          clock=lambda: time.time() + skew)
    now = datetime.now(SHANGHAI)
    call = lambda: client.trades_increment_page(app.sessions["shop1"], now - _day(), now, 1)  # noqa: E731
    if accepted:
        call()
    else:
        with pytest.raises(BadRequestError, match="clock"):
            call()
        assert app.log.count(code=31) == 1


def _day():
    from datetime import timedelta

    return timedelta(hours=23)
