"""Benchmark: near-real-time order-to-ERP latency, and how long an empty scheduled run takes.

    python -m orderhub.infra.bench.latency [--orders 12]

Starts a Prefect server (SQLite), a process worker, the QIMEN sandbox and the demo ERP (SQLite), deploys
prefect.yaml, then measures both near-real-time designs side by side:

* ``demo-erp`` — a scheduled sync every 10 s (each run is a new flow-run process);
* ``demo-erp-watch`` — one long-running flow run polling the ERP every 2 s.

For each, new orders are inserted into the demo ERP one at a time and the time until the order's row appears in
the ERP interface table is recorded (median, p95). The duration of scheduled runs that found nothing new is read
back from the Prefect API.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orderhub.infra import demo_erp, demo_pipelines


def _wait_row(db: Path, bill_no: str, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            c = sqlite3.connect(db, timeout=5)
            try:
                row = c.execute("SELECT 1 FROM orderhub_so_interface o JOIN orderhub_so_interface_line l "
                                "ON l.source_system = o.source_system AND l.source_id = o.source_id "
                                "WHERE o.order_no = ? LIMIT 1", (bill_no,)).fetchone()
            finally:
                c.close()
            if row:
                return time.monotonic()
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    return None


def _measure(db: Path, n: int, timeout: float) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        bill = demo_erp.add_order(db)
        t1 = _wait_row(db, bill, timeout)
        if t1 is not None:
            out.append(t1 - t0)
        time.sleep(1.3)  # land at different points of the poll cycle
    return out


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    from prefect.client.orchestration import get_client

    from orderhub.infra.prefect_server import PrefectServer, ProcessWorker, ensure_work_pool

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=12)
    a = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="orderhub-latency-"))
    server = PrefectServer(tmp / "prefect", port=None, log_file=tmp / "server.log").start()

    class _Demo:  # the slice of infra.demo.Demo that demo_pipelines uses
        dir = tmp
        info: dict = {}
        procs: list = []

        def env(self) -> dict:
            return {**os.environ, **server.client_env()}

        def start_process(self, name, cmd, **kw):  # noqa: ANN001, ANN202
            p = subprocess.Popen(cmd, env=kw.get("env", self.env()), stdout=open(tmp / f"{name}.log", "ab"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
            self.procs.append(p)
            return p

        def prefect(self, *args, check=True, cwd=None):  # noqa: ANN001, ANN202
            return subprocess.run([sys.executable, "-m", "prefect", *args], env=self.env(), check=check, cwd=cwd,
                                  capture_output=True, text=True)

    demo = _Demo()
    worker = None
    rows = []
    try:
        with server.use():
            ensure_work_pool("orderhub")
            demo_pipelines.start_sandboxes(demo)
            for p in list(demo.procs):
                if "--tick" in " ".join(p.args):  # no background ticker: we add the orders ourselves
                    p.terminate()
            demo_pipelines.deploy_pipelines(demo)
            db = tmp / "erp.db"
            worker = ProcessWorker("orderhub", api_url=server.api_url, query_seconds=2,
                                   log_file=tmp / "worker.log").start()
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name("orderhub-sync/demo-erp")
                time.sleep(25)  # first scheduled runs carry the seed orders
                sched = _measure(db, a.orders, 120)
                client.pause_deployment(dep.id)
                watch = client.read_deployment_by_name("orderhub-watch/demo-erp-watch")
                client.create_flow_run_from_deployment(watch.id, parameters={"every_seconds": 2, "max_minutes": 10})
                time.sleep(20)
                watched = _measure(db, a.orders, 60)
                runs = client.read_flow_runs()
                empty = [r.total_run_time.total_seconds() for r in runs
                         if r.deployment_id == dep.id and r.state_name == "Completed"]
            rows = [("scheduled sync every 10 s (new process per run)", sched),
                    ("watch flow, polling every 2 s", watched)]
            print(f"\n| near-real-time design | orders | median s | p95 s |\n|---|---:|---:|---:|")
            for label, xs in rows:
                print(f"| {label} | {len(xs)} | {statistics.median(xs):.2f} | {_p(xs, 0.95):.2f} |")
            if empty:
                print(f"\nscheduled demo-erp runs: {len(empty)} completed, run time median {statistics.median(empty):.2f} s,"
                      f" p95 {_p(empty, 0.95):.2f} s (flow-run duration in Prefect; most found nothing new)")
    finally:
        if worker:
            worker.stop()
        for p in demo.procs:
            p.terminate()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
