"""Doudian ``sign`` (reference §4.2): regression vectors V9 (hmac-sha256) and V10 (md5) through the client's
signer and through the sandbox gateway's verifier, which re-canonicalises ``param_json`` like the platform."""
from __future__ import annotations

import json

import httpx

from orderhub.connectors.douyin.client import DouyinClient, doudian_sign, param_json, sign_pattern

APP_KEY, SECRET, METHOD, TS = "1234567890123456789", "test-secret", "order.searchList", "1700001900"
PARAMS = {"order_by": "update_time", "page": 0, "size": 100, "update_time_end": 1700001800,
          "update_time_start": 1700000000}
PJSON = ('{"order_by":"update_time","page":0,"size":100,"update_time_end":1700001800,'
         '"update_time_start":1700000000}')
V9 = "7f20a8e93b24cdafca9e43ddb8a072c06fea26e186599c5cbbaf0e43c04cba3d"
V10 = "641569149a0c228cab775f069b14c320"


def test_param_json_is_sorted_compact_and_keeps_chinese():
    assert param_json(dict(reversed(list(PARAMS.items())))) == PJSON
    assert param_json({"b": [{"z": 1, "a": "收货<地址>&"}], "a": None}) == '{"a":null,"b":[{"a":"收货<地址>&","z":1}]}'
    assert param_json({}) == param_json(None) == "{}"


def test_regression_vector_v9_hmac_sha256():
    assert sign_pattern(APP_KEY, SECRET, METHOD, PJSON, TS) == (
        f"test-secretapp_key{APP_KEY}methodorder.searchListparam_json{PJSON}timestamp1700001900v2test-secret")
    assert doudian_sign(APP_KEY, SECRET, METHOD, PJSON, TS) == V9


def test_regression_vector_v10_md5():
    assert doudian_sign(APP_KEY, SECRET, METHOD, PJSON, TS, sign_method="md5") == V10


def test_client_query_carries_the_v9_sign_and_keeps_the_token_out_of_it():
    c = DouyinClient(APP_KEY, SECRET)
    q = c.signed_query(METHOD, param_json(PARAMS), access_token="tok-1", timestamp=1700001900)
    c.close()
    assert q["sign"] == V9 and q["sign_method"] == "hmac-sha256" and q["v"] == "2"
    assert q["access_token"] == "tok-1"  # sent, but not part of the signed pattern


def _post(url, sign, body, **extra):
    q = {"app_key": APP_KEY, "method": METHOD, "timestamp": TS, "v": "2", "sign": sign, **extra}
    return httpx.post(f"{url}/order/searchList", params=q, content=body.encode(),
                      headers={"Content-Type": "application/json"}).json()


def test_sandbox_verifier_accepts_v9_and_v10_and_re_canonicalises_the_body(sandbox):
    gw = sandbox(app_key=APP_KEY, app_secret=SECRET, timestamp_tolerance=10**10)
    ok = _post(gw.url, V9, PJSON, sign_method="hmac-sha256")
    assert ok["code"] == 40001 and ok["sub_code"] == "isv.access-token-missing"  # signature passed
    spaced = json.dumps(dict(reversed(list(PARAMS.items()))), indent=2)  # same JSON, other key order/spacing
    assert _post(gw.url, V9, spaced, sign_method="hmac-sha256")["sub_code"] == "isv.access-token-missing"
    assert _post(gw.url, V10, PJSON)["sub_code"] == "isv.access-token-missing"  # no sign_method → md5
    bad = _post(gw.url, V9[:-1] + "0", PJSON, sign_method="hmac-sha256")
    assert (bad["code"], bad["sub_code"]) == (40003, "isv.signature-invalid")
    assert _post(gw.url, V10, PJSON, sign_method="hmac-sha256")["sub_code"] == "isv.signature-invalid"


def test_sandbox_refuses_stale_timestamps_and_a_method_that_does_not_match_the_path(sandbox):
    gw = sandbox(app_key=APP_KEY, app_secret=SECRET)
    stale = _post(gw.url, V9, PJSON, sign_method="hmac-sha256")
    assert (stale["code"], stale["sub_code"]) == (40003, "isv.timestamp-invalid")
    wrong = httpx.post(f"{gw.url}/order/orderDetail", params={"app_key": APP_KEY, "method": METHOD}).json()
    assert wrong["sub_code"] == "isv.parameter-format-invalid"
