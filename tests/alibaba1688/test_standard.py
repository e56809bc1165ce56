"""singer-sdk's standard tap tests for tap-alibaba1688, run against a live 1688 sandbox."""
from __future__ import annotations

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from orderhub.connectors.alibaba1688.tap import TapAlibaba1688
from orderhub.infra.sandboxes.alibaba1688 import make_app
from tests.alibaba1688.harness import start, tap_config

_app = make_app(orders_per_shop=40, qps_limit=1000)
_server = start(_app)  # a daemon thread for the life of the test session

TestTapAlibaba1688Standard = get_tap_test_class(
    TapAlibaba1688, config=tap_config(_app, _server), suite_config=SuiteConfig(max_records_limit=200))
