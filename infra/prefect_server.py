"""A local Prefect server and process workers as subprocesses, for tests, the demo and single-machine set-ups.

``PrefectServer(home)`` runs ``prefect server start --host 127.0.0.1 --port P`` with ``PREFECT_HOME=home``:
SQLite at ``home/prefect.db`` by default, PostgreSQL when a URL is given (``postgresql+asyncpg://…``; asyncpg
ships with prefect). It waits for ``/api/health``, exposes ``api_url`` and ``ui_url``, and ``stop()`` kills
its process group. The server process first imports :mod:`orderhub.infra.alerts` so that orderhub's own
notification block (the signing DingTalk robot) can be loaded by automations server-side (prefect.md §4.5).

Measured here (prefect 3.8.8, 2 shared cores): healthy ~12 s after start on a fresh SQLite home (migrations
included; 20–33 s when the machine is busy), 7–9 s on an existing one, ~13 s on a fresh PostgreSQL database.

Loopback only: the open-source server has no users, so it must not listen on a public interface unless an auth
string and a reverse proxy with TLS are in place (see infra/README.md).

``ProcessWorker(pool)`` runs ``prefect worker start --pool POOL --type process`` against a server; stop
workers before the server (a worker whose server is gone needs several signals to exit, prefect.md §1).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, Mapping

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def asyncpg_url(url: str) -> str:
    """``postgresql://…`` / ``postgres://…`` / ``postgresql+psycopg://…`` → ``postgresql+asyncpg://…``
    (the only PostgreSQL driver the Prefect server uses)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.split("+")[0] in ("postgresql", "postgres"):
        raise ValueError("the Prefect database URL must be postgresql://user:pw@host:port/db")
    return f"postgresql+asyncpg://{rest}"


def _kill_group(proc: subprocess.Popen[Any], signals: tuple[int, ...], wait: float, *, group: bool = True) -> None:
    """Signal ``proc`` (its whole process group, started with ``start_new_session``, unless ``group=False``)
    with each of ``signals`` in turn until it exits; SIGKILL the group after that."""
    for sig in signals:
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig) if group else os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # children left in the group (e.g. a flow-run subprocess) go too
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class PrefectServer:
    """One Prefect server subprocess. Use as a context manager, or ``start()`` / ``stop()``.

    >>> with PrefectServer("/tmp/ph") as server:      # doctest: +SKIP
    ...     print(server.api_url, server.ui_url)
    """

    def __init__(self, home: str | os.PathLike[str], *, port: int | None = None, host: str = "127.0.0.1",
                 database_url: str | None = None, env: Mapping[str, str] | None = None,
                 log_file: str | os.PathLike[str] | None = None) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"host {host!r}: orderhub starts Prefect on loopback only (127.0.0.1, ::1)")
        self.home = Path(home).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.database_url = asyncpg_url(database_url) if database_url else None
        if database_url:
            from orderhub.connectors.common.secrets import register_secret

            register_secret(urllib.parse.urlsplit(database_url).password)
        self.extra_env = dict(env or {})
        self.log_file = Path(log_file) if log_file else self.home / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    # -- addresses -----------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    @property
    def ui_url(self) -> str:
        return self.base_url

    def run_url(self, flow_run_id: Any) -> str:
        """Link to a flow run in the UI."""
        return f"{self.ui_url}/runs/flow-run/{flow_run_id}"

    def client_env(self) -> dict[str, str]:
        """Environment for processes that talk to this server (workers, flow runs, ``prefect`` CLI)."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_UI_URL": self.ui_url}

    # -- lifecycle -----------------------------------------------------------------------------------------
    def server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PREFECT_SERVER_DATABASE", "PREFECT_API_DATABASE"))}
        env.update({
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            # run links in alerts ({{ flow_run|ui_url }}) render None without it (prefect.md §2)
            "PREFECT_UI_URL": self.ui_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL":
                self.database_url or f"sqlite+aiosqlite:///{self.home / 'prefect.db'}",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        return [sys.executable, "-m", "orderhub.infra.prefect_server", "serve",
                "--host", self.host, "--port", str(self.port)]

    def start(self, timeout: float = 120) -> "PrefectServer":
        """Start the server and wait until ``/api/health`` answers; raise with the log tail if it does not."""
        if self.proc is not None:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(self.command(), env=self.server_env(), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.home)
        try:
            wait_healthy(self.api_url, timeout=timeout, proc=self.proc)
        except BaseException:
            self.stop()
            raise RuntimeError(f"Prefect server did not start in {timeout:.0f} s; log {self.log_file}:\n"
                               + tail(self.log_file)) from None
        self.startup_seconds = time.monotonic() - t0
        atexit.register(self.stop)  # a script that forgets stop() must not leave a server behind
        return self

    def stop(self, timeout: float = 15) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        atexit.unregister(self.stop)
        _kill_group(self.proc, (signal.SIGTERM,), timeout)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @contextlib.contextmanager
    def use(self) -> Iterator["PrefectServer"]:
        """Point this process (environment *and* the already-loaded Prefect settings) at the server."""
        yield from _use_api(self.client_env(), self)

    def __enter__(self) -> "PrefectServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _use_api(env: dict[str, str], value: Any) -> Iterator[Any]:
    import prefect.context
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"],
                                         PREFECT_UI_URL: env["PREFECT_UI_URL"]}):
            # also the process-global context, for code in contexts copied earlier (as prefect_test_harness)
            with prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()):
                yield value
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def wait_healthy(api_url: str, *, timeout: float = 120, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll ``{api_url}/health`` until it answers ``true``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with code {proc.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{api_url}/health did not answer within {timeout:.0f} s")


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, with registered secrets (e.g. the database password) masked."""
    from orderhub.connectors.common.secrets import redact

    try:
        return redact("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    except OSError:
        return "(no log)"


def ensure_work_pool(name: str, *, type: str = "process", concurrency_limit: int | None = None) -> None:
    """Create the work pool ``name`` if it does not exist (idempotent; an existing pool is left as is)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=name, type=type, concurrency_limit=concurrency_limit))


class ProcessWorker:
    """``prefect worker start --pool POOL --type process`` as a subprocess in its own process group.

    ``query_seconds`` is how often the worker polls for scheduled runs (Prefect's default 10 s; tests and the
    demo use 1–2 s so a triggered run starts promptly). Each flow run is a child process of the worker.
    """

    def __init__(self, pool: str, *, api_url: str, env: Mapping[str, str] | None = None,
                 query_seconds: float = 10, limit: int | None = None, name: str | None = None,
                 log_file: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None) -> None:
        self.pool, self.api_url, self.query_seconds, self.limit = pool, api_url, query_seconds, limit
        self.name = name or f"{pool}-worker-{os.getpid()}"
        self.extra_env = dict(env or {})
        self.log_file = Path(log_file) if log_file else None
        self.cwd = Path(cwd) if cwd else None
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.pool, "--type", "process",
               "--name", self.name]
        if self.limit:
            cmd += ["--limit", str(self.limit)]
        return cmd

    def start(self) -> "ProcessWorker":
        env = {**os.environ, "PREFECT_API_URL": self.api_url,
               "PREFECT_UI_URL": self.api_url.removesuffix("/api"),
               "PREFECT_WORKER_QUERY_SECONDS": str(self.query_seconds),
               "PREFECT_WORKER_PREFETCH_SECONDS": str(max(self.query_seconds, 1)),
               "PYTHONUNBUFFERED": "1", **self.extra_env}
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.command(), env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.cwd)
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]
        atexit.register(self.stop)
        return self

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the worker (it passes SIGINT on to its flow runs and exits), SIGKILL to its process group
        (flow runs included) after ``timeout``. Not SIGINT first: a worker started from a background shell
        inherits SIGINT as ignored."""
        if self.proc is None:
            return
        atexit.unregister(self.stop)
        _kill_group(self.proc, (signal.SIGTERM,), timeout, group=False)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "ProcessWorker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _serve(argv: list[str]) -> int:
    """Inside the server subprocess: register orderhub's block classes, then run ``prefect server start``."""
    import orderhub.infra.alerts  # noqa: F401  # registers DingTalkRobot, loaded by automations server-side
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *argv]
    app()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return _serve(argv[1:])
    p = argparse.ArgumentParser(prog="python -m orderhub.infra.prefect_server",
                                description="Run a local Prefect server in the foreground (Ctrl-C stops it).")
    p.add_argument("--home", default=".prefect-home", help="PREFECT_HOME (SQLite database lives here)")
    p.add_argument("--port", type=int, default=4200)
    p.add_argument("--host", default="127.0.0.1", choices=sorted(LOOPBACK))
    p.add_argument("--database-url", default=os.environ.get("ORDERHUB_PREFECT_DATABASE_URL"),
                   help="PostgreSQL URL (default: SQLite under --home); env ORDERHUB_PREFECT_DATABASE_URL")
    a = p.parse_args(argv)
    server = PrefectServer(a.home, port=a.port, host=a.host, database_url=a.database_url)
    print(f"starting Prefect server (log {server.log_file}) …", flush=True)
    with server:
        print(f"healthy after {server.startup_seconds:.1f} s\n  UI:  {server.ui_url}\n  API: {server.api_url}\n"
              f"  export PREFECT_API_URL={server.api_url}", flush=True)
        def interrupt(*_: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
