"""Fixtures: real JOS sandboxes on loopback ports, and tap configs pointing at them."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from orderhub.connectors.jd.client import SHANGHAI
from orderhub.infra.sandboxes.base import serve_in_thread
from orderhub.infra.sandboxes.jd import JDSandbox, make_app


@pytest.fixture
def jd_sandbox():
    """Factory: ``jd_sandbox(**settings) -> (app, base_url)``; servers are stopped after the test."""
    servers = []

    def start(**settings: Any) -> tuple[JDSandbox, str]:
        app = make_app(**settings)
        srv = serve_in_thread(app)
        servers.append(srv)
        return app, srv.url

    yield start
    for srv in servers:
        threading.Thread(target=srv.stop, daemon=True).start()


def jd_config(app: JDSandbox, url: str, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "api_url": url + "/routerjson", "app_key": "test-app", "app_secret": "test-secret",
        "shops": [{"shop_id": s, "access_token": app.tokens[s]} for s in app.shops],
        "start_date": (datetime.fromtimestamp(time.time(), SHANGHAI) - timedelta(days=3)).isoformat(),
        "window_days": 7, "lag_seconds": 0, "qps": 200, "page_size": 20, "parallel_windows": 1, "attempts": 4,
    }
    cfg.update(over)
    return cfg
