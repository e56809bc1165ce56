"""The TOP sandbox answers like the gateway: newest first, has_next paging, the default type filter, partial list
data, and its ground-truth helpers agree with what it serves."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from orderhub.connectors.common.errors import RemoteBusinessError
from orderhub.connectors.taobao.client import ALL_TRADE_TYPES, SHANGHAI, TaobaoClient, default_fields, top_time
from orderhub.infra.sandboxes.taobao import make_app


def _client(url):
    return TaobaoClient("test-app", "test-secret", api_url=url + "/router/rest", qps=500)


def _args(lo, hi, **kw):
    return {"fields": default_fields(), "start_modified": top_time(lo), "end_modified": top_time(hi), **kw}


def test_list_is_newest_first_and_has_next_pages_to_the_end(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=35, history_hours=20)
    c, s = _client(url), app.sessions["shop1"]
    hi = datetime.now(SHANGHAI)
    lo = hi - timedelta(hours=23)
    rows, page = [], 1
    while True:
        body = c.call("taobao.trades.sold.increment.get", _args(lo, hi, type=",".join(ALL_TRADE_TYPES), page_no=page,
                                                                 page_size=10, use_has_next="true"), session=s)
        assert "total_results" not in body
        rows += body["trades"].get("trade", [])
        if not body["has_next"]:
            break
        page += 1
    assert [r["modified"] for r in rows] == sorted((r["modified"] for r in rows), reverse=True)
    assert {r["tid_str"] for r in rows} == app.orders_modified_between(lo, hi, "shop1") == app.all_tids("shop1")


def test_without_type_only_the_five_default_types_are_listed(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=60, history_hours=20)
    c, s = _client(url), app.sessions["shop1"]
    hi = datetime.now(SHANGHAI)
    lo = hi - timedelta(hours=23)
    body = c.call("taobao.trades.sold.increment.get", _args(lo, hi, page_size=100), session=s)
    listed = {t["type"] for t in body["trades"]["trade"]}
    assert listed <= {"guarantee_trade", "auto_delivery", "ec", "cod", "step"}
    assert body["total_results"] < 60


def test_list_omits_buyer_message_which_fullinfo_returns(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=20, buyer_message_rate=1.0)
    c, s = _client(url), app.sessions["shop1"]
    hi = datetime.now(SHANGHAI)
    lo = hi - timedelta(hours=23)
    listed = c.trades_increment_page(s, lo, hi, 1, shop="shop1")[0]
    assert listed and all("buyer_message" not in t and t["has_buyer_message"] for t in listed)
    full = c.trade_fullinfo(s, listed[0]["tid_str"], "tid,buyer_message,orders")
    assert full["buyer_message"] == app.trade(listed[0]["tid_str"])["buyer_message"]
    assert full["orders"]["order"]


def test_a_shop_cannot_read_another_shops_trade(top_sandbox):
    app, url = top_sandbox(shops=2, orders_per_shop=2)
    c = _client(url)
    other = next(iter(app.all_tids("shop2")))
    with pytest.raises(RemoteBusinessError, match="isv.trade-not-exist"):
        c.trade_fullinfo(app.sessions["shop1"], other, "tid")


def test_seeded_shops_are_deterministic():
    a = make_app(seed=9, shops=2, orders_per_shop=10, base_time=1_790_000_000)
    b = make_app(seed=9, shops=2, orders_per_shop=10, base_time=1_790_000_000)
    assert a.versions() == b.versions() and a.trade(min(a.all_tids())) == b.trade(min(b.all_tids()))
