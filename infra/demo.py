"""The one-command demo: ``python -m orderhub.infra.demo up`` … ``python -m orderhub.infra.demo down``.

``up`` starts, with embedded defaults only (SQLite, loopback ports):

1. a Prefect server, SQLite under ``.demo/prefect`` (UI on http://127.0.0.1:4200 unless ``--port``);
2. the ``process`` work pool ``orderhub``, the per-partner concurrency limits (infra/partner_limits.yaml) and a
   webhook receiver that stands in for the ops DingTalk/WeCom group (alerts are printed and appended to
   ``.demo/alerts.jsonl``), with the failed-run alert automations pointing at it;
3. the hooks below: protocol sandboxes, deployments, the first sync run;
4. a process worker on ``orderhub``;

then prints the UI URL and the summary and keeps everything running until Ctrl-C (or ``down`` from another
terminal, which finds it through ``.demo/demo.json``). Stopping order: hook processes, worker, server.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orderhub.infra.prefect_server import PrefectServer, ProcessWorker, _kill_group, ensure_work_pool
from orderhub.infra.webhook_receiver import WebhookReceiver, _readable

POOL = "orderhub"
PID_FILE = "demo.json"


@dataclass
class Demo:
    """What ``up`` started; the hooks add their processes and cleanups here so ``down``/Ctrl-C stop them."""

    dir: Path
    port: int = 4200
    server: PrefectServer | None = None
    worker: ProcessWorker | None = None
    receiver: WebhookReceiver | None = None
    processes: list[tuple[str, subprocess.Popen[Any]]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # printed at the end: sandbox URLs, deployments, …

    @property
    def ui_url(self) -> str:
        assert self.server is not None
        return self.server.ui_url

    def env(self) -> dict[str, str]:
        """Environment for subprocesses that talk to the demo's Prefect server."""
        assert self.server is not None
        return {**os.environ, **self.server.client_env(), "ORDERHUB_DEMO_DIR": str(self.dir)}

    def start_process(self, name: str, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a helper process in its own process group, logging to ``.demo/<name>.log``; stopped by down."""
        log = open(self.dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(cmd, env=kw.pop("env", self.env()), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        finally:
            log.close()
        self.processes.append((name, proc))
        self.write_pid_file()
        return proc

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        self.cleanups.append(fn)

    def prefect(self, *args: str, check: bool = True, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        """Run the ``prefect`` CLI against the demo server, e.g. ``demo.prefect("--no-prompt", "deploy", "--all")``."""
        return subprocess.run([sys.executable, "-m", "prefect", *args], env=self.env(), check=check, cwd=cwd,
                              capture_output=True, text=True)

    # -- PID file ------------------------------------------------------------------------------------------
    def write_pid_file(self) -> None:
        procs = [("prefect-server", self.server.proc if self.server else None),
                 ("worker", self.worker.proc if self.worker else None), *self.processes]
        data = {"pid": os.getpid(), "ui_url": self.server.ui_url if self.server else None,
                "processes": [{"name": n, "pid": p.pid} for n, p in procs if p is not None]}
        (self.dir / PID_FILE).write_text(json.dumps(data, indent=2))

    # -- stop ----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        for name, proc in reversed(self.processes):
            _kill_group(proc, (signal.SIGTERM,), 5)
        for fn in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                fn()
        if self.worker:
            self.worker.stop()      # workers before the server (prefect.md §1)
        if self.receiver:
            self.receiver.stop()
        if self.server:
            self.server.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / PID_FILE).unlink()


# =============================================================================================================
# LEAD HOOKS — filled in by the flows/sandboxes work (issue 4). Each receives the running Demo.
# =============================================================================================================
def start_sandboxes(demo: Demo) -> None:
    """Seed the demo ERP (SQLite), start the Taobao and QIMEN sandboxes and the ERP order ticker."""
    from orderhub.infra import demo_pipelines

    demo_pipelines.start_sandboxes(demo)


def deploy_pipelines(demo: Demo) -> None:
    """Create the deployments of prefect.yaml on work pool ``orderhub`` and the initial UI-owned schedules."""
    from orderhub.infra import demo_pipelines

    demo_pipelines.deploy_pipelines(demo)


def run_first_sync(demo: Demo) -> dict[str, Any] | None:
    """Run the demo syncs through the worker, then the deliberately failing deployment (→ alert)."""
    from orderhub.infra import demo_pipelines

    return demo_pipelines.run_first_sync(demo)


def print_summary(demo: Demo, summary: dict[str, Any] | None) -> None:
    """Print what a new user should look at."""
    from orderhub.infra import demo_pipelines

    demo_pipelines.print_summary(demo, summary)


def _running_demo(dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((dir / PID_FILE).read_text())
        os.kill(int(data["pid"]), 0)
        return data
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError):
        return None


def _print_alerts(receiver: WebhookReceiver, stop: threading.Event) -> None:
    seen = 0
    while not stop.wait(0.5):
        for hit in receiver.hits[seen:]:
            print(f"\n[alert received] {_readable(hit)}\n", flush=True)
        seen = len(receiver.hits)


def up(dir: Path, *, port: int = 4200, worker_query_seconds: float = 2) -> int:
    dir = dir.resolve()
    dir.mkdir(parents=True, exist_ok=True)
    if (running := _running_demo(dir)) is not None:
        print(f"a demo is already running (pid {running['pid']}, UI {running.get('ui_url')}); "
              f"stop it with: python -m orderhub.infra.demo down", file=sys.stderr)
        return 1
    demo = Demo(dir, port=port)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)  # `down` → same path as Ctrl-C
    try:
        demo.server = PrefectServer(dir / "prefect", port=port or None, log_file=dir / "prefect-server.log")
        print(f"[demo] starting the Prefect server (SQLite in {dir / 'prefect'}) …", flush=True)
        demo.server.start()
        demo.write_pid_file()
        print(f"[demo] Prefect server healthy after {demo.server.startup_seconds:.1f} s: {demo.ui_url}", flush=True)
        with demo.server.use():
            from orderhub.infra.alerts import ensure_alerts
            from orderhub.infra.concurrency import ensure_partner_limits

            ensure_work_pool(POOL)
            ensure_partner_limits(Path(__file__).with_name("partner_limits.yaml"))
            demo.receiver = WebhookReceiver(log_path=dir / "alerts.jsonl").start()
            ensure_alerts(ui_url=demo.ui_url, webhook_url=f"{demo.receiver.url}/alerts")
            threading.Thread(target=_print_alerts, args=(demo.receiver, stop), daemon=True).start()
            print("[demo] work pool, partner limits and failed-run alerts are set up", flush=True)
            start_sandboxes(demo)
            deploy_pipelines(demo)
            demo.worker = ProcessWorker(POOL, api_url=demo.server.api_url, query_seconds=worker_query_seconds,
                                        log_file=dir / "worker.log", name="orderhub-demo-worker").start()
            demo.write_pid_file()
            print(f"[demo] process worker started on work pool '{POOL}' (log {dir / 'worker.log'})", flush=True)
            print_summary(demo, run_first_sync(demo))
            while demo.server.running:
                time.sleep(1)
            print(f"[demo] the Prefect server exited; see {dir / 'prefect-server.log'}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\n[demo] stopping …", flush=True)
        stop.set()
        demo.stop()
        print("[demo] stopped", flush=True)
    return 0


def down(dir: Path, *, timeout: float = 30) -> int:
    """Stop a running demo: SIGTERM to ``up`` (which stops what it started), then anything left, by PID."""
    dir = dir.resolve()
    try:
        data = json.loads((dir / PID_FILE).read_text())
    except FileNotFoundError:
        print("no demo is running here (no .demo/demo.json)")
        return 0
    pid = int(data["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (dir / PID_FILE).exists():  # `up` removes it when it has stopped everything
                break
            os.kill(pid, 0)
            time.sleep(0.3)
        else:
            os.kill(pid, signal.SIGKILL)  # did not stop in time
    if (dir / PID_FILE).exists():  # `up` did not clean up (killed hard): stop what it had started
        for p in data.get("processes", []):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(p["pid"]), signal.SIGKILL)
                print(f"killed leftover {p['name']} (pid {p['pid']})")
        (dir / PID_FILE).unlink()
    print("demo stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m orderhub.infra.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["up", "down"])
    p.add_argument("--dir", default=os.environ.get("ORDERHUB_DEMO_DIR", ".demo"), help="state directory")
    p.add_argument("--port", type=int, default=4200, help="Prefect UI/API port (0: any free port)")
    a = p.parse_args(argv)
    if a.command == "up":
        return up(Path(a.dir), port=a.port)
    return down(Path(a.dir))


if __name__ == "__main__":
    sys.exit(main())
