"""TOP error envelopes → the orderhub error hierarchy (reference §1.5), and what the client does with each:
retry transient faults, wait announced bans exactly, never retry request-side errors."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from orderhub.connectors.common.errors import (
    AuthError, BadRequestError, PermissionDenied, RateLimitedError,
    RemoteBusinessError, ServerError, SignatureError, TransientError,
)
from orderhub.connectors.taobao.client import SHANGHAI, TaobaoClient, top_error


def env(code, msg="", sub_code=None, sub_msg=None):
    e = {"code": code, "msg": msg, "request_id": "r1"}
    if sub_code:
        e["sub_code"] = sub_code
    if sub_msg:
        e["sub_msg"] = sub_msg
    return e


def test_code_7_ban_message_gives_retry_after_seconds():
    exc = top_error(env(7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
                        "This ban will last for 31062 more seconds"), shop="s1")
    assert isinstance(exc, RateLimitedError) and exc.retryable
    assert exc.retry_after == 31062


@pytest.mark.parametrize("err,cls", [
    (env(8, "App Call Exceeds Limited Frequency"), TransientError),
    (env(10, "Service Currently Unavailable"), TransientError),
    (env(15, "Remote service error", "isp.remote-service-timeout"), TransientError),
    (env(50, "Remote service error", "isp.unknown-error"), TransientError),
    (env(25, "Invalid Signature"), SignatureError),
    (env(24, "Missing Signature"), SignatureError),
    (env(26, "Missing Session"), AuthError),
    (env(27, "Invalid session", "invalid-sessionkey", "非法或过期的SessionKey参数"), AuthError),
    (env(27, "Invalid session", "session-expired"), AuthError),
    (env(15, "Remote service error", "session-expired"), AuthError),
    (env(11, "Insufficient ISV Permissions"), PermissionDenied),
    (env(15, "Remote service error", "isv.permission-api-package-limit"), PermissionDenied),
    (env(22, "Invalid Method"), BadRequestError),
    (env(29, "Invalid App Key"), BadRequestError),
    (env(31, "Invalid Timestamp"), BadRequestError),
    (env(40, "Missing Required Arguments"), BadRequestError),
    (env(41, "Invalid Arguments", "isv.invalid-parameter"), BadRequestError),
    (env(43, "Parameter Error"), BadRequestError),
    (env(15, "Remote service error", "isv.trade-not-exist"), RemoteBusinessError),
], ids=lambda v: str(v.get("code")) + "-" + str(v.get("sub_code", "")) if isinstance(v, dict) else v.__name__)
def test_error_envelope_maps_to_the_hierarchy(err, cls):
    exc = top_error(err, shop="s1", api="taobao.trades.sold.increment.get")
    assert type(exc) is cls
    assert exc.retryable == issubclass(cls, TransientError)
    assert exc.shop == "s1" and exc.system == "taobao"


def test_auth_error_names_the_shop_and_says_to_renew_the_session_key():
    exc = top_error(env(27, "Invalid session", "session-expired"), shop="flagship-store")
    assert "flagship-store" in str(exc) and "Renew the session key" in str(exc)


def _window():
    now = datetime.now(SHANGHAI)
    return now - timedelta(hours=23), now


@pytest.mark.parametrize("fault", [
    {"error_rate": 0.35}, {"malformed_rate": 0.35}, {"isp_error_rate": 0.35},
], ids=["http-503", "truncated-json", "isp-remote-timeout"])
def test_transient_faults_are_retried_and_the_window_is_still_complete(top_sandbox, fault):
    app, url = top_sandbox(shops=1, orders_per_shop=60, fault_seed=3, **fault)
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=500, attempts=8,
                          backoff_base=0.01)
    lo, hi = _window()
    trades = client.fetch_window(app.sessions["shop1"], lo, hi, page_size=10, shop="shop1")
    assert sorted(t["tid_str"] for t in trades) == sorted(app.orders_modified_between(lo, hi, "shop1"))
    failures = sum(app.faults.injected.values()) + app.log.count(code=15)
    assert failures > 0


def test_timeout_is_retried_as_network_timeout(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=10, timeout_rate=0.5, timeout_seconds=0.4, fault_seed=1)
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=500, attempts=8,
                          timeout=0.2, backoff_base=0.01)
    lo, hi = _window()
    trades = client.fetch_window(app.sessions["shop1"], lo, hi, shop="shop1", fetch_buyer_message=False)
    assert len(trades) == len(app.orders_modified_between(lo, hi, "shop1"))
    assert app.faults.injected["timeout"] > 0


def test_exhausted_retries_surface_the_last_transient_error(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=1, error_rate=1.0)
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=500, attempts=3,
                          backoff_base=0.01)
    lo, hi = _window()
    with pytest.raises(ServerError):
        client.trades_increment_page(app.sessions["shop1"], lo, hi, 1)
    assert app.faults.injected["error"] == 3


def test_sandbox_rejects_page_size_and_window_limits_with_code_41(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=1)
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=500)
    now = datetime.now(SHANGHAI)
    base = {"fields": "tid,modified", "page_no": 1}
    tm = lambda d: d.strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    with pytest.raises(BadRequestError, match="page_size"):
        client.call("taobao.trades.sold.increment.get", {**base, "start_modified": tm(now - timedelta(hours=1)),
                    "end_modified": tm(now), "page_size": 101}, session=app.sessions["shop1"])
    with pytest.raises(BadRequestError, match="one day"):
        client.call("taobao.trades.sold.increment.get", {**base,
                    "start_modified": tm(now - timedelta(days=1, seconds=1)),
                    "end_modified": tm(now), "page_size": 10}, session=app.sessions["shop1"])
    with pytest.raises(BadRequestError, match="three months"):
        client.call("taobao.trades.sold.increment.get", {**base, "start_modified": tm(now - timedelta(days=95)),
                    "end_modified": tm(now - timedelta(days=94, hours=12)), "page_size": 10},
                    session=app.sessions["shop1"])
    assert app.log.count(code=41) == 3


def test_long_ban_is_raised_at_once_and_the_app_stops_calling(top_sandbox):
    """A daily-quota ban (hours) is longer than max_ban_wait: raise at once, and make no call until it ends."""
    app, url = top_sandbox(shops=1, orders_per_shop=1, daily_quota=1)
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=500, max_ban_wait=60)
    lo, hi = _window()
    client.trades_increment_page(app.sessions["shop1"], lo, hi, 1)
    t0 = time.monotonic()
    with pytest.raises(RateLimitedError) as ei:
        client.trades_increment_page(app.sessions["shop1"], lo, hi, 1)
    assert ei.value.retry_after > 60 and time.monotonic() - t0 < 1
    calls = len(app.log.entries)
    with pytest.raises(RateLimitedError, match="not calling"):
        client.trades_increment_page(app.sessions["shop1"], lo, hi, 1)
    assert len(app.log.entries) == calls


def test_secrets_never_appear_in_error_text(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=1, expired_shops="shop1")
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=500)
    lo, hi = _window()
    with pytest.raises(AuthError) as ei:
        client.trades_increment_page(app.sessions["shop1"], lo, hi, 1, shop="shop1")
    text = str(ei.value) + repr(ei.value.args)
    assert "test-secret" not in text and app.sessions["shop1"] not in text


def test_session_key_that_expires_mid_run_becomes_an_auth_error_and_is_not_retried(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=3, session_ttl_seconds=60)
    client = TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=500)
    lo, hi = _window()
    client.trades_increment_page(app.sessions["shop1"], lo, hi, 1, shop="shop1")
    app.started -= 61                                   # the session's 60 s are over
    with pytest.raises(AuthError, match="session-expired"):
        client.trades_increment_page(app.sessions["shop1"], lo, hi, 1, shop="shop1")
    assert app.log.count(code=27) == 1
