"""The orderhub-sync flow as IT admins run it: a deployment on a process worker against the real Prefect server.

Expected results are computed independently (the pure canonical layer over the ERP rows, read straight from
the demo ERP), then compared with what the ERP interface table and the sandbox WMS hold after the run."""
import json
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from orderhub.infra import demo_erp
from orderhub.infra.sandboxes import qimen
from orderhub.infra.sandboxes.base import serve_in_thread
from orderhub.transforms import Canonicalizer, RuleContext, RuleSet, SkuDictionary, load_mapping

pytestmark = pytest.mark.prefect
REPO = Path(__file__).resolve().parents[2]
POOL = "orderhub-test"


@pytest.fixture
def wms():
    app = qimen.make_app(app_key="k", app_secret="wms-secret-0000", customer_id="c1")
    with serve_in_thread(app) as server:
        yield app, f"{server.url}/router/qimen/service"


@pytest.fixture
def erp_pipeline(tmp_path, wms):
    app, url = wms
    erp = tmp_path / "erp.db"
    demo_erp.seed(erp, generated_orders=30)
    spec = {
        "name": f"e2e-{tmp_path.name[-8:].lower().replace('_', '-')}",
        "mapping": "erp_sql", "rules": "default", "skus": str(REPO / "infra/demo_data/skus.yaml"),
        "customer_levels": {"C001": "vip"}, "batch_size": 10,
        "source": {"connector": "erp_sql", "config": {"url": f"sqlite:///{erp}", "header_table": "so_header",
                                                      "line_table": "so_line", "join_key": "header_id",
                                                      "updated_at": "updated_at", "shop": "main"}},
        "hub": {"url": f"sqlite:///{tmp_path / 'hub.db'}"},
        "targets": [{"name": "erp-interface", "connector": "erp_sql",
                     "config": {"url": f"sqlite:///{erp}", "mode": "interface", "create_tables": True}},
                    {"name": "wms", "connector": "qimen",
                     "config": {"url": url, "app_key": "k", "app_secret": "wms-secret-0000", "customer_id": "c1",
                                "owner_code": "OWNER", "retry_attempts": 2}}],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    return path, erp, app


def expected(erp: Path):
    """Independently: the canonical layer over the ERP rows as they are in the database right now."""
    c = sqlite3.connect(erp)
    c.row_factory = sqlite3.Row
    lines: dict = {}
    for r in c.execute("SELECT * FROM so_line ORDER BY header_id, line_no"):
        lines.setdefault(r["header_id"], []).append(dict(r))
    recs = [dict(h, lines=lines.get(h["id"], []), _shop="main") for h in map(dict, c.execute("SELECT * FROM so_header"))]
    c.close()
    cz = Canonicalizer(load_mapping("erp_sql"), rules=RuleSet.load("default"),
                       skus=SkuDictionary.load(REPO / "infra/demo_data/skus.yaml"),
                       context=RuleContext(customer_levels={"C001": "vip"}))
    res = cz.run(recs)
    ok = {o["source_order_id"]: o for o in res.orders if not o["held"]}
    wms = {o["order_id"] for o in ok.values() if o["status"] in ("confirmed", "allocated")}
    return ok, wms, len(res.quarantined), {o["source_order_id"] for o in res.orders if o["held"]}


def interface_rows(erp: Path):
    c = sqlite3.connect(erp)
    rows = c.execute("SELECT order_no, count(*) FROM orderhub_so_interface GROUP BY order_no").fetchall()
    total = c.execute("SELECT coalesce(sum(amount), 0) FROM orderhub_so_interface_line").fetchone()[0]
    c.close()
    return dict(rows), Decimal(str(total))


def deploy_sync(name: str, job_env: dict | None = None) -> str:
    from prefect import flow

    src = flow.from_source(str(REPO), entrypoint="flows/sync.py:sync")
    src.deploy(name=name, work_pool_name=POOL, print_next_steps=False,
               job_variables={"env": job_env} if job_env else None)
    return f"{src.name}/{name}"


def run(name: str, pipeline: Path, timeout: float = 240, **kw):
    from prefect.deployments import run_deployment

    return run_deployment(name, parameters={"pipeline": str(pipeline)}, timeout=timeout, **kw)


def test_deployment_run_syncs_orders_end_to_end_and_publishes_the_summary(prefect_api, process_worker,
                                                                          erp_pipeline):
    path, erp, wms_app = erp_pipeline
    ok, wms_ids, n_quarantined, held = expected(erp)
    with prefect_api.use():
        name = deploy_sync("sync-e2e")
        fr = run(name, path)
        assert fr.state.is_completed(), fr.state
        rows, total = interface_rows(erp)
        assert set(rows) == set(ok) and set(rows.values()) == {1}
        assert total == sum((ln["amount"] for o in ok.values() for ln in o["lines"]), Decimal(0))
        assert set(wms_app.delivery_orders) == wms_ids             # deliveryOrderCode = canonical order id
        assert held and not (held & set(rows))                     # held orders reached neither target
        # the summary artifact: counts as the run saw them
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        from orderhub.flows.artifacts import summary_key

        cfg = yaml.safe_load(path.read_text())
        with get_client(sync_client=True) as client:
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[summary_key(
                cfg["name"])])))
        assert arts, "no summary artifact"
        md = arts[0].data
        created_line = [ln for ln in md.splitlines() if ln.startswith("| erp-interface")]
        assert created_line and f"| {len(ok)} |" in created_line[0], md
        assert f"{n_quarantined}" in md and "13912345678" not in md
        # a second run moves nothing
        fr2 = run(name, path)
        assert fr2.state.is_completed()
        assert interface_rows(erp) == (rows, total) and set(wms_app.delivery_orders) == wms_ids


@pytest.mark.parametrize("point", ["hub_transaction:2", "erp_transaction:2", "wms_call:5"])
def test_sigkilled_flow_run_rerun_ends_exact(prefect_api, process_worker, erp_pipeline, point):
    path, erp, wms_app = erp_pipeline
    ok, wms_ids, _, _ = expected(erp)
    with prefect_api.use():
        crashing = deploy_sync("sync-crash", job_env={"ORDERHUB_CRASH_AT": point})
        fr = run(crashing, path)
        assert fr.state.name == "Crashed", fr.state           # SIGKILL of the flow-run process
        rows_mid, _ = interface_rows(erp) if _has_interface(erp) else ({}, 0)
        assert len(rows_mid) < len(ok)
        fr2 = run(deploy_sync("sync-e2e"), path)
        assert fr2.state.is_completed(), fr2.state
    rows, total = interface_rows(erp)
    assert set(rows) == set(ok) and set(rows.values()) == {1}    # nothing lost, nothing doubled
    assert total == sum((ln["amount"] for o in ok.values() for ln in o["lines"]), Decimal(0))
    assert set(wms_app.delivery_orders) == wms_ids               # exactly one delivery order per sendable order


def _has_interface(erp: Path) -> bool:
    c = sqlite3.connect(erp)
    try:
        return bool(c.execute("SELECT 1 FROM sqlite_master WHERE name='orderhub_so_interface'").fetchone())
    finally:
        c.close()


def test_prefect_deploy_all_works_non_interactively(prefect_api):
    from orderhub.infra.prefect_server import ensure_work_pool

    with prefect_api.use():
        ensure_work_pool("orderhub")
        r = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=REPO,
                           env={**__import__("os").environ, **prefect_api.client_env()}, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("orderhub-sync/demo-erp")
            assert [(s.schedule.interval.total_seconds(), s.schedule.timezone) for s in dep.schedules] == \
                [(10.0, "Asia/Shanghai")]
            ui_owned = client.read_deployment_by_name("orderhub-sync/demo-taobao")
            assert ui_owned.schedules == []
            # an admin's schedule on the UI-owned deployment survives a redeploy
            from prefect.client.schemas.schedules import CronSchedule

            client.create_deployment_schedules(ui_owned.id, [(CronSchedule(cron="0 9 * * *",
                                                                           timezone="Asia/Shanghai"), True)])
        r = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"], cwd=REPO,
                           env={**__import__("os").environ, **prefect_api.client_env()}, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0
        with get_client(sync_client=True) as client:
            again = client.read_deployment_by_name("orderhub-sync/demo-taobao")
            assert [s.schedule.cron for s in again.schedules] == ["0 9 * * *"]


def test_a_batch_that_fails_to_store_stops_the_overlapping_run_and_the_rerun_ends_exact(prefect_api, erp_pipeline,
                                                                                         monkeypatch):
    """orderhub-sync stores batch k while it canonicalizes batch k+1: when batch 2's hub write fails for good,
    nothing after it is stored, the bookmark stays at batch 1, and the next run ends exact."""
    from prefect import flow

    from orderhub.flows import sync as sync_mod
    from orderhub.flows.pipeline import Pipeline, load_pipeline

    path, erp, wms_app = erp_pipeline
    ok, wms_ids, _, _ = expected(erp)
    monkeypatch.setattr(sync_mod, "store_batch", sync_mod.store_batch.with_options(retries=0))
    cfg = load_pipeline(path)
    p = Pipeline(cfg, run_id="overlap-fails")
    real_store, calls, states = p.store, [], []

    def store(result, sb):
        calls.append(len(sb.records))
        if len(calls) == 2:
            raise RuntimeError("hub unavailable (deliberate test failure)")
        states.append(sb.state)
        return real_store(result, sb)

    p.store = store

    @flow(name="orderhub-test-overlap")
    def overlapping() -> dict:
        return sync_mod.run_pipeline(p, overlap=True)

    with prefect_api.use():
        with pytest.raises(RuntimeError, match="deliberate test failure"):
            overlapping()
        assert len(calls) == 2                                   # batch 3 was never stored
        assert p.hub.get_state(cfg.name) == states[0]            # the bookmark of batch 1, nothing later
        assert p.summary.batches == 1 and p.summary.read == 10   # only batch 1 reached the hub
        assert p.hub.counts()["orders"] == p.summary.hub["created"] > 0
        fr = sync_mod.sync(str(path))
        assert fr["status"] == "completed"
    rows, total = interface_rows(erp)
    assert set(rows) == set(ok) and set(rows.values()) == {1}    # nothing lost, nothing doubled
    assert total == sum((ln["amount"] for o in ok.values() for ln in o["lines"]), Decimal(0))
    assert set(wms_app.delivery_orders) == wms_ids
