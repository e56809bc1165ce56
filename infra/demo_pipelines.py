"""What the demo runs (called from the hooks of :mod:`orderhub.infra.demo`): the SQLite demo ERP and its order
ticker, the Taobao and QIMEN sandboxes, the deployments of ``prefect.yaml``, the first syncs and their summary.

Every credential here is a sandbox-only demo value. The worker gets them as environment variables (never as
deployment job variables, which the UI would show); production sets real ones the same way or through Prefect
Secret blocks (``${secret:…}`` in the pipeline file).
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO_KEYS = {  # sandbox-only credentials of the demo
    "ORDERHUB_TAOBAO_APP_KEY": "demo-taobao-app", "ORDERHUB_TAOBAO_APP_SECRET": "demo-taobao-secret-000",
    "ORDERHUB_QIMEN_APP_KEY": "demo-erp-appkey", "ORDERHUB_QIMEN_APP_SECRET": "demo-qimen-secret-000",
    "ORDERHUB_QIMEN_CUSTOMER_ID": "demo-customer",
}
SYNC_DEPLOYMENTS = ("orderhub-sync/demo-erp", "orderhub-sync/demo-taobao")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 20) -> None:
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def start_sandboxes(demo: Any) -> None:
    """Seed the demo ERP, start the sandboxes and the order ticker, export the pipeline variables."""
    from orderhub.infra import demo_erp
    from orderhub.infra.sandboxes.taobao import session_key

    d = Path(demo.dir)
    erp_db = d / "erp.db"
    n = demo_erp.seed(erp_db)
    tb_port, qm_port = _free_port(), _free_port()
    env = {
        **DEMO_KEYS,
        "ORDERHUB_HUB_URL": f"sqlite:///{d / 'hub.db'}",
        "ORDERHUB_DEMO_ERP_URL": f"sqlite:///{erp_db}",
        "ORDERHUB_TAOBAO_URL": f"http://127.0.0.1:{tb_port}/router/rest",
        "ORDERHUB_QIMEN_URL": f"http://127.0.0.1:{qm_port}/router/qimen/service",
        "ORDERHUB_DEMO_START": (datetime.now(timezone(timedelta(hours=8))) - timedelta(days=3)).isoformat(),
        "ORDERHUB_TAOBAO_SESSION_SHOP1": session_key(7, "shop1"),
        "ORDERHUB_TAOBAO_SESSION_SHOP2": session_key(7, "shop2"),
    }
    os.environ.update(env)  # the worker and every run inherit them
    sandbox = [sys.executable, "-m", "orderhub.infra.sandboxes"]
    demo.start_process("sandbox-taobao", [*sandbox, "taobao", "--port", str(tb_port),
                                          "--set", f"app_key={env['ORDERHUB_TAOBAO_APP_KEY']}",
                                          "--set", f"app_secret={env['ORDERHUB_TAOBAO_APP_SECRET']}",
                                          "--set", "seed=7", "--set", "shops=2", "--set", "orders_per_shop=25",
                                          "--set", "new_order_every_calls=15"], env={**demo.env(), **env})
    demo.start_process("sandbox-qimen", [*sandbox, "qimen", "--port", str(qm_port),
                                         "--set", f"app_key={env['ORDERHUB_QIMEN_APP_KEY']}",
                                         "--set", f"app_secret={env['ORDERHUB_QIMEN_APP_SECRET']}",
                                         "--set", f"customer_id={env['ORDERHUB_QIMEN_CUSTOMER_ID']}"],
                       env={**demo.env(), **env})
    demo.start_process("erp-ticker", [sys.executable, "-m", "orderhub.infra.demo_erp", str(erp_db), "--tick", "20"],
                       env={**demo.env(), **env})
    _wait_port(tb_port)
    _wait_port(qm_port)
    demo.info["demo ERP (SQLite)"] = f"{erp_db} — {n} orders, a new one every 20 s"
    demo.info["Taobao sandbox"] = env["ORDERHUB_TAOBAO_URL"]
    demo.info["QIMEN WMS sandbox"] = env["ORDERHUB_QIMEN_URL"]
    demo.info["hub (SQLite)"] = env["ORDERHUB_HUB_URL"]
    print(f"[demo] demo ERP seeded ({n} orders); Taobao and QIMEN sandboxes up", flush=True)


def deploy_pipelines(demo: Any) -> None:
    """``prefect --no-prompt deploy --all`` from prefect.yaml, then the initial UI-owned schedules."""
    r = demo.prefect("--no-prompt", "deploy", "--all", cwd=REPO, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"prefect deploy failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    subprocess.run([sys.executable, "-m", "orderhub.schedules", "apply"], env=demo.env(), check=True,
                   capture_output=True, text=True)
    demo.info["deployments"] = ", ".join(["demo-erp (every 10 s)", "demo-taobao (every 2 min, UI-owned)",
                                          "demo-erp-replay", "demo-erp-backfill", "demo-broken"])
    print("[demo] deployments created from prefect.yaml (schedules: schedules/schedules.yaml)", flush=True)


def _summaries(hub_url: str) -> dict[str, dict]:
    path = hub_url.removeprefix("sqlite:///")
    out: dict[str, dict] = {}
    if not Path(path).exists():
        return out
    c = sqlite3.connect(path)
    try:
        for pipeline, summary in c.execute("SELECT pipeline, summary FROM hub_runs WHERE status = 'completed' "
                                           "ORDER BY started_at"):
            out[pipeline] = json.loads(summary) if isinstance(summary, str) else summary
        wms = c.execute("SELECT count(*) FROM hub_target_writes WHERE target = 'wms' AND result IN "
                        "('created', 'unchanged')").fetchone()[0]
        out["_wms_orders"] = {"count": wms}
    finally:
        c.close()
    return out


def run_first_sync(demo: Any) -> dict[str, Any] | None:
    """Run both demo syncs through the worker and wait; then start the deliberately failing deployment so the
    failed-run alert shows up. Returns the combined summary."""
    from prefect.deployments import run_deployment

    results = {}
    for name in SYNC_DEPLOYMENTS:
        print(f"[demo] running {name} through the worker …", flush=True)
        fr = run_deployment(name, timeout=300)
        results[name] = fr.state.name if fr.state else "?"
    run_deployment("orderhub-sync/demo-broken", timeout=0)
    s = _summaries(os.environ["ORDERHUB_HUB_URL"])
    s["_states"] = results
    return s


def print_summary(demo: Any, summaries: dict[str, Any] | None) -> None:
    s = summaries or {}
    print("\n" + "=" * 78)
    print(f"  orderhub demo is running — Prefect UI: {demo.ui_url}")
    for name, state in (s.get("_states") or {}).items():
        print(f"  {name}: {state}")
    for pipeline in ("demo-erp", "demo-taobao"):
        x = s.get(pipeline)
        if not x:
            continue
        hub = x.get("hub", {})
        held = ", ".join(f"{k} {v}" for k, v in sorted((x.get("held") or {}).items())) or "none"
        tg = "; ".join(f"{t}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
                       for t, c in (x.get("targets") or {}).items()) or "-"
        print(f"  {pipeline}: read {x.get('read', 0)}, hub created {hub.get('created', 0)}, held {held}, "
              f"quarantined {x.get('quarantined', 0)} → {tg}")
    print(f"  delivery orders in the sandbox WMS: {s.get('_wms_orders', {}).get('count', 0)}")
    print(f"  failed-run alerts (demo-broken fails on purpose) arrive at {demo.receiver.url if demo.receiver else '-'}"
          f" and in {Path(demo.dir) / 'alerts.jsonl'}")
    for k, v in demo.info.items():
        print(f"  {k}: {v}")
    hub = os.environ.get("ORDERHUB_HUB_URL", "")
    print(f"  try:  .venv/bin/orderhub --hub {hub} quarantine list")
    print(f"        .venv/bin/orderhub --hub {hub} lineage SO202600000009")
    print("  stop: Ctrl-C here, or  bash infra/demo.sh down")
    print("=" * 78 + "\n", flush=True)
