"""singer-sdk's standard tap tests for tap-jd, run against a JOS sandbox started in a fixture."""
from __future__ import annotations

import threading

import pytest
from singer_sdk.testing import get_tap_test_class

from orderhub.connectors.jd.tap import TapJD
from orderhub.infra.sandboxes.base import serve_in_thread
from orderhub.infra.sandboxes.jd import make_app
from tests.jd.conftest import jd_config

CONFIG: dict = {"api_url": "http://127.0.0.1:9/routerjson", "app_key": "test-app", "app_secret": "test-secret",
                "shops": [{"shop_id": "s1", "access_token": "placeholder"}], "start_date": "2024-01-01T00:00:00+08:00"}


@pytest.fixture(scope="module", autouse=True)
def live_sandbox():
    app = make_app(shops=2, orders_per_shop=40, seed=5)
    srv = serve_in_thread(app)
    CONFIG.update(jd_config(app, srv.url, order_api="jingdong.pop.order.enSearch"))
    yield app
    threading.Thread(target=srv.stop, daemon=True).start()


TestTapJDStandard = get_tap_test_class(TapJD, config=CONFIG)
