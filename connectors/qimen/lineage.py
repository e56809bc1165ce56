"""The target's only contact with the hub store: record each write in lineage, read the delivery ledger."""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("orderhub.qimen")

HUB_RESULTS = ("created", "updated", "unchanged", "failed", "held")
HUB_KEYS = ("order_id", "result", "target_ref", "message", "payload_hash")
DELIVERED = ("created", "updated", "unchanged")

_stores: dict[str, Any] = {}
_lock = threading.Lock()


def _store(hub_url: str) -> Any:
    """One :class:`HubStore` per URL and process (opening one runs the migrations check)."""
    from orderhub.connectors.hub.store import HubStore

    with _lock:
        if hub_url not in _stores:
            _stores[hub_url] = HubStore(hub_url)
        return _stores[hub_url]


def record_target_writes(hub_url: str | None, run_id: str, results: Sequence[dict[str, Any]],
                         target: str = "qimen") -> int:
    """Record each write's result and the WMS's deliveryOrderId in the hub (``HubStore.record_target_writes``).

    Results the hub does not know (``skipped``: status not sendable) are not recorded. Returns how many were.
    """
    rows = [{k: r.get(k) for k in HUB_KEYS} for r in results if r.get("result") in HUB_RESULTS]
    if not hub_url or not rows:
        return 0
    _store(hub_url).record_target_writes(run_id, target, rows)
    return len(rows)


def delivered_refs(hub_url: str | None, order_ids: Sequence[str], target: str = "qimen") -> dict[str, str]:
    """``{order_id: deliveryOrderId}`` of the orders the hub's ledger says the WMS already has."""
    if not hub_url or not order_ids:
        return {}
    rows = _store(hub_url).delivered(target, list(order_ids))
    return {oid: row["target_ref"] for oid, row in rows.items()
            if row.get("result") in DELIVERED and row.get("target_ref")}
