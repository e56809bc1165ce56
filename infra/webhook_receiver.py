"""A loopback HTTP endpoint that records what is POSTed to it: the alert sink of the tests and the demo.

It answers like a DingTalk/WeCom robot (``{"errcode": 0, "errmsg": "ok"}``). With ``dingtalk_secret`` set it
also checks the DingTalk 加签 parameters as DingTalk does (``timestamp`` within one hour, ``sign`` =
base64(HMAC-SHA256)) and refuses a bad signature with ``errcode`` 310000, so signed alerts can be tested.

    with WebhookReceiver() as rx:
        ...                               # point alerts at rx.url + "/any/path"
        hit = rx.wait_for(lambda h: "Failed" in h.text, timeout=60)

``python -m orderhub.infra.webhook_receiver --port 8765 [--log alerts.jsonl]`` runs it by hand (the demo does).
"""
from __future__ import annotations

import hmac
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orderhub.infra.sandboxes.base import Request, Response, SandboxApp, SandboxServer


@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        """The body as text (for ``in`` checks across all payload shapes)."""
        if self.json is not None:
            return json.dumps(self.json, ensure_ascii=False)
        return self.body.decode("utf-8", errors="replace")


class RecordingApp(SandboxApp):
    name = "webhook-receiver"

    def __init__(self, *, dingtalk_secret: str | None = None, log_path: str | Path | None = None) -> None:
        super().__init__()
        self.hits: list[Hit] = []
        self.dingtalk_secret = dingtalk_secret
        self.log_path = Path(log_path) if log_path else None
        self._arrived = threading.Condition(self.lock)

    def handle(self, req: Request) -> Response:
        try:
            payload = req.json()
        except ValueError:
            payload = None
        if self.dingtalk_secret is not None and not self._signature_ok(req.query):
            return Response(200, {"errcode": 310000, "errmsg": "sign not match"})
        hit = Hit(req.path, req.query, req.headers, req.body, payload)
        with self._arrived:
            self.hits.append(hit)
            self._arrived.notify_all()
        if self.log_path:
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"path": hit.path, "json": hit.json, "received_at": hit.received_at},
                                   ensure_ascii=False) + "\n")
        return Response(200, {"errcode": 0, "errmsg": "ok"})

    def _signature_ok(self, query: dict[str, str]) -> bool:
        from orderhub.infra.alerts import dingtalk_sign

        ts, sign = query.get("timestamp", ""), query.get("sign", "")
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000:
            return False
        return hmac.compare_digest(sign, dingtalk_sign(self.dingtalk_secret or "", int(ts)))

    def wait_for(self, predicate: Callable[[Hit], bool], timeout: float) -> Hit:
        """The first hit (already received or arriving within ``timeout`` s) for which ``predicate`` is true."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for hit in self.hits:
                    if predicate(hit):
                        return hit
                left = deadline - time.monotonic()
                if left <= 0:
                    got = "; ".join(f"{h.path}: {h.text[:200]}" for h in self.hits) or "nothing"
                    raise TimeoutError(f"no matching webhook call within {timeout:.0f} s; received: {got}")
                self._arrived.wait(left)


class WebhookReceiver:
    """The recording app served on a loopback port in a daemon thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, dingtalk_secret: str | None = None,
                 log_path: str | Path | None = None) -> None:
        self.app = RecordingApp(dingtalk_secret=dingtalk_secret, log_path=log_path)
        self.server = SandboxServer(self.app, host, port)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def hits(self) -> list[Hit]:
        return self.app.hits

    def wait_for(self, predicate: Callable[[Hit], bool], timeout: float = 60) -> Hit:
        return self.app.wait_for(predicate, timeout)

    def start(self) -> "WebhookReceiver":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import signal

    p = argparse.ArgumentParser(prog="python -m orderhub.infra.webhook_receiver", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", help="append each received JSON body to this file (JSON lines)")
    p.add_argument("--quiet", action="store_true", help="do not print received messages")
    a = p.parse_args(argv)
    rx = WebhookReceiver(port=a.port, log_path=a.log).start()
    print(f"webhook receiver listening on {rx.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seen = 0
    try:
        while not stop.wait(0.5):
            for hit in rx.hits[seen:]:
                if not a.quiet:
                    print(f"--- {time.strftime('%H:%M:%S')} POST {hit.path}\n{_readable(hit)}", flush=True)
            seen = len(rx.hits)
    except KeyboardInterrupt:
        pass
    rx.stop()
    return 0


def _readable(hit: Hit) -> str:
    """The human text of a robot/webhook payload (markdown text, content or text field), else the JSON."""
    j = hit.json if isinstance(hit.json, dict) else {}
    for path in (("markdown", "text"), ("markdown", "content"), ("text", "content"), ("text",)):
        v: Any = j
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, str):
            return v
    return hit.text


__all__ = ["Hit", "RecordingApp", "WebhookReceiver"]

if __name__ == "__main__":
    sys.exit(main())
