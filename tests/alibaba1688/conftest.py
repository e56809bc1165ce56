"""Fixtures for the 1688 tests: a real AOP sandbox over HTTP per test (factory), and a client for it."""
from __future__ import annotations

import pytest

from orderhub.connectors.alibaba1688.client import Alibaba1688Client
from orderhub.infra.sandboxes.alibaba1688 import make_app
from tests.alibaba1688.harness import fast_client, serve_sandboxes


@pytest.fixture
def sandbox():
    """Factory: ``sandbox(**settings)`` → namespace with ``app`` (ground truth), ``server`` and ``url``."""
    yield from serve_sandboxes(make_app)


@pytest.fixture
def gw(sandbox):
    return sandbox()


@pytest.fixture
def client(gw):
    c = fast_client(Alibaba1688Client, gw)
    yield c
    c.close()
