"""Fixtures: real TOP sandboxes on loopback ports, and tap configs pointing at them."""
from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from orderhub.connectors.taobao.client import SHANGHAI
from orderhub.infra.sandboxes.base import serve_in_thread
from orderhub.infra.sandboxes.taobao import TaobaoSandbox, make_app


@pytest.fixture
def top_sandbox():
    """Factory: ``top_sandbox(**settings) -> (app, base_url)``; every server is stopped after the test."""
    servers = []

    def start(**settings: Any) -> tuple[TaobaoSandbox, str]:
        app = make_app(**settings)
        srv = serve_in_thread(app)
        servers.append(srv)
        return app, srv.url

    yield start
    for srv in servers:  # shutdown waits for the server's 0.5 s poll: let it finish in the background
        threading.Thread(target=srv.stop, daemon=True).start()


def tap_config(app: TaobaoSandbox, url: str, **over: Any) -> dict[str, Any]:
    """A tap-taobao config for every shop of ``app``; fast settings for tests (one-day windows, no lag)."""
    cfg: dict[str, Any] = {
        "api_url": url + "/router/rest", "app_key": "test-app", "app_secret": "test-secret",
        "shops": [{"shop_id": s, "session": app.sessions[s]} for s in app.shops],
        "start_date": (datetime.fromtimestamp(time.time(), SHANGHAI) - timedelta(days=3)).isoformat(),
        "window_minutes": 1440, "lag_seconds": 0, "qps": 200, "page_size": 20, "parallel_windows": 2,
        "attempts": 4,
    }
    cfg.update(over)
    return cfg


def after_this_second() -> None:
    """Sleep into the next whole second: a sync reads complete seconds only, so changes made in the current
    second are visible to a run that starts after it (at most one second of waiting)."""
    time.sleep(math.floor(time.time()) + 1.02 - time.time())
