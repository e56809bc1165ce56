"""Test harness shared by the 1688 and Douyin tap tests: real sandboxes over HTTP, taps run in-process with a
message writer that keeps what the tap would print (serialised by the real msgspec writer, then parsed)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from singer_sdk.contrib.msgspec import MsgSpecWriter

from orderhub.infra.sandboxes.base import SandboxApp, SandboxServer, serve_in_thread


def start(app: SandboxApp) -> SandboxServer:
    """Serve ``app`` on a free loopback port. TCP_NODELAY: without it the base handler's split header/body
    writes meet the client's delayed ACK and every call costs ~40 ms on loopback."""
    server = serve_in_thread(app)
    server.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    return server


def stop(server: SandboxServer) -> None:
    """``shutdown`` waits for the 0.5 s poll of ``serve_forever``; do it in the background."""
    threading.Thread(target=server.stop, daemon=True).start()


def serve_sandboxes(make_app: Callable[..., SandboxApp]) -> Iterator[Callable[..., SimpleNamespace]]:
    """Body of a ``sandbox`` fixture: yields ``make(**settings)`` → namespace with ``app`` (ground truth),
    ``server`` and ``url``; stops every server it started afterwards."""
    servers: list[SandboxServer] = []

    def make(**settings: Any) -> SimpleNamespace:
        settings.setdefault("qps_limit", 1000)  # tests that are about the limit set their own
        app = make_app(**settings)
        server = start(app)
        servers.append(server)
        return SimpleNamespace(app=app, server=server, url=server.url)

    yield make
    for s in servers:
        stop(s)


def fast_client(client_class: Callable[..., Any], gw: SimpleNamespace) -> Any:
    """A client for sandbox ``gw`` with test pacing: no client-side limit, quick retries."""
    return client_class(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, retry_base=0.01,
                        retry_cap=0.05, max_attempts=4, timeout=5)


class CollectingWriter(MsgSpecWriter):
    """The real msgspec serialisation, kept in memory instead of stdout."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def write_message(self, message: Any) -> None:
        self.messages.append(json.loads(bytes(self.format_message(message))))


@dataclass
class Run:
    records: list[dict]
    states: list[dict]
    error: Exception | None = None
    seconds: float = 0.0
    tap: Any = None
    messages: list[dict] = field(default_factory=list)

    @property
    def state(self) -> dict:
        return self.states[-1] if self.states else {}

    def keys(self, id_field: str) -> list[tuple[str, str]]:
        return [(r["_shop"], r[id_field]) for r in self.records]

    def bookmarks(self) -> dict[str, dict]:
        parts = self.state.get("bookmarks", {}).get("orders", {}).get("partitions", [])
        return {p["context"]["_shop"]: p for p in parts}


def run_tap(tap_class: type, config: dict, state: dict | None = None) -> Run:
    """Run one sync like ``tap --config … --state …`` would, and return what it printed."""
    writer = CollectingWriter()
    tap = tap_class(config=config, state=state or {}, message_writer=writer)
    t0 = time.perf_counter()
    error = None
    try:
        tap.sync_all()
    except Exception as exc:  # noqa: BLE001 - the tests look at it
        error = exc
    seconds = time.perf_counter() - t0
    msgs = writer.messages
    return Run([m["record"] for m in msgs if m["type"] == "RECORD"],
               [m["value"] for m in msgs if m["type"] == "STATE"], error, seconds, tap, msgs)


def tap_config(app: Any, server: SandboxServer, *, shops: list[str] | None = None, **extra: Any) -> dict:
    """Config for the sandbox: its app credentials, every (or the given) shop with its token, a start date
    before the seeded history, a tiny lag so the run reads up to now, and no client-side pacing."""
    start_ts = app.base_time - 80 * 3600
    return {
        "api_url": server.url, "app_key": app.app_key, "app_secret": app.app_secret,
        "shops": [{"shop_id": s, "access_token": app.token_of(s)} for s in (shops or app.shops)],
        "start_date": datetime.fromtimestamp(start_ts, timezone.utc).isoformat(),
        "lag_seconds": 0.01, "qps": 1000, **extra,
    }
