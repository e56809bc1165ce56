"""Send canonical orders to a QIMEN WMS as delivery orders, exactly once each, behind a circuit breaker.

:class:`QimenDeliveryWriter` is the whole sending logic; ``target-qimen`` (Singer) and the Prefect flows are
thin users of it. One result dict per order::

    {order_id, result, target_ref, message, reason, delivery_order_code, warehouse_code, payload_hash}

``result`` is ``created`` (new in the WMS), ``unchanged`` (the WMS already had this deliveryOrderCode — a re-run
or a retry after a lost answer; no second shipment), ``held`` (not sent: held by the rules, or the circuit is
open — reason ``wms_unavailable``), ``failed`` (sent and refused, or not sendable data) or ``skipped`` (status
not in the sendable set; not a WMS matter). ``retryable`` is true when the WMS (or our access to it) failed,
not the order: the caller must send it again later. ``target_ref`` is the WMS's deliveryOrderId;
``payload_hash`` a BLAKE2b of the XML body sent. With a hub, orders its delivery ledger already lists are
``unchanged`` without a call (``skip_delivered``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from orderhub.connectors.common.errors import (
    AuthError,
    ConfigError,
    OrderhubError,
    PermissionDenied,
    RecordError,
    SignatureError,
    TransientError,
)
from orderhub.connectors.qimen.breaker import CircuitBreaker
from orderhub.connectors.qimen.client import QimenClient, to_body
from orderhub.connectors.qimen.delivery import (
    DEFAULT_ORDER_TYPE_MAP,
    DEFAULT_PLATFORM_CODES,
    DeliverySettings,
    build_delivery_order,
    delivery_order_code,
)
from orderhub.connectors.common.lineage import delivered_refs, record_target_writes
from orderhub.infra.faults.crash import crash_point

log = logging.getLogger("orderhub.qimen")

SENDABLE_STATUSES = ("confirmed", "allocated")
WMS_UNAVAILABLE = "wms_unavailable"
# Errors that say the WMS (or our access to it) is down for every order, not that one order is wrong.
SYSTEMIC = (TransientError, SignatureError, AuthError, PermissionDenied)

DEFAULTS: dict[str, Any] = {
    "method_style": "full", "api_version": "2.0", "timeout_seconds": 15.0, "retry_attempts": 4,
    "retry_base_seconds": 0.5, "retry_cap_seconds": 10.0, "max_qps": None,
    "breaker_failure_threshold": 5, "breaker_cooldown_seconds": 60.0,
    "sendable_statuses": list(SENDABLE_STATUSES), "logistics_code": "OTHER", "code_prefix": "",
    "urgent_priorities": ["urgent"], "inventory_type": "ZP", "hub_batch_size": 100, "skip_delivered": True,
}


class QimenDeliveryWriter:
    """Build, send and account for delivery orders (reference §5.3/§5.4). Not thread-safe: one per run."""

    def __init__(self, client: QimenClient, settings: DeliverySettings, *,
                 sendable_statuses: Iterable[str] = SENDABLE_STATUSES, breaker: CircuitBreaker | None = None,
                 hub_url: str | None = None, run_id: str | None = None, target: str = "qimen",
                 results_path: str | Path | None = None, hub_batch_size: int = 100,
                 skip_delivered: bool = True) -> None:
        self.client = client
        self.settings = settings
        self.sendable_statuses = frozenset(sendable_statuses)
        self.breaker = breaker or CircuitBreaker()
        self.hub_url = hub_url
        self.run_id = run_id or uuid.uuid4().hex
        self.target = target
        self.hub_batch_size = hub_batch_size
        self.skip_delivered = skip_delivered and bool(hub_url)
        self.counts: Counter[str] = Counter()
        self._pending: list[dict[str, Any]] = []
        self._results_file: TextIO | None = None
        if results_path:
            p = Path(results_path)
            p.parent.mkdir(parents=True, exist_ok=True)
            self._results_file = p.open("a", encoding="utf-8", buffering=1)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, client: QimenClient | None = None,
                    breaker: CircuitBreaker | None = None) -> "QimenDeliveryWriter":
        """Build from the ``target-qimen`` settings (see README); missing optional keys take the defaults."""
        c = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        for key in ("url", "app_key", "app_secret", "customer_id", "owner_code"):
            if not c.get(key):
                raise ConfigError("is required", key=key)
        client = client or QimenClient(
            c["url"], c["app_key"], c["app_secret"], c["customer_id"], method_style=c["method_style"],
            version=c["api_version"], timeout=float(c["timeout_seconds"]), retry_attempts=int(c["retry_attempts"]),
            retry_base=float(c["retry_base_seconds"]), retry_cap=float(c["retry_cap_seconds"]),
            max_qps=c["max_qps"], target_app_key=c.get("target_app_key"))
        optional = {k: c[k] for k in ("default_warehouse_code", "shop_nick") if c.get(k)}
        if c.get("order_type_map"):
            optional["order_type_map"] = {**DEFAULT_ORDER_TYPE_MAP, **c["order_type_map"]}
        if c.get("platform_codes"):
            optional["platform_codes"] = {**DEFAULT_PLATFORM_CODES, **c["platform_codes"]}
        for key in ("skip_line_statuses", "skip_refund_statuses"):
            if c.get(key) is not None:
                optional[key] = tuple(c[key])
        settings = DeliverySettings(
            owner_code=c["owner_code"], logistics_code=c["logistics_code"], sender=dict(c.get("sender_info") or {}),
            urgent_priorities=tuple(c["urgent_priorities"]), inventory_type=c["inventory_type"],
            code_prefix=c["code_prefix"], **optional)
        breaker = breaker or CircuitBreaker(int(c["breaker_failure_threshold"]),
                                            float(c["breaker_cooldown_seconds"]))
        return cls(client, settings, sendable_statuses=c["sendable_statuses"], breaker=breaker,
                   hub_url=c.get("hub_url"), run_id=c.get("run_id"), results_path=c.get("results_path"),
                   hub_batch_size=int(c["hub_batch_size"]), skip_delivered=bool(c["skip_delivered"]))

    # -- sending --
    def send(self, orders: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Send each order (in order) and return one result dict per order; lineage is flushed at the end."""
        orders = list(orders)
        known = self._ledger([str(o.get("order_id") or "") for o in orders])
        results = [self.send_one(o, _known=known) for o in orders]
        self.flush()
        return results

    def send_one(self, order: Mapping[str, Any], *, _known: dict[str, str] | None = None) -> dict[str, Any]:
        """Decide, build and send one order; never raises for a bad order or an unavailable WMS."""
        known = _known if _known is not None else self._ledger([str(order.get("order_id") or "")])
        result = self._decide_and_send(order, known)
        self.counts[result["result"]] += 1
        if self._results_file is not None:
            self._results_file.write(json.dumps(result, ensure_ascii=False) + "\n")
        self._pending.append(result)
        if len(self._pending) >= self.hub_batch_size:
            self.flush()
        return result

    def _ledger(self, order_ids: list[str]) -> dict[str, str]:
        return delivered_refs(self.hub_url, self.target, [i for i in order_ids if i]) if self.skip_delivered else {}

    def _decide_and_send(self, order: Mapping[str, Any], known: dict[str, str]) -> dict[str, Any]:
        oid = str(order.get("order_id") or "")
        base = {"order_id": oid or None, "target_ref": None, "warehouse_code": order.get("warehouse_code")}
        try:
            code = delivery_order_code(oid, self.settings.code_prefix)
        except RecordError as exc:
            return {**base, "result": "failed", "reason": exc.code, "message": exc.message,
                    "delivery_order_code": None}
        base["delivery_order_code"] = code
        if oid in known:  # the hub's ledger says the WMS has it: no call, and a later hold cannot hide that
            return {**base, "result": "unchanged", "reason": None, "target_ref": known[oid],
                    "message": "already delivered (hub ledger)"}
        if order.get("held"):
            reasons = [r for r in (order.get("hold_reasons") or []) if isinstance(r, Mapping)]
            codes = ",".join(str(r.get("code")) for r in reasons) or "held"
            text = "; ".join(str(r.get("message") or r.get("code")) for r in reasons)
            return {**base, "result": "held", "reason": codes, "message": f"held by rules: {text or codes}"}
        status = order.get("status")
        if status not in self.sendable_statuses:
            return {**base, "result": "skipped", "reason": "status_not_sendable",
                    "message": f"status {status!r} is not in {sorted(self.sendable_statuses)}"}
        try:
            request = build_delivery_order(order, self.settings)
        except RecordError as exc:
            result = "held" if exc.code == "no_shippable_lines" else "failed"
            return {**base, "result": result, "reason": exc.code, "message": exc.message}
        if not self.breaker.allow():
            return {**base, "result": "held", "reason": WMS_UNAVAILABLE, "retryable": True,
                    "message": f"not sent: the WMS failed {self.breaker.consecutive_failures} times in a row "
                               f"(last: {self.breaker.last_error}); circuit open, next probe in "
                               f"{self.breaker.seconds_until_probe():.0f}s"}
        base["payload_hash"] = hashlib.blake2b(to_body(request), digest_size=16).hexdigest()
        try:
            answer = self.client.create_delivery_order(request)
        except SYSTEMIC as exc:
            self.breaker.record_failure(f"{exc.code}: {exc.message}")
            log.warning("QIMEN create %s failed (%s); breaker %s", code, exc.code, self.breaker)
            return {**base, "result": "failed", "reason": exc.code, "message": exc.message, "retryable": True}
        except OrderhubError as exc:
            self.breaker.record_success()  # the WMS answered: it is up, this order is what it refused
            log.warning("QIMEN refused %s: %s", code, exc.message)
            return {**base, "result": "failed", "reason": exc.code, "message": exc.message}
        self.breaker.record_success()
        crash_point("wms_call")
        return {**base, "result": "unchanged" if answer.duplicate else "created", "reason": None,
                "target_ref": answer.delivery_order_id,
                "warehouse_code": answer.warehouse_code or base["warehouse_code"],
                "message": answer.message or ("already in the WMS" if answer.duplicate else "created")}

    # -- lineage and teardown --
    def flush(self) -> None:
        """Record pending results in the hub (when ``hub_url`` is set)."""
        pending, self._pending = self._pending, []
        if pending:
            record_target_writes(self.hub_url, self.run_id, self.target, pending)

    def summary(self) -> dict[str, int]:
        return {k: self.counts.get(k, 0) for k in ("created", "unchanged", "held", "failed", "skipped")}

    def close(self) -> None:
        self.flush()
        if self._results_file is not None:
            self._results_file.close()
            self._results_file = None
        self.client.close()

    def __enter__(self) -> "QimenDeliveryWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
