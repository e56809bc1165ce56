"""singer-sdk's standard tap tests for tap-douyin, run against a live Doudian sandbox."""
from __future__ import annotations

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from orderhub.connectors.douyin.tap import TapDouyin
from orderhub.infra.sandboxes.douyin import make_app
from tests.alibaba1688.harness import start, tap_config

_app = make_app(orders_per_shop=40, qps_limit=1000)
_server = start(_app)  # a daemon thread for the life of the test session

TestTapDouyinStandard = get_tap_test_class(
    TapDouyin, config=tap_config(_app, _server), suite_config=SuiteConfig(max_records_limit=200))
