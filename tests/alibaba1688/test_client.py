"""The 1688 client against the sandbox gateway: error envelopes → the common hierarchy (reference §3.5),
retries of transient faults, bans waited out without being extended, paging that survives mid-sync changes,
detail calls for orders listed without lines."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from orderhub.connectors.alibaba1688.client import (
    TRADE_NS,
    Alibaba1688Client,
    order_id_of,
)
from orderhub.connectors.common.errors import (
    AuthError,
    BadRequestError,
    PermissionDenied,
    RateLimitedError,
    RemoteBusinessError,
    SignatureError,
)

SHOP = "b2b-seller-1"


def window(app, hours=80):
    end = datetime.fromtimestamp(app.base_time, timezone.utc)
    return end - timedelta(hours=hours), end


def test_expired_token_is_an_auth_error_naming_the_shop_and_what_to_renew(gw, client):
    gw.app.expire_token(SHOP)
    start, end = window(gw.app)
    with pytest.raises(AuthError) as info:
        client.seller_order_page(gw.app.token_of(SHOP), start, end, 1, shop=SHOP)
    msg = str(info.value)
    assert info.value.shop == SHOP and not info.value.retryable
    assert f"shop {SHOP}" in msg and "access_token" in msg and "Request need user authenticated" in msg
    assert gw.app.token_of(SHOP) not in msg  # the token itself never shows
    assert client.calls == 1  # not retried


def test_wrong_secret_is_a_signature_error(gw):
    c = Alibaba1688Client(gw.app.app_key, "not-the-secret", base_url=gw.url, qps=1000)
    with pytest.raises(SignatureError, match="gw.SignatureInvalid"):
        c.seller_order_page(gw.app.token_of(SHOP), *window(gw.app), 1, shop=SHOP)
    assert "not-the-secret" not in str(SignatureError)
    c.close()


def test_api_not_subscribed_is_permission_denied(gw, client):
    with pytest.raises(PermissionDenied, match="gw.APIACLDecline"):
        client.call("com.alibaba.logistics", "alibaba.logistics.something", {}, access_token=gw.app.token_of(SHOP))


def test_business_failure_keeps_the_remote_code(gw, client):
    with pytest.raises(RemoteBusinessError) as info:  # bypass the client's own page-size check
        client.call(TRADE_NS, "alibaba.trade.getSellerOrderList", {"page": 1, "pageSize": 21},
                    access_token=gw.app.token_of(SHOP), shop=SHOP)
    assert info.value.remote_code == "InvalidParameter" and "20" in str(info.value)
    with pytest.raises(BadRequestError):
        client.seller_order_page(gw.app.token_of(SHOP), *window(gw.app), 1, page_size=21)


def test_window_longer_than_the_limit_is_refused(sandbox):
    gw = sandbox(max_window_days=1)
    c = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000)
    with pytest.raises(RemoteBusinessError, match="must not span more than 1 days"):
        c.seller_order_page(gw.app.token_of(SHOP), *window(gw.app, hours=25), 1, shop=SHOP)
    c.close()


def test_server_errors_and_truncated_bodies_are_retried_until_the_answer_is_complete(sandbox):
    gw = sandbox(error_rate=0.3, malformed_rate=0.2, fault_seed=11)
    c = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, retry_base=0.01,
                          retry_cap=0.02, max_attempts=10)
    orders = c.orders_modified_between(gw.app.token_of(SHOP), *window(gw.app), shop=SHOP)
    c.close()
    assert {order_id_of(o) for o in orders} == gw.app.order_ids(SHOP)
    assert gw.app.faults.injected["error"] > 0 and gw.app.faults.injected["malformed"] > 0


def test_sandbox_extends_the_ban_for_a_client_that_keeps_calling(sandbox):
    gw = sandbox(qps_limit=1, ban_seconds=1)
    polite = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, max_attempts=1)
    rude = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, max_attempts=1)
    tok = gw.app.token_of(SHOP)
    polite.seller_order_page(tok, *window(gw.app), 1, shop=SHOP)
    with pytest.raises(RateLimitedError) as first:
        polite.seller_order_page(tok, *window(gw.app), 1, shop=SHOP)
    assert first.value.retry_after == 1 and first.value.retryable
    with pytest.raises(RateLimitedError):  # a client that ignores the ban calls again at once
        rude.seller_order_page(tok, *window(gw.app), 1, shop=SHOP)
    assert gw.app.calls_during_ban == 1
    assert gw.app.limiter.ban_until - time.monotonic() > 0.9  # pushed out again by the rude call
    polite.close(), rude.close()


def test_ban_longer_than_max_ban_wait_is_raised_at_once(sandbox):
    gw = sandbox(qps_limit=1, ban_seconds=30)
    c = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, max_ban_wait=5)
    tok = gw.app.token_of(SHOP)
    c.seller_order_page(tok, *window(gw.app), 1, shop=SHOP)
    t0 = time.monotonic()
    with pytest.raises(RateLimitedError) as info:
        c.seller_order_page(tok, *window(gw.app), 1, shop=SHOP)
    assert info.value.retry_after == 30 and time.monotonic() - t0 < 1
    c.close()


def _forward_pages(c, tok, start, end, size):
    out, page = [], 1
    while True:
        items, total = c.seller_order_page(tok, start, end, page, size, shop=SHOP)
        out += items
        if page * size >= total:
            return out
        page += 1


def _churning(sandbox):
    """A sandbox where every list call after the first moves two orders on (they leave the window)."""
    def churn(app, shop, n):
        if n > 1:
            app.advance(2, shop)

    gw = sandbox(orders_per_shop=90, list_max_lines=10)
    gw.app.on_list_call = churn
    start, end = window(gw.app)
    c = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000)
    return gw.app, c, start, end


def _stayed(app, end):
    """Orders still in the window after the sync: the ones the sync must have returned."""
    return {oid for oid in app.order_ids(SHOP) if app.orders[oid]["modified"] <= end.timestamp() * 1000}


def test_paging_misses_nothing_while_read_orders_change_mid_sync(sandbox):
    """Orders modified mid-sync leave the window and the rest move forward. Forward paging loses orders that
    way (checked first, so the scenario is known to bite); the client's backward paging must not."""
    app, c, start, end = _churning(sandbox)
    naive = {order_id_of(o) for o in _forward_pages(c, app.token_of(SHOP), start, end, 20)}
    assert not _stayed(app, end) <= naive
    app, c2, start, end = _churning(sandbox)
    got = c2.orders_modified_between(app.token_of(SHOP), start, end, shop=SHOP, page_size=20)
    ids = [order_id_of(o) for o in got]
    assert _stayed(app, end) <= set(ids) and len(ids) == len(set(ids))
    c.close(), c2.close()


def test_orders_listed_without_lines_are_completed_by_a_detail_call(sandbox):
    gw = sandbox(list_max_lines=2)
    c = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000)
    got = c.orders_modified_between(gw.app.token_of(SHOP), *window(gw.app), shop=SHOP)
    c.close()
    long_orders = {oid for oid in gw.app.order_ids(SHOP) if len(gw.app.orders[oid]["lines"]) > 2}
    assert long_orders, "the seed must contain orders with more than two lines"
    assert sum(1 for call in gw.app.calls if call["api"] == "alibaba.trade.get.sellerView") == len(long_orders)
    for o in got:
        truth = gw.app.trade_info(order_id_of(o))
        assert [i["subItemIDString"] for i in o["productItems"]] == [i["subItemIDString"] for i in truth["productItems"]]


def test_an_order_whose_detail_call_fails_is_kept_without_lines_and_the_window_goes_on(sandbox, caplog):
    gw = sandbox(orders_per_shop=30, list_max_lines=2)
    long_ids = sorted(oid for oid in gw.app.order_ids(SHOP) if len(gw.app.orders[oid]["lines"]) > 2)
    gone = long_ids[0]

    def vanish(app, shop, n):  # the order disappears after it was listed, before its detail call
        if n == 3:
            app.orders.pop(gone)

    gw.app.on_list_call = vanish
    c = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000)
    got = {order_id_of(o): o for o in c.orders_modified_between(gw.app.token_of(SHOP), *window(gw.app), shop=SHOP)}
    c.close()
    assert len(got) == 30 and "productItems" not in got[gone]
    assert all(got[oid]["productItems"] for oid in long_ids[1:])
    assert f"order {gone}" in caplog.text and "ORDER_NOT_EXIST" in caplog.text


def test_sandbox_shops_are_deterministic_for_a_seed():
    from orderhub.infra.sandboxes.alibaba1688 import make_app

    a, b = make_app(seed=9, base_time=1_700_000_000), make_app(seed=9, base_time=1_700_000_000)
    assert a.versions() == b.versions() and len(a.orders) == 120
    assert all(a.trade_info(oid) == b.trade_info(oid) for oid in a.orders)
    assert make_app(seed=10, base_time=1_700_000_000).versions() != a.versions()
