"""tap-alibaba1688 against the 1688 sandbox: exact full and incremental syncs, orders arriving mid-sync, bans,
an expired shop token that fails only that shop, privacy fields kept, secrets kept out of output."""
from __future__ import annotations

import logging
import time

from orderhub.connectors.alibaba1688.client import parse_aop_time
from orderhub.connectors.alibaba1688.tap import TapAlibaba1688
from tests.alibaba1688.harness import run_tap, tap_config


def versions(run):
    """{(shop, order id): modifyTime} of what a run emitted (a duplicate would be lost here: checked apart)."""
    return {(r["_shop"], r["_order_id"]): r["baseInfo"]["modifyTime"] for r in run.records}


def truth(app, ids=None):
    return {(o["shop"], oid): v for oid, v in app.versions().items() for o in [app.orders[oid]]
            if ids is None or oid in ids}


def test_full_sync_returns_exactly_the_seeded_orders(gw):
    run = run_tap(TapAlibaba1688, tap_config(gw.app, gw.server))
    assert run.error is None
    assert len(run.records) == len(gw.app.orders) == 120
    assert versions(run) == truth(gw.app)
    for rec in run.records:  # lines nested, complete, and as the platform has them
        want = gw.app.trade_info(rec["_order_id"])
        assert rec["productItems"] == want["productItems"]
        assert rec["_modified_at"] == parse_aop_time(rec["baseInfo"]["modifyTime"]).isoformat(timespec="milliseconds")
    bm = run.bookmarks()
    assert set(bm) == set(gw.app.shops) and all(p["replication_key"] == "_modified_at" for p in bm.values())


def test_receiver_fields_stay_masked_and_the_privacy_ids_are_kept(gw):
    run = run_tap(TapAlibaba1688, tap_config(gw.app, gw.server, shops=["b2b-seller-1"]))
    rec = run.records[0]
    real = gw.app.orders[rec["_order_id"]]["receiver"]
    assert rec["baseInfo"]["receiverInfo"]["toMobile"] == real["mobile"][:3] + "****" + real["mobile"][-4:]
    assert real["mobile"] not in str(run.messages) and real["address"] not in str(run.messages)
    assert rec["nativeLogistics"]["caid"].startswith("caid-") and rec["baseInfo"]["ccid"].startswith("ccid-")


def test_incremental_after_changes_returns_exactly_the_changed_orders(gw):
    cfg = tap_config(gw.app, gw.server)
    first = run_tap(TapAlibaba1688, cfg)
    assert len(first.records) == 120
    changed = set(gw.app.advance(6)) | set(gw.app.add_orders("b2b-seller-2", 3))
    time.sleep(0.02)  # let the 10 ms lag pass: a run reads up to now - lag_seconds
    second = run_tap(TapAlibaba1688, cfg, state=first.state)
    assert second.error is None
    assert versions(second) == truth(gw.app, changed) and len(second.records) == 9
    third = run_tap(TapAlibaba1688, cfg, state=second.state)  # nothing changed: the overlap emits nothing
    assert third.records == [] and third.error is None


def test_orders_arriving_during_a_sync_come_with_the_next_run_without_loss_or_duplicates(gw):
    """While run 1 pages, every list call creates a new order and moves two others on (some already read,
    some not yet). Run 2 must bring exactly what run 1 did not have in its final version."""
    def churn(app, shop, n):
        app.add_orders(shop, 1)
        app.advance(2, shop)

    cfg = tap_config(gw.app, gw.server, page_size=10)
    seeded = truth(gw.app)
    gw.app.on_list_call = churn
    first = run_tap(TapAlibaba1688, cfg)
    gw.app.on_list_call = None
    time.sleep(0.02)
    assert first.error is None
    assert set(versions(first)) <= set(seeded)  # nothing created after the run began is in run 1
    second = run_tap(TapAlibaba1688, cfg, state=first.state)
    emitted = first.records + second.records
    keys = [(r["_shop"], r["_order_id"], r["baseInfo"]["modifyTime"]) for r in emitted]
    assert len(keys) == len(set(keys)), "an order version was emitted twice"
    final = truth(gw.app)
    assert {**versions(first), **versions(second)} == final  # every order, in its latest version
    assert len(final) > len(seeded)
    assert set(versions(second)) == {k for k, v in final.items() if versions(first).get(k) != v}


def test_ban_is_waited_out_and_the_sandbox_sees_no_call_during_it(sandbox):
    gw = sandbox(qps_limit=4, ban_seconds=1, orders_per_shop=30, list_max_lines=10)
    run = run_tap(TapAlibaba1688, tap_config(gw.app, gw.server))
    assert run.error is None and versions(run) == truth(gw.app)
    assert len(gw.app.limiter.bans) == 1 and gw.app.calls_during_ban == 0
    assert run.seconds >= 2.0


def test_expired_token_fails_that_shop_clearly_while_the_other_shops_go_on(sandbox, caplog):
    gw = sandbox(shops="b2b-seller-1,b2b-seller-2,b2b-seller-3", orders_per_shop=20)
    gw.app.expire_token("b2b-seller-2")
    cfg = tap_config(gw.app, gw.server)
    with caplog.at_level(logging.ERROR):
        run = run_tap(TapAlibaba1688, cfg)
    ok = {k: v for k, v in truth(gw.app).items() if k[0] != "b2b-seller-2"}
    assert versions(run) == ok and len(run.records) == 40
    assert run.error is not None and run.error.code == "shops_failed" and not run.error.retryable
    msg = str(run.error)
    assert "1 of 3 shops failed" in msg and "shop b2b-seller-2" in msg and "access_token" in msg
    assert "Renew the authorization of shop b2b-seller-2" in msg
    assert "b2b-seller-2" in caplog.text and "other shops go on" in caplog.text
    bookmarked = {s for s, p in run.bookmarks().items() if "replication_key_value" in p}
    assert bookmarked == {"b2b-seller-1", "b2b-seller-3"}  # no bookmark for the failed shop
    for secret in [cfg["app_secret"]] + [s["access_token"] for s in cfg["shops"]]:
        assert secret not in msg and secret not in caplog.text and secret not in str(run.messages)
    # after renewing, the failed shop catches up from its start date; the others have nothing new
    gw.app.tokens[gw.app.token_of("b2b-seller-2")] = ("b2b-seller-2", time.time() + 3600)
    again = run_tap(TapAlibaba1688, cfg, state=run.state)
    assert again.error is None
    assert versions(again) == {k: v for k, v in truth(gw.app).items() if k[0] == "b2b-seller-2"}


def test_small_windows_and_pages_give_the_same_orders(gw):
    run = run_tap(TapAlibaba1688, tap_config(gw.app, gw.server, window_minutes=180, page_size=7))
    assert run.error is None and versions(run) == truth(gw.app) and len(run.records) == 120


def test_token_expiring_mid_shop_keeps_the_windows_already_read_and_the_next_run_resumes_without_duplicates(sandbox):
    gw = sandbox(shops="b2b-seller-1", orders_per_shop=60, list_max_lines=10)

    def expire_later(app, shop, n):
        if n == 4:
            app.expire_token(shop)

    gw.app.on_list_call = expire_later
    cfg = tap_config(gw.app, gw.server, window_minutes=600)
    first = run_tap(TapAlibaba1688, cfg)
    gw.app.on_list_call = None
    assert first.error is not None and first.error.code == "shops_failed"
    assert 0 < len(first.records) < 60  # the windows read before the token expired
    mark = first.bookmarks()["b2b-seller-1"]["replication_key_value"]
    assert all(r["_modified_at"] <= mark for r in first.records)
    gw.app.tokens[gw.app.token_of("b2b-seller-1")] = ("b2b-seller-1", time.time() + 3600)  # renewed
    second = run_tap(TapAlibaba1688, cfg, state=first.state)
    assert second.error is None
    keys = [(r["_order_id"], r["_modified_at"]) for r in first.records + second.records]
    assert len(keys) == len(set(keys)) and {**versions(first), **versions(second)} == truth(gw.app)
