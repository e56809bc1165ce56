"""Shared frame of the protocol sandboxes: a threaded loopback HTTP server with fault injection.

Each platform sandbox subclasses :class:`SandboxApp` and implements :meth:`SandboxApp.handle`; the frame
parses the request, injects faults as configured (:class:`Faults`), and serves on 127.0.0.1 by default.
Use :func:`serve_in_thread` in tests and the demo, and ``python -m orderhub.infra.sandboxes NAME`` by hand.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("orderhub.sandbox")


@dataclass
class Faults:
    """Fault injection settings; each rate is a probability per request (0..1)."""

    error_rate: float = 0.0        # answer HTTP 5xx
    error_status: int = 503
    timeout_rate: float = 0.0      # hold the request for ``timeout_seconds`` then drop the connection
    timeout_seconds: float = 30.0
    slow_rate: float = 0.0         # answer normally after ``slow_seconds``
    slow_seconds: float = 2.0
    malformed_rate: float = 0.0    # answer with a truncated body
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    injected: dict[str, int] = field(default_factory=lambda: {"error": 0, "timeout": 0, "slow": 0, "malformed": 0})

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng.seed(self.seed)

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, str]:
        """Query and urlencoded body merged (body wins), as TOP-style gateways read them."""
        out = dict(self.query)
        ctype = self.headers.get("content-type", "")
        if self.body and "application/x-www-form-urlencoded" in ctype:
            out.update(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        return out

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Response:
    status: int = 200
    body: bytes | str | Any = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False, default=str).encode("utf-8")


class SandboxApp:
    """Subclass and implement :meth:`handle`. ``faults`` may be changed at run time by tests."""

    name = "sandbox"

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.lock = threading.RLock()
        self.request_count = 0

    def handle(self, req: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def malformed(self, resp: Response) -> Response:
        data = resp.encoded()
        return Response(resp.status, data[: max(1, len(data) // 2)], resp.content_type)


class _Handler(BaseHTTPRequestHandler):
    app: SandboxApp
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every keep-alive answer waits ~40 ms for a delayed ACK

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default
        log.debug("%s " + fmt, self.app.name, *args)

    def _do(self) -> None:
        app = self.app
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                      {k.lower(): v for k, v in self.headers.items()}, body)
        f = app.faults
        with app.lock:
            app.request_count += 1
        if f.roll(f.timeout_rate):
            f.injected["timeout"] += 1
            time.sleep(f.timeout_seconds)
            self.close_connection = True
            return
        if f.roll(f.error_rate):
            f.injected["error"] += 1
            self._send(Response(f.error_status, b"<html>Service Unavailable</html>", "text/html"))
            return
        if f.roll(f.slow_rate):
            f.injected["slow"] += 1
            time.sleep(f.slow_seconds)
        try:
            resp = app.handle(req)
        except Exception as exc:  # noqa: BLE001 - a sandbox bug must show up as a 500, not a hang
            log.exception("sandbox %s failed", app.name)
            resp = Response(500, {"error": f"sandbox internal error: {type(exc).__name__}"})
        if f.roll(f.malformed_rate):
            f.injected["malformed"] += 1
            resp = app.malformed(resp)
        self._send(resp)

    def _send(self, resp: Response) -> None:
        data = resp.encoded()
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _do


class SandboxServer:
    """A running sandbox. ``url`` is its base URL; :meth:`stop` shuts it down."""

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type(f"{app.name}Handler", (_Handler,), {"app": app})
        self.app = app
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "SandboxServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"sandbox-{self.app.name}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()  # returns within one poll interval (see start)
        self.httpd.server_close()

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_in_thread(app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> SandboxServer:
    """Start ``app`` on a free loopback port in a daemon thread and return the server."""
    return SandboxServer(app, host, port).start()
