"""Pieces the marketplace sandboxes share: time text, shop names, fault settings, the app QPS bans
(:class:`BanLimiter` for TOP/JOS, :class:`QpsBan` for 1688/Doudian), the order book and call log of the TOP/JOS
sandboxes, and the ground-truth/token helpers of the 1688/Doudian ones.
"""
from __future__ import annotations

import math
import random
import threading
import time
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from orderhub.infra.sandboxes.base import Faults

SHANGHAI = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, SHANGHAI).strftime(TIME_FORMAT)


def parse(text: str) -> float:
    return datetime.strptime(text[:19], TIME_FORMAT).replace(tzinfo=SHANGHAI).timestamp()


def as_epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return parse(str(value))


def shop_names(shops: Any, prefix: str) -> list[str]:
    """``3`` → ``[prefix1, prefix2, prefix3]``; ``"a,b"`` or a list → as given."""
    if isinstance(shops, int):
        return [f"{prefix}{i}" for i in range(1, shops + 1)]
    if isinstance(shops, str):
        return [s.strip() for s in shops.split(",") if s.strip()]
    return [str(s) for s in shops]


def faults_from(settings: dict[str, Any]) -> Faults:
    """Build the base :class:`Faults` from flat settings (``error_rate``, ``timeout_rate``, ``fault_seed``…)."""
    keys = ("error_rate", "error_status", "timeout_rate", "timeout_seconds", "slow_rate", "slow_seconds",
            "malformed_rate")
    kw = {k: settings.pop(k) for k in keys if k in settings}
    return Faults(seed=settings.pop("fault_seed", None), **kw)


@dataclass
class BanLimiter:
    """An app may make ``qps_limit`` calls in any one-second window; the call over the limit starts a ban of
    ``ban_seconds``. A call during a ban is rejected with the seconds still left and does **not** extend the
    ban; such calls are counted in :attr:`calls_during_ban` (a well-behaved client leaves it at 0)."""

    qps_limit: float = 0.0
    ban_seconds: float = 30.0
    clock: Callable[[], float] = time.time
    bans: list[tuple[float, float]] = field(default_factory=list)
    calls_during_ban: int = 0
    accepted: int = 0
    _recent: dict[str, deque[float]] = field(default_factory=dict)
    _until: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, app: str) -> int | None:
        """``None`` if the call may proceed, else the whole seconds of ban left (rounded up)."""
        with self._lock:
            now = self.clock()
            until = self._until.get(app, 0.0)
            if now < until:
                self.calls_during_ban += 1
                return max(1, math.ceil(until - now))
            if self.qps_limit > 0:
                q = self._recent.setdefault(app, deque())
                while q and q[0] <= now - 1.0:
                    q.popleft()
                if len(q) >= self.qps_limit:
                    self._until[app] = now + self.ban_seconds
                    self.bans.append((now, now + self.ban_seconds))
                    return max(1, math.ceil(self.ban_seconds))
                q.append(now)
            self.accepted += 1
            return None

    def banned(self, app: str) -> bool:
        return self.clock() < self._until.get(app, 0.0)


class OrderBook:
    """Orders of every shop, indexed by modified second, so a window query is a bisect and a slice."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}     # id → platform-shaped order (mutable)
        self.shop_of: dict[str, str] = {}
        self.modified: dict[str, int] = {}
        self.created: dict[str, int] = {}
        self._index: dict[str, list[tuple[int, str]]] = {}

    def put(self, shop: str, oid: str, order: dict[str, Any], created: int, modified: int, *,
            bulk: bool = False) -> None:
        """Add an order; with ``bulk`` the index is left unsorted until :meth:`reindex` (fast seeding)."""
        self.orders[oid], self.shop_of[oid], self.created[oid] = order, shop, created
        self.modified[oid] = modified
        idx = self._index.setdefault(shop, [])
        if bulk:
            idx.append((modified, oid))
        else:
            insort(idx, (modified, oid))

    def reindex(self) -> None:
        for idx in self._index.values():
            idx.sort()

    def touch(self, oid: str, modified: int) -> None:
        idx = self._index[self.shop_of[oid]]
        old = (self.modified[oid], oid)
        del idx[bisect_left(idx, old)]
        self.modified[oid] = modified
        insort(idx, (modified, oid))

    def between(self, shop: str, start: float, end: float, *, newest_first: bool = True) -> list[str]:
        """Ids of ``shop`` modified in ``[start, end]`` (whole seconds, both ends included)."""
        idx = self._index.get(shop, [])
        lo = bisect_left(idx, (math.ceil(start), ""))
        hi = bisect_right(idx, (math.floor(end), "\uffff"))
        ids = [oid for _, oid in idx[lo:hi]]
        return ids[::-1] if newest_first else ids

    def ids_modified_between(self, start: float, end: float, shop: str | None = None) -> set[str]:
        shops = [shop] if shop else list(self._index)
        return {oid for s in shops for oid in self.between(s, start, end)}


class CallLog:
    """Every call the sandbox answered: (arrival time, app, method, shop, error code or 0)."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, str, str, str | None, int | str]] = []
        self._lock = threading.Lock()

    def add(self, *entry: Any) -> None:
        with self._lock:
            self.entries.append(entry)  # type: ignore[arg-type]

    def count(self, method: str | None = None, code: int | str | None = None) -> int:
        return sum(1 for e in self.entries if (method is None or e[2] == method) and (code is None or e[4] == code))


class QpsBan:
    """App-level QPS limit with a ban (shared by the marketplace sandboxes).

    More than ``qps`` calls within one second starts a ban of ``ban_seconds``; while banned every call is
    refused and counted in :attr:`calls_during_ban` (and, with ``extend``, pushes the ban end out again).
    """

    def __init__(self, qps: float, ban_seconds: float, *, extend: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.qps, self.ban_seconds, self.extend, self.clock = qps, ban_seconds, extend, clock
        self._recent: deque[float] = deque()
        self.ban_until = 0.0
        self.calls_during_ban = 0
        self.bans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def check(self) -> float | None:
        """``None`` if the call may pass, else the seconds the ban still lasts."""
        with self._lock:
            now = self.clock()
            if now < self.ban_until:
                self.calls_during_ban += 1
                if self.extend:
                    self.ban_until = now + self.ban_seconds
                return self.ban_until - now
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            self._recent.append(now)
            if self.qps and len(self._recent) > self.qps:
                self.ban_until = now + self.ban_seconds
                self.bans.append((now, self.ban_until))
                self._recent.clear()
                return self.ban_seconds
            return None


def stats_of(app: Any) -> dict[str, Any]:
    """What ``GET /_sandbox/stats`` answers: calls, bans, calls during a ban, number of orders."""
    with app.lock:
        orders = len(app.book.orders)
    times = sorted(e[0] for e in app.log.entries)
    busiest, lo = 0, 0
    for hi, t in enumerate(times):           # most calls that arrived within any one second
        while times[lo] <= t - 1.0:
            lo += 1
        busiest = max(busiest, hi - lo + 1)
    return {"calls": len(app.log.entries), "accepted": app.log.count(code=0) + app.log.count(code="0"),
            "busiest_second": busiest, "first_call": times[0] if times else None,
            "last_call": times[-1] if times else None,
            "bans": [[round(a, 3), round(b, 3)] for a, b in app.limiter.bans],
            "calls_during_ban": app.limiter.calls_during_ban, "orders": orders,
            "faults": dict(app.faults.injected)}


def pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


class BookGroundTruth:
    """Ground truth of a sandbox that keeps its orders in ``self.book`` (:class:`OrderBook`, each order with a
    ``modified`` text) under ``self.lock``."""

    book: OrderBook
    lock: Any

    def all_ids(self, shop: str | None = None) -> set[str]:
        with self.lock:
            return {oid for oid, s in self.book.shop_of.items() if shop is None or s == shop}

    def orders_modified_between(self, start: Any, end: Any, shop: str | None = None) -> set[str]:
        """Ids of the orders (of ``shop``) whose modified second is in ``[start, end]``."""
        with self.lock:
            return self.book.ids_modified_between(as_epoch(start), as_epoch(end), shop)

    def versions(self, shop: str | None = None) -> set[tuple[str, str]]:
        """``(id, modified)`` of every order now: what a complete sync history must have emitted last."""
        with self.lock:
            return {(oid, o["modified"]) for oid, o in self.book.orders.items()
                    if shop is None or self.book.shop_of[oid] == shop}


class TokenShops:
    """Tokens, ban counter and background churn of a sandbox with ``self.tokens`` = ``{token: (shop, expires)}``,
    ``self.orders`` (each with ``shop``), ``self.limiter`` (:class:`QpsBan`) and ``advance``/``add_orders``."""

    tokens: dict[str, tuple[str, float]]
    orders: dict[str, dict]
    limiter: QpsBan
    shops: list[str]
    lock: Any
    clock: Callable[[], float]
    auto_advance_seconds: float
    _last_auto: float

    def token_of(self, shop: str) -> str:
        return next(t for t, (s, _) in self.tokens.items() if s == shop)

    def expire_token(self, shop: str) -> None:
        """The shop's token is now expired."""
        with self.lock:
            tok = self.token_of(shop)
            self.tokens[tok] = (shop, self.clock() - 1.0)

    def order_ids(self, shop: str | None = None) -> set[str]:
        return {oid for oid, o in self.orders.items() if shop is None or o["shop"] == shop}

    @property
    def calls_during_ban(self) -> int:
        return self.limiter.calls_during_ban

    def _auto_advance(self) -> None:
        if self.auto_advance_seconds > 0 and self.clock() - self._last_auto >= self.auto_advance_seconds:
            self._last_auto = self.clock()
            for shop in self.shops:
                self.advance(1, shop)  # type: ignore[attr-defined]
                self.add_orders(shop, 1)  # type: ignore[attr-defined]
