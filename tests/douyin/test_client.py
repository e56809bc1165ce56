"""The Douyin client against the sandbox gateway: error codes → the common hierarchy (reference §4.5),
retries, bans, paging that survives mid-sync changes, detail calls for orders listed without sku orders."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from orderhub.connectors.common.errors import (
    AuthError,
    BadRequestError,
    PermissionDenied,
    RateLimitedError,
    SignatureError,
)
from orderhub.connectors.douyin.client import DouyinClient

SHOP = "4463798"


def window(app, hours=80):
    end = datetime.fromtimestamp(app.base_time, timezone.utc)
    return end - timedelta(hours=hours), end


def test_expired_token_is_an_auth_error_naming_the_shop_and_what_to_renew(gw, client):
    gw.app.expire_token(SHOP)
    with pytest.raises(AuthError) as info:
        client.order_page(gw.app.token_of(SHOP), *window(gw.app, 24), 0, shop=SHOP)
    msg = str(info.value)
    assert info.value.shop == SHOP and not info.value.retryable and client.calls == 1
    assert "40003 isv.access-token-expired" in msg and f"Renew the authorization of shop {SHOP}" in msg
    assert gw.app.token_of(SHOP) not in msg


def test_unknown_token_is_an_auth_error_too(gw, client):
    with pytest.raises(AuthError, match="isv.access-token-no-existed"):
        client.order_page("no-such-token", *window(gw.app, 24), 0, shop=SHOP)


def test_wrong_secret_is_a_signature_error(gw):
    c = DouyinClient(gw.app.app_key, "wrong-secret", base_url=gw.url, qps=1000)
    with pytest.raises(SignatureError, match="isv.signature-invalid"):
        c.order_page(gw.app.token_of(SHOP), *window(gw.app, 24), 0, shop=SHOP)
    c.close()


def test_md5_signing_is_accepted_as_well(gw):
    c = DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, sign_method="md5", qps=1000)
    orders, total = c.order_page(gw.app.token_of(SHOP), *window(gw.app), 0, 100, shop=SHOP)
    c.close()
    assert total == 60 and len(orders) == 60


def test_parameter_errors_are_bad_requests_and_not_retried(gw, client):
    with pytest.raises(BadRequestError, match="40004"):  # bypass the client's own size check
        client.call("order.searchList", {"page": 0, "size": 101}, access_token=gw.app.token_of(SHOP))
    with pytest.raises(BadRequestError):
        client.order_page(gw.app.token_of(SHOP), *window(gw.app), 0, size=101)
    assert client.calls == 1


def test_window_longer_than_the_limit_is_refused(sandbox):
    gw = sandbox(max_window_days=1)
    c = DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000)
    with pytest.raises(BadRequestError, match="跨度不能超过 1 天"):
        c.order_page(gw.app.token_of(SHOP), *window(gw.app, hours=25), 0, shop=SHOP)
    c.close()


def test_api_without_permission_is_permission_denied(gw, client):
    with pytest.raises(PermissionDenied, match="30001"):
        client.call("order.batchDecrypt", {"cipher_infos": []}, access_token=gw.app.token_of(SHOP))


def test_server_errors_and_truncated_bodies_are_retried_until_the_answer_is_complete(sandbox):
    gw = sandbox(error_rate=0.3, malformed_rate=0.2, fault_seed=5)
    c = DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, retry_base=0.01,
                     retry_cap=0.02, max_attempts=10)
    got = c.orders_updated_between(gw.app.token_of(SHOP), *window(gw.app), shop=SHOP, page_size=20)
    c.close()
    assert {o["order_id"] for o in got} == gw.app.order_ids(SHOP)
    assert gw.app.faults.injected["error"] > 0 and gw.app.faults.injected["malformed"] > 0


def test_rate_limit_announces_the_ban_and_a_rude_client_extends_it(sandbox):
    gw = sandbox(qps_limit=1, ban_seconds=1)
    polite = DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, max_attempts=1)
    rude = DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, max_attempts=1)
    tok = gw.app.token_of(SHOP)
    polite.order_page(tok, *window(gw.app, 24), 0, shop=SHOP)
    with pytest.raises(RateLimitedError) as info:
        polite.order_page(tok, *window(gw.app, 24), 0, shop=SHOP)
    assert info.value.retry_after == 1 and "60000" in str(info.value)
    with pytest.raises(RateLimitedError):
        rude.order_page(tok, *window(gw.app, 24), 0, shop=SHOP)
    assert gw.app.calls_during_ban == 1 and gw.app.limiter.ban_until - time.monotonic() > 0.9
    polite.close(), rude.close()


def test_ban_longer_than_max_ban_wait_is_raised_at_once(sandbox):
    gw = sandbox(qps_limit=1, ban_seconds=30)
    c = DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, max_ban_wait=5)
    c.order_page(gw.app.token_of(SHOP), *window(gw.app, 24), 0, shop=SHOP)
    t0 = time.monotonic()
    with pytest.raises(RateLimitedError) as info:
        c.order_page(gw.app.token_of(SHOP), *window(gw.app, 24), 0, shop=SHOP)
    assert info.value.retry_after == 30 and time.monotonic() - t0 < 1
    c.close()


def _churning(sandbox):
    def churn(app, shop, n):
        if n > 1:
            app.advance(3, shop)

    gw = sandbox(orders_per_shop=200, list_max_lines=10)
    gw.app.on_list_call = churn
    start, end = window(gw.app)
    end -= timedelta(seconds=1)  # whole seconds: a window ending "now" would still take this second's changes
    return gw.app, DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000), start, end


def _stayed(app, end):
    return {oid for oid in app.order_ids(SHOP) if app.orders[oid]["updated"] <= int(end.timestamp())}


def test_paging_misses_nothing_while_read_orders_change_mid_sync(sandbox):
    """Orders that change mid-sync leave the window and the rest move forward: forward paging (checked first,
    so the scenario is known to bite) loses orders; the client's backward paging does not."""
    app, c, start, end = _churning(sandbox)
    naive, page = set(), 0
    while True:
        items, total = c.order_page(app.token_of(SHOP), start, end, page, 20, shop=SHOP)
        naive |= {o["order_id"] for o in items}
        page += 1
        if page * 20 >= total:
            break
    assert not _stayed(app, end) <= naive
    app, c2, start, end = _churning(sandbox)
    got = [o["order_id"] for o in c2.orders_updated_between(app.token_of(SHOP), start, end, shop=SHOP, page_size=20)]
    assert _stayed(app, end) <= set(got) and len(got) == len(set(got))
    c.close(), c2.close()


def test_orders_listed_without_sku_orders_are_completed_by_a_detail_call(sandbox):
    gw = sandbox(list_max_lines=2)
    c = DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000)
    got = c.orders_updated_between(gw.app.token_of(SHOP), *window(gw.app), shop=SHOP)
    c.close()
    long_orders = {oid for oid in gw.app.order_ids(SHOP) if len(gw.app.orders[oid]["lines"]) > 2}
    assert long_orders
    assert sum(1 for call in gw.app.calls if call["method"] == "order.orderDetail") == len(long_orders)
    for o in got:
        assert o["sku_order_list"] == gw.app.shop_order(o["order_id"])["sku_order_list"]


def test_calls_that_time_out_are_retried(sandbox):
    gw = sandbox(timeout_rate=0.5, timeout_seconds=0.3, fault_seed=3)
    c = DouyinClient(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, timeout=0.1, retry_base=0.01,
                     retry_cap=0.02, max_attempts=10)
    orders, total = c.order_page(gw.app.token_of(SHOP), *window(gw.app), 0, 100, shop=SHOP)
    c.close()
    assert total == 60 and len(orders) == 60
    assert gw.app.faults.injected["timeout"] >= 1 and c.calls == gw.app.faults.injected["timeout"] + 1


def test_sandbox_shops_are_deterministic_for_a_seed():
    from orderhub.infra.sandboxes.douyin import make_app

    a, b = make_app(seed=9, base_time=1_700_000_000), make_app(seed=9, base_time=1_700_000_000)
    assert a.versions() == b.versions() and len(a.orders) == 120
    assert all(a.shop_order(oid) == b.shop_order(oid) for oid in a.orders)
    assert make_app(seed=10, base_time=1_700_000_000).versions() != a.versions()
