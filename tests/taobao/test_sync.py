"""tap-taobao against the TOP sandbox: exact full and incremental syncs, orders arriving mid-sync, bans waited
out without being extended, an expired session that fails only its own shop."""
from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta

import pytest

from orderhub.connectors.common.errors import AuthError, ConfigError
from orderhub.connectors.taobao.client import SHANGHAI
from orderhub.connectors.taobao.tap import TapTaobao
from tests.taobao.conftest import after_this_second, tap_config
from tests.taobao.tap_runner import run_tap


def versions(run) -> list[tuple[str, str]]:
    return [(r["tid_str"], r["modified"]) for r in run.records]


def test_full_sync_returns_exactly_the_seeded_orders(top_sandbox):
    app, url = top_sandbox(shops=3, orders_per_shop=45, buyer_message_rate=0.3)
    run = run_tap(TapTaobao, tap_config(app, url))
    assert run.error is None
    assert sorted(run.ids("tid_str")) == sorted(app.all_tids())          # every order, each once
    for shop in app.shops:
        assert {r["tid_str"] for r in run.records if r["_shop"] == shop} == app.all_tids(shop)
        assert run.bookmark("trades", shop)["replication_key_value"]
    by_id = {r["tid_str"]: r for r in run.records}
    for tid in app.all_tids():
        truth = app.trade(tid)
        rec = by_id[tid]
        assert rec["status"] == truth["status"] and rec["modified"] == truth["modified"]
        assert [ln["oid_str"] for ln in rec["orders"]["order"]] == [ln["oid_str"] for ln in truth["orders"]["order"]]
        assert rec.get("buyer_message") == truth.get("buyer_message")   # filled by trade.fullinfo.get
        assert "*" in rec["receiver_mobile"] and rec["oaid"] == truth["oaid"]
    # types outside TOP's default five (fixed, tmall_i18n) are there because the tap asks for every type
    assert {"fixed", "tmall_i18n"} <= {r["type"] for r in run.records}
    assert app.log.count("taobao.trade.fullinfo.get") == sum(1 for r in run.records if r["has_buyer_message"])


def test_incremental_run_after_status_changes_returns_exactly_the_changed_orders(top_sandbox):
    app, url = top_sandbox(shops=2, orders_per_shop=40)
    cfg = tap_config(app, url)
    first = run_tap(TapTaobao, cfg)
    assert first.error is None and len(first.records) == 80
    changed = app.change_statuses(12)
    after_this_second()
    second = run_tap(TapTaobao, cfg, state=first.state)
    assert second.error is None
    assert sorted(second.ids("tid_str")) == sorted(changed)
    for r in second.records:
        assert r["status"] == app.trade(r["tid_str"])["status"]
    third = run_tap(TapTaobao, cfg, state=second.state)
    assert third.records == []


def test_orders_created_during_a_sync_arrive_in_the_next_run_without_loss_or_duplicates(top_sandbox):
    app, url = top_sandbox(shops=2, orders_per_shop=60, new_order_every_calls=3)
    cfg = tap_config(app, url, page_size=10)
    first = run_tap(TapTaobao, cfg)
    assert first.error is None
    created = set(app.created_during_run)
    assert len(created) >= 5
    app.new_order_every_calls = 0
    after_this_second()
    second = run_tap(TapTaobao, cfg, state=first.state)
    assert second.error is None
    emitted = versions(first) + versions(second)
    assert not [v for v, n in Counter(emitted).items() if n > 1]               # no duplicates
    assert set(emitted) == app.versions()                                        # no loss
    assert created - set(first.ids("tid_str")) <= set(second.ids("tid_str"))


def test_status_changes_while_paging_lose_no_order(top_sandbox):
    """Orders change (leave their window) while the tap pages through it: paging backwards loses none."""
    app, url = top_sandbox(shops=1, orders_per_shop=120, status_change_every_calls=2, history_hours=20)
    cfg = tap_config(app, url, page_size=10, parallel_windows=1)
    first = run_tap(TapTaobao, cfg)
    assert first.error is None
    app.status_change_every_calls = 0
    after_this_second()
    second = run_tap(TapTaobao, cfg, state=first.state)
    latest: dict[str, str] = {}
    for tid, modified in versions(first) + versions(second):
        latest[tid] = max(latest.get(tid, ""), modified)
    assert set(latest.items()) == app.versions()


def test_ban_is_waited_out_without_a_single_call_during_it(top_sandbox):
    """The tap calls faster (6/s) than the app may (4/s): the sandbox bans it for 1 s; the tap makes no call
    until the ban is over (so it is never extended), slows down, and still reads every order."""
    app, url = top_sandbox(shops=2, orders_per_shop=25, history_hours=20, qps_limit=4, ban_seconds=1)
    cfg = tap_config(app, url, qps=6, page_size=10, parallel_windows=1, fetch_buyer_message=False,
                     start_date=(datetime.now(SHANGHAI) - timedelta(hours=22)).isoformat())
    run = run_tap(TapTaobao, cfg)
    assert run.error is None
    assert sorted(run.ids("tid_str")) == sorted(app.all_tids())
    assert len(app.limiter.bans) >= 1
    assert app.limiter.calls_during_ban == 0
    for start, end in app.limiter.bans:
        assert end - start == 1                                              # no ban was extended
        assert not [e for e in app.log.entries if start < e[0] < end]        # no call arrived during a ban


def test_expired_session_fails_that_shop_with_a_clear_message_while_the_others_arrive(top_sandbox):
    app, url = top_sandbox(shops=3, orders_per_shop=30, expired_shops="shop2")
    run = run_tap(TapTaobao, tap_config(app, url))
    assert sorted(run.ids("tid_str")) == sorted(app.all_tids("shop1") | app.all_tids("shop3"))
    assert isinstance(run.error, AuthError)
    msg = str(run.error)
    assert "shop2" in msg and "Renew the session key" in msg and "shop1" not in msg.split("—")[0]
    assert run.bookmark("trades", "shop1") and run.bookmark("trades", "shop3")
    assert (run.bookmark("trades", "shop2") or {}).get("replication_key_value") is None
    assert app.sessions["shop2"] not in run.stdout + run.stderr + msg
    assert "test-secret" not in run.stdout + run.stderr + msg


def test_renewed_session_catches_up_from_its_own_bookmark(top_sandbox):
    app, url = top_sandbox(shops=2, orders_per_shop=30, expired_shops="shop2")
    cfg = tap_config(app, url)
    first = run_tap(TapTaobao, cfg)
    app.expired.clear()
    second = run_tap(TapTaobao, cfg, state=first.state)
    assert second.error is None
    assert sorted(second.ids("tid_str")) == sorted(app.all_tids("shop2"))


@pytest.mark.parametrize("over,key", [
    ({"window_minutes": 1441}, "window_minutes"),
    ({"shops": [{"shop_id": "a", "session": "x1234"}, {"shop_id": "a", "session": "y1234"}]}, "shops[1].shop_id"),
])
def test_bad_config_is_refused_naming_the_key(top_sandbox, over, key):
    app, url = top_sandbox(shops=1, orders_per_shop=1)
    run = run_tap(TapTaobao, tap_config(app, url, **over))
    assert isinstance(run.error, ConfigError) and run.error.key == key


def test_start_date_older_than_three_months_is_clamped(top_sandbox):
    app, url = top_sandbox(shops=1, orders_per_shop=5)
    run = run_tap(TapTaobao, tap_config(app, url, start_date="2020-01-01T00:00:00+08:00", window_minutes=1440,
                                        parallel_windows=4))
    assert run.error is None and len(run.records) == 5
    assert app.log.count(code=41) == 0
    assert math.isclose(app.log.count("taobao.trades.sold.increment.get"), 90, abs_tol=1)


def test_delayed_arrivals_do_not_bunch_into_a_ban_when_qps_is_the_platform_limit(top_sandbox):
    """The tap's qps is exactly the sandbox's limit and half of the calls are held up 0.3 s before the
    gateway stamps them (as an OS or network stall would): the app's gate never lets more than qps calls be in
    flight or answered within a second, so no second at the gateway ever holds more than qps calls."""
    app, url = top_sandbox(shops=1, orders_per_shop=60, history_hours=11, qps_limit=8, ban_seconds=1,
                           slow_rate=0.5, slow_seconds=0.3, fault_seed=4)
    cfg = tap_config(app, url, qps=8, page_size=100, parallel_windows=6, fetch_buyer_message=False,
                     window_minutes=45, start_date=(datetime.now(SHANGHAI) - timedelta(hours=12)).isoformat())
    run = run_tap(TapTaobao, cfg)
    assert run.error is None
    assert sorted(run.ids("tid_str")) == sorted(app.all_tids())
    assert app.faults.injected["slow"] > 0
    assert app.limiter.bans == [] and app.limiter.calls_during_ban == 0
