"""Fixtures for the Douyin tests: a real Doudian sandbox over HTTP per test (factory), and a client for it."""
from __future__ import annotations

import pytest

from orderhub.connectors.douyin.client import DouyinClient
from orderhub.infra.sandboxes.douyin import make_app
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
    c = fast_client(DouyinClient, gw)
    yield c
    c.close()
