"""``orderhub-sandbox NAME [--port P] [--host H] [--set key=value …]``: run one protocol sandbox by hand.

Each sandbox module ``orderhub.infra.sandboxes.<name>`` exposes ``make_app(**settings) -> SandboxApp``.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

SANDBOXES = {
    "taobao": "taobao", "jd": "jd", "alibaba1688": "alibaba1688", "douyin": "douyin", "qimen": "qimen",
}


def _value(v: str):  # noqa: ANN202
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def main(argv: list[str] | None = None) -> int:
    from orderhub.infra.sandboxes.base import SandboxServer

    p = argparse.ArgumentParser(prog="orderhub-sandbox", description=__doc__)
    p.add_argument("name", choices=sorted(SANDBOXES))
    p.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sandbox setting")
    a = p.parse_args(argv)
    settings = dict(kv.split("=", 1) for kv in a.set)
    mod = importlib.import_module(f"orderhub.infra.sandboxes.{SANDBOXES[a.name]}")
    app = mod.make_app(**{k: _value(v) for k, v in settings.items()})
    server = SandboxServer(app, a.host, a.port).start()
    print(f"{a.name} sandbox listening on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
