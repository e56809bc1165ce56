"""tap-douyin against the Doudian sandbox: exact full and incremental syncs, late-indexed changes found by the
overlap, orders arriving mid-sync, bans, an expired shop token that fails only that shop, the CLI."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

from orderhub.connectors.douyin.tap import TapDouyin
from tests.alibaba1688.harness import run_tap, tap_config


def versions(run):
    return {(r["_shop"], r["order_id"]): r["update_time"] for r in run.records}


def truth(app, ids=None):
    return {(app.orders[oid]["shop"], oid): v for oid, v in app.versions().items() if ids is None or oid in ids}


def settle(app, lag):
    """Doudian times are whole seconds: wait until every sandbox update is older than the tap's lag."""
    latest = max(o["updated"] for o in app.orders.values())
    delay = latest + lag + 0.01 - time.time()
    if delay > 0:
        time.sleep(delay)


def test_full_sync_returns_exactly_the_seeded_orders(gw):
    run = run_tap(TapDouyin, tap_config(gw.app, gw.server))
    assert run.error is None and len(run.records) == 120
    assert versions(run) == truth(gw.app)
    for rec in run.records:
        assert rec["sku_order_list"] == gw.app.shop_order(rec["order_id"])["sku_order_list"]
        assert rec["mask_post_tel"].count("*") == 4 and rec["encrypt_post_tel"].startswith("#")
        assert rec["post_tel"] == ""  # no plaintext
    assert {p["replication_key"] for p in run.bookmarks().values()} == {"update_time"}


def test_incremental_after_changes_returns_exactly_the_changed_orders(gw):
    cfg = tap_config(gw.app, gw.server, lag_seconds=1)
    first = run_tap(TapDouyin, cfg)
    assert len(first.records) == 120
    changed = set(gw.app.advance(6)) | set(gw.app.add_orders("5520131", 3))
    settle(gw.app, 1)
    second = run_tap(TapDouyin, cfg, state=first.state)
    assert second.error is None and versions(second) == truth(gw.app, changed) and len(second.records) == 9
    third = run_tap(TapDouyin, cfg, state=second.state)
    assert third.records == []


def test_a_change_indexed_late_is_found_by_the_overlap(gw):
    """The platform stamps a change with a time before our bookmark (its index was late): the next run starts
    lookback_seconds before the bookmark and still finds it, and emits nothing else."""
    cfg = tap_config(gw.app, gw.server, lag_seconds=1, lookback_seconds=30)
    first = run_tap(TapDouyin, cfg)
    real = gw.app.clock
    gw.app.clock = lambda: real() - 10  # the sandbox stamps changes 10 s in the past
    changed = gw.app.advance(2)
    gw.app.clock = real
    assert all(gw.app.orders[o]["updated"] < first.bookmarks()["4463798"]["replication_key_value"] for o in changed)
    second = run_tap(TapDouyin, cfg, state=first.state)
    assert versions(second) == truth(gw.app, set(changed))


def test_orders_arriving_during_a_sync_come_with_the_next_run_without_loss_or_duplicates(gw):
    def churn(app, shop, n):
        app.add_orders(shop, 1)
        app.advance(2, shop)

    cfg = tap_config(gw.app, gw.server, page_size=10, lag_seconds=1)
    seeded = truth(gw.app)
    gw.app.on_list_call = churn
    first = run_tap(TapDouyin, cfg)
    gw.app.on_list_call = None
    assert first.error is None and set(versions(first)) <= set(seeded)
    settle(gw.app, 1)
    second = run_tap(TapDouyin, cfg, state=first.state)
    keys = [(r["_shop"], r["order_id"], r["update_time"]) for r in first.records + second.records]
    assert len(keys) == len(set(keys)), "an order version was emitted twice"
    final = truth(gw.app)
    assert len(final) > len(seeded)
    assert {**versions(first), **versions(second)} == final
    assert set(versions(second)) == {k for k, v in final.items() if versions(first).get(k) != v}


def test_ban_is_waited_out_and_the_sandbox_sees_no_call_during_it(sandbox):
    gw = sandbox(qps_limit=4, ban_seconds=1, orders_per_shop=150, list_max_lines=10)
    run = run_tap(TapDouyin, tap_config(gw.app, gw.server))
    assert run.error is None and versions(run) == truth(gw.app)
    assert len(gw.app.limiter.bans) == 1 and gw.app.calls_during_ban == 0
    assert run.seconds >= 2.0


def test_expired_token_fails_that_shop_clearly_while_the_other_shops_go_on(sandbox, caplog):
    gw = sandbox(shops="4463798,5520131,6610002", orders_per_shop=20)
    gw.app.expire_token("5520131")
    cfg = tap_config(gw.app, gw.server)
    with caplog.at_level(logging.ERROR):
        run = run_tap(TapDouyin, cfg)
    assert versions(run) == {k: v for k, v in truth(gw.app).items() if k[0] != "5520131"}
    msg = str(run.error)
    assert run.error.code == "shops_failed" and "1 of 3 shops failed" in msg
    assert "isv.access-token-expired" in msg and "Renew the authorization of shop 5520131" in msg
    assert "5520131" in caplog.text
    assert {s for s, p in run.bookmarks().items() if "replication_key_value" in p} == {"4463798", "6610002"}
    for secret in [cfg["app_secret"]] + [s["access_token"] for s in cfg["shops"]]:
        assert secret not in msg and secret not in caplog.text and secret not in str(run.messages)


def test_cli_exits_non_zero_after_writing_the_other_shops_records_and_state(gw, tmp_path):
    gw.app.expire_token("5520131")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(tap_config(gw.app, gw.server)))
    proc = subprocess.run([sys.executable, "-m", "orderhub.connectors.douyin.tap", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    msgs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    records = [m["record"] for m in msgs if m["type"] == "RECORD"]
    assert {r["_shop"] for r in records} == {"4463798"} and len(records) == 60
    state = [m for m in msgs if m["type"] == "STATE"][-1]["value"]
    assert any(p["context"]["_shop"] == "4463798" and "replication_key_value" in p
               for p in state["bookmarks"]["orders"]["partitions"])
    assert "Renew the authorization of shop 5520131" in proc.stderr
    assert gw.app.token_of("5520131") not in proc.stderr + proc.stdout


def test_a_second_change_within_the_same_second_is_not_lost(gw):
    """Doudian stamps whole seconds: an order read at second S and changed again within S keeps its
    update_time. The edge set compares content too, so the next run still emits the new version."""
    cfg = tap_config(gw.app, gw.server, lag_seconds=1)
    frozen = int(time.time()) - 5
    real = gw.app.clock
    gw.app.clock = lambda: frozen  # every change below is stamped with the same second
    oid = min(i for i in gw.app.order_ids("4463798") if gw.app.orders[i]["status"] == 105)  # 105 → 2 → 3
    gw.app.advance(ids=[oid])
    gw.app.clock = real
    first = run_tap(TapDouyin, cfg)
    before = next(r for r in first.records if r["order_id"] == oid)
    gw.app.clock = lambda: frozen
    gw.app.advance(ids=[oid])
    gw.app.clock = real
    second = run_tap(TapDouyin, cfg, state=first.state)
    [after] = second.records
    assert after["order_id"] == oid and after["update_time"] == before["update_time"] == frozen
    assert after["order_status"] != before["order_status"] or after["sku_order_list"] != before["sku_order_list"]
