"""singer-sdk's standard tap tests for tap-taobao, run against a TOP sandbox started in a fixture."""
from __future__ import annotations

import threading

import pytest
from singer_sdk.testing import get_tap_test_class

from orderhub.connectors.taobao.tap import TapTaobao
from orderhub.infra.sandboxes.base import serve_in_thread
from orderhub.infra.sandboxes.taobao import make_app
from tests.taobao.conftest import tap_config

# The suite is built at import time from this dict; the fixture below points it at a live sandbox.
CONFIG: dict = {"api_url": "http://127.0.0.1:9/router/rest", "app_key": "test-app", "app_secret": "test-secret",
                "shops": [{"shop_id": "shop1", "session": "placeholder"}], "start_date": "2024-01-01T00:00:00+08:00"}


@pytest.fixture(scope="module", autouse=True)
def live_sandbox():
    app = make_app(shops=2, orders_per_shop=40, seed=21)
    srv = serve_in_thread(app)
    CONFIG.update(tap_config(app, srv.url))
    yield app
    threading.Thread(target=srv.stop, daemon=True).start()


TestTapTaobaoStandard = get_tap_test_class(TapTaobao, config=CONFIG)
