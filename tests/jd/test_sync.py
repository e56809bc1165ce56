"""tap-jd against the JOS sandbox: exact full and incremental syncs, mid-sync arrivals, bans, expired tokens."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from orderhub.connectors.common.errors import AuthError
from orderhub.connectors.jd.client import SHANGHAI
from orderhub.connectors.jd.tap import TapJD
from tests.jd.conftest import jd_config
from tests.taobao.conftest import after_this_second
from tests.taobao.tap_runner import run_tap


def versions(run) -> list[tuple[str, str]]:
    return [(r["orderId"], r["modified"]) for r in run.records]


def test_full_sync_returns_exactly_the_seeded_orders(jd_sandbox):
    app, url = jd_sandbox(shops=3, orders_per_shop=45)
    run = run_tap(TapJD, jd_config(app, url))
    assert run.error is None
    assert sorted(run.ids("orderId")) == sorted(app.all_ids())
    for shop in app.shops:
        assert {r["orderId"] for r in run.records if r["_shop"] == shop} == app.all_ids(shop)
    for r in run.records:
        truth = app.book.orders[r["orderId"]]
        assert r["orderState"] == truth["orderState"] and r["modified"] == truth["modified"]
        assert [i["skuId"] for i in r["itemInfoList"]] == [i["skuId"] for i in truth["itemInfoList"]]
        assert "*" in r["consigneeInfo"]["mobile"] and "encrypt_mobile" not in r["consigneeInfo"]


def test_ensearch_keeps_the_consignee_ciphertexts(jd_sandbox):
    app, url = jd_sandbox(shops=1, orders_per_shop=10)
    run = run_tap(TapJD, jd_config(app, url, order_api="jingdong.pop.order.enSearch"))
    assert run.error is None and len(run.records) == 10
    for r in run.records:
        c = r["consigneeInfo"]
        assert c["encrypt_mobile"] == app.book.orders[r["orderId"]]["consigneeInfo"]["_encrypt"]["encrypt_mobile"]
        assert "*" in c["mobile"]


def test_incremental_run_after_status_changes_returns_exactly_the_changed_orders(jd_sandbox):
    app, url = jd_sandbox(shops=2, orders_per_shop=40)
    cfg = jd_config(app, url)
    first = run_tap(TapJD, cfg)
    assert first.error is None and len(first.records) == 80
    changed = app.change_statuses(12)
    after_this_second()
    second = run_tap(TapJD, cfg, state=first.state)
    assert second.error is None
    assert sorted(second.ids("orderId")) == sorted(changed)
    assert run_tap(TapJD, cfg, state=second.state).records == []


def test_orders_created_during_a_sync_arrive_in_the_next_run_without_loss_or_duplicates(jd_sandbox):
    app, url = jd_sandbox(shops=2, orders_per_shop=60, new_order_every_calls=2, status_change_every_calls=5)
    cfg = jd_config(app, url, page_size=10)
    first = run_tap(TapJD, cfg)
    assert first.error is None
    created = set(app.created_during_run)
    assert len(created) >= 5
    app.new_order_every_calls = app.status_change_every_calls = 0
    after_this_second()
    second = run_tap(TapJD, cfg, state=first.state)
    emitted = versions(first) + versions(second)
    assert not [v for v, n in Counter(emitted).items() if n > 1]
    latest: dict[str, str] = {}
    for oid, modified in emitted:
        latest[oid] = max(latest.get(oid, ""), modified)
    assert set(latest.items()) == app.versions()
    assert created <= set(latest)


def test_ban_is_waited_out_without_a_single_call_during_it(jd_sandbox):
    """JOS does not say how long "App Call Limited" lasts; with rate_limit_cooldown ≥ the real ban the tap
    makes no call until it is over, and reads everything."""
    app, url = jd_sandbox(shops=2, orders_per_shop=25, history_hours=20, qps_limit=4, ban_seconds=1)
    cfg = jd_config(app, url, qps=6, page_size=10, rate_limit_cooldown=1,
                    start_date=(datetime.now(SHANGHAI) - timedelta(hours=22)).isoformat())
    run = run_tap(TapJD, cfg)
    assert run.error is None
    assert sorted(run.ids("orderId")) == sorted(app.all_ids())
    assert len(app.limiter.bans) >= 1 and app.limiter.calls_during_ban == 0
    for start, end in app.limiter.bans:
        assert end - start == 1
        assert not [e for e in app.log.entries if start < e[0] < end]


def test_expired_token_fails_that_shop_with_a_clear_message_while_the_others_arrive(jd_sandbox):
    app, url = jd_sandbox(shops=3, orders_per_shop=20, expired_shops="jdshop3")
    run = run_tap(TapJD, jd_config(app, url))
    assert sorted(run.ids("orderId")) == sorted(app.all_ids("jdshop1") | app.all_ids("jdshop2"))
    assert isinstance(run.error, AuthError)
    assert "jdshop3" in str(run.error) and "Renew the access token" in str(run.error)
    assert (run.bookmark("orders", "jdshop3") or {}).get("replication_key_value") is None
    assert app.tokens["jdshop3"] not in run.stdout + run.stderr + str(run.error)
