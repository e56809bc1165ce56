"""Deterministic crash points: ``ORDERHUB_CRASH_AT=<point>:<n>`` kills the process with SIGKILL the n-th time it
passes ``crash_point(point)`` — no clean-up, no ``finally``, exactly like a power cut or an OOM kill.

The data path calls :func:`crash_point` where a crash hurts most (:data:`POINTS`). Without the variable (always,
outside the crash suite) a call is one comparison.
"""
from __future__ import annotations

import os
import signal
import threading

#: Where the data path can be killed, in the order a batch passes them.
POINTS = {
    "hub_migration": "a new hub's tables created by the migration, not committed",
    "source_batch": "a source batch was read (records in memory, nothing stored)",
    "hub_transaction": "inside the hub transaction, orders written, not committed",
    "erp_transaction": "inside the ERP target transaction, rows and write log written, not committed",
    "wms_call": "the WMS accepted a delivery order, its result not yet recorded in the hub",
    "bookmark": "every target write of the batch recorded, the source bookmark not yet committed",
}


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, n = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"ORDERHUB_CRASH_AT: unknown crash point {name!r}; known: {', '.join(POINTS)}")
    return name, int(n or 1)


_target = _parse(os.environ.get("ORDERHUB_CRASH_AT"))
_hits: dict[str, int] = {}
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """SIGKILL this process if ``ORDERHUB_CRASH_AT`` names this point and this is its n-th pass."""
    if _target is None or name != _target[0]:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] != _target[1]:
            return
    os.kill(os.getpid(), signal.SIGKILL)
