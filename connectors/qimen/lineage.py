"""Where target writes are recorded: the hub store's lineage (one function, so wiring it is one place)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("orderhub.qimen")

HUB_RESULTS = ("created", "updated", "unchanged", "failed", "held")
HUB_KEYS = ("order_id", "result", "target_ref", "message")


def record_target_writes(hub_url: str | None, run_id: str, results: Sequence[dict[str, Any]],
                         target: str = "qimen") -> int:
    """Record each write's result and the WMS's deliveryOrderId in the hub (``HubStore.record_target_writes``).

    Results the hub does not know (``skipped``: status not sendable) are not recorded. Returns how many were.
    """
    rows = [{k: r.get(k) for k in HUB_KEYS} for r in results if r.get("result") in HUB_RESULTS]
    if not hub_url or not rows:
        return 0
    from orderhub.connectors.hub.store import HubStore  # the lead's hub store; imported only when used

    store = HubStore(hub_url)
    try:
        store.record_target_writes(run_id, target, rows)
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    return len(rows)
