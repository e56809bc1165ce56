"""Fault suite: transient HTTP faults from the sandboxes, database connections dropped mid-transaction, lock
timeouts and deadlocks on PostgreSQL and MariaDB, a target down for several runs. Each sync must end exactly like
a fault-free run, with the calls it made within a stated budget (no retry storm)."""
import pytest

from orderhub.infra.selftest import (ErpScenario, Figures, TaobaoScenario, db_drop_trial, deadlock_trial,
                                     fault_suite, http_fault_trial, lock_trial, outage_trial, reference)

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]


@pytest.fixture(scope="module")
def erp_pg_hub(lab):
    return ErpScenario(lab, orders=120, hub="postgresql")


def test_transient_http_faults_end_exact_within_the_call_budget(lab):
    sc = TaobaoScenario(lab, orders_per_shop=40, tap_settings={"timeout": 1.0},
                        qimen_settings={"timeout_seconds": 1.0})
    run, tally = reference(sc)
    assert run.ok and tally.exact, tally
    base = {"top_ok": sc.app.log.count(code=0), "wms_creates": sc.wms.create_calls}
    t = http_fault_trial(sc, rate=0.1, seed=5, baseline=base)
    assert t.tally.exact, t.tally
    assert not t.bounds, t.bounds  # successful calls ≤ fault-free × runs + faults; no storm during the ban
    assert t.calls["top_faults"] >= 3 and t.calls["wms_faults"] >= 3 and t.calls["bans"] == 1, t.calls
    assert t.calls["calls_during_ban"] <= 4  # only the windows already in flight when the ban started


def test_connections_dropped_mid_transaction_end_exact(erp_pg_hub):
    t = db_drop_trial(erp_pg_hub, seed=4)
    assert t.injected >= 2, t.calls
    assert t.tally.exact, t.tally
    assert t.runs <= 1 + t.injected  # each drop costs at most one re-run


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_lock_timeouts_are_retried_and_end_exact(lab, backend):
    if backend == "postgresql":
        sc = ErpScenario(lab, orders=150, erp_url_query="options=-c%20lock_timeout%3D400")
        lock = "LOCK TABLE orderhub_so_interface IN SHARE ROW EXCLUSIVE MODE"
    else:
        sc = ErpScenario(lab, orders=150, erp_target="mariadb",
                         erp_url_query="init_command=SET%20innodb_lock_wait_timeout%3D1")
        lock = "SELECT id FROM orderhub_so_interface FOR UPDATE"
    reference(sc)
    t = lock_trial(sc, lock, hold=1.5, times=1)  # longer than the writer's lock timeout: it must retry
    assert t.injected == 1, t.calls
    assert t.tally.exact, t.tally


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_deadlock_with_the_erp_writer_ends_exact(lab, backend):
    sc = ErpScenario(lab, orders=60, erp_target=backend)
    t = deadlock_trial(sc, name=f"deadlock-{backend}")
    assert t.injected == 1, (t.calls, "no deadlock happened")
    assert t.tally.exact, t.tally


def test_wms_down_for_three_runs_loses_nothing_and_makes_bounded_calls(erp_pg_hub):
    t = outage_trial(erp_pg_hub, target="wms", down_runs=3)
    assert t.tally.exact, t.tally
    assert not t.bounds, t.bounds  # no run completed (and moved its bookmark) while the WMS was down
    assert t.runs == 4
    assert t.calls["calls_per_run"] == [20, 20, 20]  # 5 failures open the circuit, 4 attempts each


def test_erp_target_down_for_two_runs_loses_nothing(erp_pg_hub):
    t = outage_trial(erp_pg_hub, target="erp", down_runs=2)
    assert t.tally.exact, t.tally
    assert t.runs == 3 and not t.bounds


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fault_suite_at_a_higher_rate_for_several_rounds(lab):
    f = Figures()
    fault_suite(lab, f, rate=0.1, rounds=3, seed=11)
    assert f.faults_injected > 50 and f.faults_survived == f.faults_injected, f.notes
    assert (f.orders_lost, f.orders_doubled, f.orders_wrong) == (0, 0, 0), f.notes
