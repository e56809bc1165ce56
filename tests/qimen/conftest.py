"""Fixtures for the QIMEN tests: a real sandbox WMS over HTTP, a client, canonical orders, Singer input."""
from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import simplejson

from orderhub.connectors.qimen.client import QimenClient
from orderhub.infra.sandboxes.base import serve_in_thread
from orderhub.infra.sandboxes.qimen import make_app

APP_KEY, SECRET, CUSTOMER = "testerp_appkey", "qimen-sandbox-secret", "stub-cust-code"
CST = timezone(timedelta(hours=8))


def fast(server):
    """Answer in one TCP segment train: without TCP_NODELAY the split header/body writes of the base handler
    meet the client's delayed ACK and every call costs ~40 ms on loopback."""
    server.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    return server


@pytest.fixture
def sandbox():
    """Factory: start a sandbox WMS with settings; ``.app`` is the inspectable app, ``.endpoint`` the URL.
    Servers are stopped in the background (``shutdown`` waits for the 0.5 s poll of ``serve_forever``)."""
    servers = []

    def start(**settings: Any):
        settings = {"app_key": APP_KEY, "app_secret": SECRET, "customer_id": CUSTOMER, "stock": {}, **settings}
        server = serve_in_thread(make_app(**settings))
        fast(server)
        server.endpoint = server.url + "/router/qimen/service"
        servers.append(server)
        return server

    yield start
    for server in servers:
        threading.Thread(target=server.stop, daemon=True).start()


@pytest.fixture
def wms(sandbox):
    """A running sandbox WMS with the test credentials and no stock."""
    return sandbox()


@pytest.fixture
def client(wms):
    c = QimenClient(wms.endpoint, APP_KEY, SECRET, CUSTOMER, retry_attempts=3, retry_base=0.01, retry_cap=0.05,
                    timeout=2.0)
    yield c
    c.close()


def target_config(wms, **over: Any) -> dict[str, Any]:
    cfg = {"url": wms.endpoint, "app_key": APP_KEY, "app_secret": SECRET, "customer_id": CUSTOMER,
           "owner_code": "OWNER-1", "retry_attempts": 2, "retry_base_seconds": 0.01, "retry_cap_seconds": 0.05,
           "timeout_seconds": 2.0, "breaker_failure_threshold": 3, "breaker_cooldown_seconds": 60,
           "sender_info": {"name": "华东仓发货组", "mobile": "13900000000", "province": "上海",
                           "city": "上海市", "area": "浦东新区", "detailAddress": "仓库路1号"}}
    cfg.update(over)
    return cfg


def order(n: int, **over: Any) -> dict[str, Any]:
    """A canonical order that passed the rules (the shape of ``orderhub.transforms.model``)."""
    o: dict[str, Any] = {
        "order_id": f"o_{n:024x}", "schema_version": "1.0", "source_system": "taobao", "channel": "taobao",
        "shop_id": "shop-1", "source_order_id": f"T{1000 + n}", "order_type": "normal", "status": "confirmed",
        "source_status": "WAIT_SELLER_SEND_GOODS",
        "created_at": datetime(2024, 5, 1, 10, 0, tzinfo=CST) + timedelta(minutes=n),
        "paid_at": datetime(2024, 5, 1, 10, 5, tzinfo=CST) + timedelta(minutes=n),
        "customer_id": f"buyer{n}", "customer_name": f"买家{n}", "customer_level": "normal",
        "receiver_name": "张三", "receiver_mobile": "13812345678", "receiver_phone": None,
        "receiver_province": "浙江省", "receiver_city": "杭州市", "receiver_district": "西湖区",
        "receiver_town": None, "receiver_address": f"文三路{n}号", "receiver_zip": "310000", "privacy_id": None,
        "currency": "CNY", "total_amount": Decimal("25.00"), "goods_amount": Decimal("20.00"),
        "shipping_fee": Decimal("5.00"), "discount_amount": Decimal("0"), "paid_amount": Decimal("25.00"),
        "special_requirements": None, "seller_memo": None, "is_urgent": False, "has_gift": False,
        "needs_invoice": False, "mapping_version": "taobao@1", "raw_hash": "h",
        "held": False, "hold_reasons": [], "warehouse_code": "WH-SH", "priority": "normal",
        "ruleset_version": "default@1",
        "lines": [{"line_no": 1, "source_line_id": f"L{n}", "canonical_sku": "SKU-001", "source_sku": "sku-001",
                   "sku_name": "六角螺栓 M8", "qty": Decimal("2"), "unit_price": Decimal("10.00"),
                   "amount": Decimal("20.00"), "is_gift": False, "line_status": "confirmed",
                   "refund_status": "none"}],
    }
    o.update(over)
    return o


def singer_lines(orders: list[dict[str, Any]], stream: str = "canonical_orders") -> list[str]:
    """SCHEMA + one RECORD per order, as the canonical mapper emits them (Decimals as JSON numbers)."""
    from orderhub.transforms.model import json_schema

    def dumps(msg: dict[str, Any]) -> str:
        return simplejson.dumps(msg, use_decimal=True, default=lambda v: v.isoformat(), ensure_ascii=False)

    out = [dumps({"type": "SCHEMA", "stream": stream, "schema": json_schema(), "key_properties": ["order_id"]})]
    out += [dumps({"type": "RECORD", "stream": stream, "record": o}) for o in orders]
    return out


def run_target(config: dict[str, Any], orders: list[dict[str, Any]]):
    """Run ``TargetQimen`` in-process over a Singer stream of ``orders``; returns the target."""
    from orderhub.connectors.qimen.target import TargetQimen

    target = TargetQimen(config=config, validate_config=True)
    target.listen(io.StringIO("\n".join(singer_lines(orders)) + "\n"))
    return target
