"""Crash suite: `orderhub sync` SIGKILLed at every crash point and at random moments, run again until it completes;
hub (orders, lines, lineage), ERP interface table and WMS must then hold exactly what the source says."""
import os
import random
import subprocess
import sys

import pytest

from orderhub.infra.faults.crash import POINTS
from orderhub.infra.selftest import (ErpScenario, Figures, FileScenario, TaobaoScenario, crash_suite, crash_trial,
                                     reference)

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]


@pytest.fixture(scope="module")
def erp(lab):
    sc = ErpScenario(lab, orders=150)
    run, tally = reference(sc)
    assert run.ok and tally.exact, tally
    assert run.summary["hub"]["created"] == 150 and run.summary["held"] == {"missing_field": 7}
    return sc, run


def test_crash_point_kills_at_its_nth_pass_only():
    code = ("from orderhub.infra.faults.crash import crash_point\n"
            "for i in range(1, 4):\n    crash_point('bookmark')\n    print(i, flush=True)\n")
    env = {**os.environ, "ORDERHUB_CRASH_AT": "bookmark:2"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == -9 and r.stdout.split() == ["1"]
    r = subprocess.run([sys.executable, "-c", code], env={**env, "ORDERHUB_CRASH_AT": "hub_transaction:1"},
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["1", "2", "3"]


@pytest.mark.parametrize("point", list(POINTS))
def test_erp_sync_killed_at_crash_point_loses_and_doubles_nothing(erp, point):
    sc, ref = erp
    n = 1 if point != "wms_call" else 40  # the 40th delivery order: mid-way through the second batch
    t = crash_trial(sc, [f"{point}:{n}"])
    assert t.landed == 1, f"the run never reached {point} {n} times"
    assert t.finished and t.tally.exact, t.tally
    assert t.tally.checked >= 150 + 143 + 120  # hub + ERP + WMS orders compared


def test_erp_sync_killed_twice_at_random_moments_loses_and_doubles_nothing(erp):
    sc, ref = erp
    rng = random.Random(3)
    plan = [round(rng.uniform(0.2, 0.8) * ref.seconds, 2) for _ in range(2)]
    t = crash_trial(sc, plan)
    assert t.finished and t.tally.exact, (plan, t.tally)


def test_rerun_after_kill_creates_no_duplicates(erp):
    sc, _ = erp
    t = crash_trial(sc, ["wms_call:10", "erp_transaction:2"], then_rerun=True)
    assert t.landed == 2 and t.survived, t.tally
    assert max(sc.wms.create_calls_by_code.values()) <= 2  # resent once after the kill at most, never again


def test_duplicate_submission_stays_held_when_the_sync_restarts_between_the_two(lab):
    sc = ErpScenario(lab, orders=60, duplicates=((20, 30), (22, 48)))  # each pair in two different batches
    run, tally = reference(sc)
    assert run.summary["held"]["duplicate_submission"] == 2 and tally.exact, tally
    t = crash_trial(sc, ["bookmark:2"])  # the restart reads from the second batch: no memory of orders 20 and 22
    assert t.landed == 1 and t.survived, t.tally


def test_taobao_sync_killed_in_hub_transaction_and_after_a_wms_call_ends_exact(lab):
    sc = TaobaoScenario(lab, orders_per_shop=40, batch_size=20)
    run, tally = reference(sc)
    assert run.ok and tally.exact, tally
    t = crash_trial(sc, ["hub_transaction:2", "wms_call:5", "source_batch:2"])  # three kills, then to the end
    assert t.landed == 3 and t.survived, t.tally


def test_file_sync_killed_in_erp_transaction_and_before_the_bookmark_ends_exact(lab):
    sc = FileScenario(lab, files=2, per_file=25)
    run, tally = reference(sc)
    assert run.ok and tally.exact, tally
    assert run.summary["quarantined"] == 2  # one bad row per file
    t = crash_trial(sc, ["erp_transaction:2", "bookmark:1", "bookmark:1"])
    assert t.landed == 3 and t.survived, t.tally


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_full_crash_plans_on_every_source(lab):
    f = Figures()
    trials = crash_suite(lab, f, random_trials=12, per_point=3, then_rerun=True)
    assert trials and f.kill_points_tried > 60
    assert f.kill_points_survived == f.kill_points_tried, f.notes
    assert (f.orders_lost, f.orders_doubled, f.orders_wrong) == (0, 0, 0), f.notes
