"""Per-partner limits as Prefect global concurrency limits (GCLs), so no mix of runs can flood a platform.

Why two limits per partner, and why a token bucket stays in the connector (prefect.md §3, measured):

* A GCL is **shared by every process** that talks to the same Prefect server: a backfill, the scheduled sync and
  a replay of the same partner together hold at most ``max_in_flight`` slots of ``partner:<name>`` — something
  an in-process token bucket cannot see.
* ``rate_limit`` on a GCL with slot decay (``partner:<name>:qps``) is a **coarse ceiling**, not a QPS shaper:
  each acquisition is an API round trip, and the server answers 423 with a ``Retry-After`` that grows with the
  number of waiters (5/s limit → 3.5 calls/s sequentially, 0.7/s with 30 concurrent waiters). A decaying slot is
  also not an in-flight count (slots decay while a call still runs), hence two limits, not one with both.
* Precise per-credential QPS stays in the connector: ``orderhub.connectors.common.ratelimit.TokenBucket``.

So take one slot per **page or batch call** (not per order; ~25 ms of orchestration per acquisition):

    with partner_slot("taobao"):
        page = client.fetch_page(...)

``ensure_partner_limits`` creates or updates the limits idempotently (by name) from a dict or a YAML file:

    partners:
      taobao: {max_in_flight: 4, qps: 10}      # qps optional; burst defaults to ceil(qps)
      jd:     {max_in_flight: 2, qps: 5, burst: 5}
"""
from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from orderhub.connectors.common.errors import ConfigError

_PARTNER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def limit_name(partner: str) -> str:
    """Name of the in-flight limit of ``partner`` (``partner:taobao``)."""
    if not _PARTNER.match(partner or ""):
        raise ConfigError(f"{partner!r} is not a partner name (lowercase letters, digits, - and _)",
                          key="partners")
    return f"partner:{partner}"


def qps_limit_name(partner: str) -> str:
    """Name of the rate ceiling of ``partner`` (``partner:taobao:qps``, a GCL with slot decay)."""
    return f"{limit_name(partner)}:qps"


def parse_partner_limits(spec: Mapping[str, Any] | str | Path) -> dict[str, dict[str, float]]:
    """Validate a limits spec (dict or YAML path) → ``{partner: {max_in_flight, qps, burst}}``.
    A bad entry raises :class:`ConfigError` naming the key."""
    if isinstance(spec, (str, Path)):
        from orderhub.connectors.common.config import load_yaml

        spec = load_yaml(spec) or {}
    partners = spec.get("partners", spec) if isinstance(spec, Mapping) else None
    if not isinstance(partners, Mapping):
        raise ConfigError("must be a mapping of partner name → limits", key="partners")
    out: dict[str, dict[str, float]] = {}
    for partner, cfg in partners.items():
        key = f"partners.{partner}"
        limit_name(str(partner))
        if not isinstance(cfg, Mapping):
            raise ConfigError("must be a mapping with max_in_flight and optional qps/burst", key=key)
        unknown = set(cfg) - {"max_in_flight", "qps", "burst"}
        if unknown:
            raise ConfigError(f"unknown setting(s) {sorted(unknown)}", key=key)
        n = cfg.get("max_in_flight")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError("must be an integer ≥ 1", key=f"{key}.max_in_flight")
        entry: dict[str, float] = {"max_in_flight": n}
        qps = cfg.get("qps")
        if qps is not None:
            if not isinstance(qps, (int, float)) or isinstance(qps, bool) or qps <= 0:
                raise ConfigError("must be a number > 0", key=f"{key}.qps")
            burst = cfg.get("burst", max(1, math.ceil(qps)))
            if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
                raise ConfigError("must be an integer ≥ 1", key=f"{key}.burst")
            entry.update(qps=float(qps), burst=burst)
        out[str(partner)] = entry
    return out


def ensure_partner_limits(spec: Mapping[str, Any] | str | Path) -> dict[str, dict[str, Any]]:
    """Create or update (by name, never duplicating) the GCLs of every partner in ``spec``.

    Returns ``{limit name: {"limit": n, "slot_decay_per_second": d}}`` as now stored on the server. An existing
    limit keeps its active/inactive switch (an admin may have paused it in the UI on purpose)."""
    from prefect.client.orchestration import get_client

    wanted: dict[str, tuple[int, float]] = {}
    for partner, cfg in parse_partner_limits(spec).items():
        wanted[limit_name(partner)] = (int(cfg["max_in_flight"]), 0.0)
        if "qps" in cfg:
            wanted[qps_limit_name(partner)] = (int(cfg["burst"]), float(cfg["qps"]))
    out: dict[str, dict[str, Any]] = {}
    with get_client(sync_client=True) as client:
        for name, (limit, decay) in wanted.items():
            client.upsert_global_concurrency_limit_by_name(name, limit, slot_decay_per_second=decay)
            got = client.read_global_concurrency_limit_by_name(name)
            out[name] = {"limit": got.limit, "slot_decay_per_second": got.slot_decay_per_second,
                         "active": got.active}
    _forget_known_limits()
    return out


# names of the partner limits on the server, looked up at most once a minute per process (not once per slot)
_CACHE_SECONDS = 60.0
_known: set[str] = set()
_known_lock = threading.Lock()
_known_at: float | None = None


def _forget_known_limits() -> None:
    global _known_at
    with _known_lock:
        _known_at = None


def _existing_limits() -> set[str]:
    global _known_at
    with _known_lock:
        if _known_at is None or time.monotonic() - _known_at > _CACHE_SECONDS:
            from prefect.client.orchestration import get_client

            names: set[str] = set()
            with get_client(sync_client=True) as client:
                offset = 0
                while True:
                    page = client.read_global_concurrency_limits(limit=200, offset=offset)
                    names.update(g.name for g in page if g.name.startswith("partner:") and g.active)
                    if len(page) < 200:
                        break
                    offset += 200
            _known.clear()
            _known.update(names)
            _known_at = time.monotonic()
        return set(_known)


@contextlib.contextmanager
def partner_slot(partner: str, *, occupy: int = 1, timeout_seconds: float | None = None) -> Iterator[None]:
    """Hold ``occupy`` slot(s) of ``partner:<partner>`` for the duration of one page/batch call, after taking
    one token of ``partner:<partner>:qps`` when that limit exists.

    A partner without limits on the server runs unthrottled (no API call per slot). ``TimeoutError`` if no slot
    frees within ``timeout_seconds``. Call it inside flow or task runs (it talks to the Prefect API)."""
    from prefect.concurrency.sync import concurrency, rate_limit

    name, qps_name = limit_name(partner), qps_limit_name(partner)
    existing = _existing_limits()
    if qps_name in existing:
        rate_limit(qps_name, occupy=occupy, timeout_seconds=timeout_seconds, strict=True)
    if name not in existing:
        yield
        return
    with concurrency(name, occupy=occupy, timeout_seconds=timeout_seconds, strict=True):
        yield


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m orderhub.infra.concurrency",
                                description="Create or update the per-partner Prefect concurrency limits.")
    p.add_argument("spec", nargs="?", default=str(Path(__file__).with_name("partner_limits.yaml")),
                   help="YAML file (default: infra/partner_limits.yaml)")
    a = p.parse_args(argv)
    try:
        for name, got in ensure_partner_limits(a.spec).items():
            decay = f", decays {got['slot_decay_per_second']}/s" if got["slot_decay_per_second"] else ""
            print(f"{name}: limit {got['limit']}{decay}{'' if got['active'] else ' (inactive)'}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
