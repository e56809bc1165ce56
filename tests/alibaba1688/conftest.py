"""Fixtures for the 1688 tests: a real AOP sandbox over HTTP per test (factory), and a client for it."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from orderhub.connectors.alibaba1688.client import Alibaba1688Client
from orderhub.infra.sandboxes.alibaba1688 import make_app
from tests.alibaba1688.harness import start, stop


@pytest.fixture
def sandbox():
    """Factory: ``sandbox(**settings)`` → namespace with ``app`` (ground truth), ``server`` and ``url``."""
    servers = []

    def make(**settings: Any) -> SimpleNamespace:
        settings.setdefault("qps_limit", 1000)  # tests that are about the limit set their own
        app = make_app(**settings)
        server = start(app)
        servers.append(server)
        return SimpleNamespace(app=app, server=server, url=server.url)

    yield make
    for s in servers:
        stop(s)


@pytest.fixture
def gw(sandbox):
    return sandbox()


@pytest.fixture
def client(gw):
    c = Alibaba1688Client(gw.app.app_key, gw.app.app_secret, base_url=gw.url, qps=1000, retry_base=0.01,
                          retry_cap=0.05, max_attempts=4, timeout=5)
    yield c
    c.close()
