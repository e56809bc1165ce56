"""The targets' only contact with the hub store: record each write in lineage, read the delivery ledger
(``HubStore.record_target_writes`` / ``HubStore.delivered``). One :class:`HubStore` per URL and process."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

HUB_RESULTS = ("created", "updated", "unchanged", "failed", "held")
HUB_KEYS = ("order_id", "result", "target_ref", "message", "payload_hash")
DELIVERED = ("created", "updated", "unchanged")

_stores: dict[str, Any] = {}
_lock = threading.Lock()


def hub_store(hub_url: str) -> Any:
    """The process's :class:`HubStore` for ``hub_url`` (opening one runs the migrations check)."""
    from orderhub.connectors.hub.store import HubStore

    with _lock:
        if hub_url not in _stores:
            _stores[hub_url] = HubStore(hub_url)
        return _stores[hub_url]


def record_target_writes(hub_url: str | None, run_id: str, target: str, results: Sequence[dict[str, Any]]) -> int:
    """Record each write (``{order_id, result, target_ref, message, payload_hash}``) in the hub's lineage.

    Results the hub does not know (e.g. ``skipped``) are not recorded; without ``hub_url`` nothing is.
    Returns how many were recorded."""
    rows = [{k: r.get(k) for k in HUB_KEYS} for r in results if r.get("result") in HUB_RESULTS]
    if not hub_url or not rows:
        return 0
    hub_store(hub_url).record_target_writes(run_id, target, rows)
    return len(rows)


def delivered_refs(hub_url: str | None, target: str, order_ids: Sequence[str]) -> dict[str, str]:
    """``{order_id: target_ref}`` of the orders the hub's ledger says ``target`` already has."""
    if not hub_url or not order_ids:
        return {}
    rows = hub_store(hub_url).delivered(target, list(order_ids))
    return {oid: row["target_ref"] for oid, row in rows.items()
            if row.get("result") in DELIVERED and row.get("target_ref")}
