"""target-qimen: singer-sdk standard target tests, read-back from the sandbox WMS, re-runs, outage, SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from singer_sdk.testing import SuiteConfig, get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.templates import TargetTestTemplate

from orderhub.connectors.qimen.target import TargetQimen
from orderhub.infra.sandboxes.base import SandboxServer
from orderhub.infra.sandboxes.qimen import make_app
from tests.qimen.conftest import APP_KEY, CUSTOMER, SECRET, fast, order, run_target, singer_lines, target_config

_SCRIPT = Path(sys.executable).parent / "target-qimen"
TARGET_CMD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "orderhub.connectors.qimen.target"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- singer-sdk standard target tests + read-back tests against the sandbox --------------------------------------
PORT = _free_port()
STANDARD_CONFIG = target_config(type("W", (), {"endpoint": f"http://127.0.0.1:{PORT}/router/qimen/service"}))


class _ReadBack(TargetTestTemplate):
    """Send canonical orders through the target, then read what the sandbox WMS stored."""

    orders: list[dict] = []

    def run(self, config, resource, runner):  # noqa: ANN001
        resource.app.reset()
        path = Path(resource.tmp) / f"{self.name}.singer"
        path.write_text("\n".join(singer_lines(self.orders)) + "\n", encoding="utf-8")
        runner.input_filepath = path
        super().run(config, resource, runner)


class TargetSendsOnlyReleasedOrders(_ReadBack):
    name = "sends_only_released_orders"
    orders = [order(1, warehouse_code="WH-GZ", priority="urgent"), order(2, held=True),
              order(3, status="shipped"), order(4, status="allocated", warehouse_code="WH-BJ")]

    def validate(self) -> None:
        stored = self.resource.app.delivery_orders
        assert sorted(stored) == [order(1)["order_id"], order(4)["order_id"]]
        assert stored[order(1)["order_id"]]["deliveryOrder"]["warehouseCode"] == "WH-GZ"
        assert stored[order(1)["order_id"]]["deliveryOrder"]["isUrgency"] == "Y"
        assert stored[order(4)["order_id"]]["deliveryOrder"]["warehouseCode"] == "WH-BJ"


class TargetDuplicateOrdersInOneStream(_ReadBack):
    name = "duplicate_orders_in_one_stream"
    orders = [order(i) for i in range(3)] * 2

    def validate(self) -> None:
        app = self.resource.app
        assert len(app.delivery_orders) == 3
        assert dict(app.create_calls_by_code) == {order(i)["order_id"]: 2 for i in range(3)}


class _Resource:
    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.app = make_app(app_key=APP_KEY, app_secret=SECRET, customer_id=CUSTOMER, stock={})
        self.server = fast(SandboxServer(self.app, port=PORT)).start()


_Standard = get_target_test_class(
    TargetQimen, config=STANDARD_CONFIG, suite_config=SuiteConfig(),
    custom_suites=[SingerTestSuite(kind="target", tests=[TargetSendsOnlyReleasedOrders,
                                                         TargetDuplicateOrdersInOneStream])])


class TestTargetQimenStandard(_Standard):
    @pytest.fixture(scope="class")
    @classmethod
    def resource(cls, tmp_path_factory):  # noqa: ANN001, ANN206
        res = _Resource(str(tmp_path_factory.mktemp("qimen-singer")))
        yield res
        threading.Thread(target=res.server.stop, daemon=True).start()


# --- the target as users run it -------------------------------------------------------------------------------
def results_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_target_run_twice_leaves_one_delivery_order_per_order(wms, tmp_path):
    orders = [order(i) for i in range(5)]
    run_target(target_config(wms, results_path=str(tmp_path / "r1.jsonl")), orders)
    run_target(target_config(wms, results_path=str(tmp_path / "r2.jsonl")), orders)
    assert sorted(wms.app.delivery_orders) == sorted(o["order_id"] for o in orders)
    assert [r["result"] for r in results_of(tmp_path / "r1.jsonl")] == ["created"] * 5
    second = results_of(tmp_path / "r2.jsonl")
    assert [r["result"] for r in second] == ["unchanged"] * 5
    assert [r["target_ref"] for r in second] == [wms.app.delivery_orders[o["order_id"]]["deliveryOrderId"]
                                                 for o in orders]


def test_target_outage_holds_the_rest_and_rerun_delivers_all_exactly_once(wms, tmp_path):
    orders = [order(i) for i in range(12)]
    wms.app.outage = True
    run_target(target_config(wms, results_path=str(tmp_path / "down.jsonl"), breaker_failure_threshold=3,
                             retry_attempts=2), orders)
    down = results_of(tmp_path / "down.jsonl")
    assert [r["result"] for r in down] == ["failed"] * 3 + ["held"] * 9
    assert all(r["reason"] == "wms_unavailable" for r in down[3:])
    assert len(wms.app.received) == 6
    wms.app.outage = False
    run_target(target_config(wms, results_path=str(tmp_path / "up.jsonl")), orders)
    assert [r["result"] for r in results_of(tmp_path / "up.jsonl")] == ["created"] * 12
    assert dict(wms.app.create_calls_by_code) == {o["order_id"]: 1 for o in orders}


def test_target_survives_records_that_break_the_schema(wms, tmp_path):
    bad = order(1)
    bad["created_at"] = "not a time"
    bad["paid_at"] = None
    bad["lines"][0]["qty"] = "two"
    run_target(target_config(wms, results_path=str(tmp_path / "r.jsonl")), [bad, order(2)])
    results = results_of(tmp_path / "r.jsonl")
    assert [r["result"] for r in results] == ["failed", "created"]
    assert "created_at" in results[0]["message"]
    assert list(wms.app.delivery_orders) == [order(2)["order_id"]]


def test_rerun_after_kill_creates_no_duplicates(wms, tmp_path):
    """SIGKILL the target while the WMS is storing order 4 (its answer never arrives), then run it again."""
    orders = [order(i) for i in range(8)]
    stored_fourth, release = threading.Event(), threading.Event()

    def stall_on_fourth(code, stored):
        if len(wms.app.delivery_orders) == 4:
            stored_fourth.set()
            release.wait(10)

    wms.app.on_create = stall_on_fourth
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(target_config(wms, results_path=str(tmp_path / "run1.jsonl"))))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*TARGET_CMD, "--config", str(cfg)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        proc.stdin.write("\n".join(singer_lines(orders)) + "\n")
        proc.stdin.flush()
        assert stored_fourth.wait(30), "the target never reached the fourth order"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    wms.app.on_create = None
    assert len(wms.app.delivery_orders) == 4
    assert [r["result"] for r in results_of(tmp_path / "run1.jsonl")] == ["created"] * 3  # 4th answer lost

    cfg.write_text(json.dumps(target_config(wms, results_path=str(tmp_path / "run2.jsonl"))))
    done = subprocess.run([sys.executable, "-m", "orderhub.connectors.qimen.target", "--config", str(cfg)],
                          input="\n".join(singer_lines(orders)) + "\n", text=True, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["result"] for r in results_of(tmp_path / "run2.jsonl")] == ["unchanged"] * 4 + ["created"] * 4
    assert sorted(wms.app.delivery_orders) == sorted(o["order_id"] for o in orders)
    assert dict(wms.app.create_calls_by_code) == {**{o["order_id"]: 2 for o in orders[:4]},
                                                  **{o["order_id"]: 1 for o in orders[4:]}}
    assert SECRET not in done.stderr and "13812345678" not in done.stderr


def test_target_records_each_write_in_the_hub(wms, tmp_path):
    from orderhub.connectors.hub.store import HubStore

    hub_url = f"sqlite:///{tmp_path / 'hub.db'}"
    orders = [order(1), order(2, held=True, hold_reasons=[{"code": "insufficient_stock", "message": "缺货"}])]
    run_target(target_config(wms, hub_url=hub_url, run_id="run-1"), orders)
    run_target(target_config(wms, hub_url=hub_url, run_id="run-2"), orders)
    ledger = HubStore(hub_url).delivered("qimen", [o["order_id"] for o in orders])
    first = ledger[order(1)["order_id"]]
    assert (first["result"], first["run_id"], first["attempts"]) == ("unchanged", "run-2", 2)
    assert first["target_ref"] == wms.app.delivery_orders[order(1)["order_id"]]["deliveryOrderId"]
    assert ledger[order(2)["order_id"]]["result"] == "held"
    assert wms.app.create_calls == 1  # the second run found order 1 in the ledger and did not call the WMS
