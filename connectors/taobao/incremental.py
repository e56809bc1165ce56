"""Incremental reading for modified-time order APIs of TOP-lineage gateways (Taobao TOP, JD JOS).

Both platforms list the orders modified in ``[start, end]`` (second precision, both ends inclusive), newest
first, and the list moves while you page through it: an order modified mid-sync leaves the window and every
older row slides one place up. TOP's doc for ``taobao.trades.sold.increment.get`` therefore says to page from
the last page backwards ("必须采用倒序的分页方式（从最后一页往回取）才能避免漏单问题"; reference §1.3). This
module holds the pieces both connectors share:

* :func:`page_backwards` — loss-free paging of one window;
* :func:`ordered_prefetch` — fetch several windows in parallel, hand them out in order;
* :class:`AppGate` — the per-app pacing (:class:`TokenBucket`) and the ban the platform announced.

They are platform-neutral; the JD connector imports them from here. The windows and the edge dedupe
(:func:`time_windows`, :class:`EdgeDedupe`, :func:`record_digest`) are in :mod:`orderhub.connectors.common.incremental`,
shared with the 1688/Douyin taps, and re-exported here.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from orderhub.connectors.common.errors import RateLimitedError
from orderhub.connectors.common.incremental import EdgeDedupe, record_digest, time_windows
from orderhub.connectors.common.ratelimit import TokenBucket

__all__ = ["AppGate", "EdgeDedupe", "WindowNotStable", "ordered_prefetch", "page_backwards", "record_digest",
           "time_windows"]

log = logging.getLogger("orderhub.incremental")
T = TypeVar("T")
R = TypeVar("R")


# --- paging -----------------------------------------------------------------------------------------------------
from orderhub.connectors.common.incremental import WindowNotStable  # noqa: E402  (shared with 1688/Douyin)


def page_backwards(fetch_page: Callable[[int], tuple[list[T], int]], page_size: int, *,
                   attempts: int = 3) -> list[T]:
    """Read every row of one window from an API sorted newest-first, without losing rows that move.

    ``fetch_page(page_no)`` returns ``(rows, total)``. Page 1 gives the total, then pages are read from the last
    one back to page 2. A row that leaves the window while we page (it was modified) only moves *older* rows to
    lower page numbers, which are still to be read, so nothing is skipped; the rows of page 1 are read again at
    the end unless every answer reported the same total (then nothing moved). If the total *grows* (rows
    entered: the window reaches into the present) the window is read again, ``attempts`` times at most.
    The result may hold a row twice or an older version of a row; callers deduplicate (:class:`EdgeDedupe`).
    """
    for _ in range(max(1, attempts)):
        first, total = fetch_page(1)
        pages = math.ceil(total / page_size) if total else 0
        if pages <= 1:
            return list(first)
        rows: list[T] = []
        moved = grew = False
        for page_no in range(pages, 1, -1):
            got, t = fetch_page(page_no)
            rows.extend(got)
            moved |= t != total
            grew |= t > total
        if grew:
            log.info("window grew while paging (%d rows at start); reading it again", total)
            continue
        if moved:
            got, t = fetch_page(1)
            rows.extend(got)
            if t > total:
                continue
        else:
            rows.extend(first)
        return rows
    raise WindowNotStable(f"rows kept entering the window while paging ({attempts} attempts)")


# --- parallel windows -------------------------------------------------------------------------------------------
def ordered_prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` in the order of ``items``, computing up to ``workers`` ahead in threads.
    An exception is raised when its item's turn comes; later work is cancelled."""
    if workers <= 1:
        for it in items:
            yield it, fn(it)
        return
    source = iter(items)
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="window")
    pending: deque[tuple[T, Future[R]]] = deque()
    try:
        for it in source:
            pending.append((it, ex.submit(fn, it)))
            if len(pending) >= workers * 2:
                break
        while pending:
            it, fut = pending.popleft()
            result = fut.result()
            nxt = next(source, _END)
            if nxt is not _END:
                pending.append((nxt, ex.submit(fn, nxt)))  # type: ignore[arg-type]
            yield it, result
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


_END: Any = object()


# --- pacing -----------------------------------------------------------------------------------------------------
class AppGate:
    """Client-side limiter of one app on one gateway, shared by every shop and thread that uses the app.

    ``qps`` is the rate the platform allows the app. Two rules, both needed:

    * **pace** — a :class:`TokenBucket` spaces the calls at ``qps`` (burst 1.2: never two calls back to back, but
      a thread that overslept its slot by a few ms does not lose it, so the pace does not drift below ``qps``);
    * **window** — the gateway counts calls *arriving* in any one second, and a call may arrive late (OS or
      network stall) and land among later ones. A call arrives between its send and its answer, so a new call
      is sent only while fewer than ``qps`` calls are in flight or were answered within the last second. Then no
      one-second window at the gateway can hold more than ``qps`` calls, whatever the delays; the cost is that
      a call holds its slot for 1 s plus its round trip (throughput ≈ qps / (1 + round trip)).

    When the platform still announces a ban ("This ban will last for N more seconds") :meth:`ban` closes the
    gate for N+1 s: no thread calls before it reopens, so the ban is never extended; a ban longer than
    ``max_ban_wait`` makes :meth:`turn` raise at once instead (the caller parks the shop; e.g. TOP's daily app
    quota). After a ban the limits are halved: the configured ``qps`` was more than the platform allows.
    """

    _registry: dict[tuple[str, str, str], "AppGate"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, qps: float, *, system: str = "", clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.system = system
        self.bucket = TokenBucket(qps, burst=1.2, clock=clock, sleep=sleep)
        self.window_limit = max(1, math.floor(qps))
        self._clock, self._sleep = clock, sleep
        self._cond = threading.Condition()
        self._answered: deque[float] = deque()   # when recent calls were answered
        self._in_flight = 0
        self.banned_until = 0.0
        self.bans = 0
        self.calls = 0

    @classmethod
    def for_app(cls, system: str, gateway: str, app_key: str, qps: float) -> "AppGate":
        """The one gate of ``app_key`` on ``gateway`` in this process (all shops share the app's limits)."""
        key = (system, gateway, app_key)
        with cls._registry_lock:
            gate = cls._registry.get(key)
            if gate is None:
                gate = cls._registry[key] = cls(qps, system=system)
            return gate

    @contextmanager
    def turn(self, *, max_ban_wait: float, shop: str | None = None) -> Iterator[None]:
        """``with gate.turn(...): <one call>`` — wait for the app's turn, then count the call until answered."""
        self.wait_turn(max_ban_wait=max_ban_wait, shop=shop)
        try:
            yield
        finally:
            self.done()

    def wait_turn(self, *, max_ban_wait: float, shop: str | None = None) -> None:
        """Block until this app may send a call (ban over, paced, window not full); the caller then calls
        :meth:`done` when the answer is in. A ban longer than ``max_ban_wait`` raises at once."""
        while True:
            remaining = self.banned_until - self._clock()
            if remaining > 0:
                if remaining > max_ban_wait:
                    raise RateLimitedError(
                        f"{self.system}: the app is banned for {math.ceil(remaining)} more seconds (longer than "
                        f"max_ban_wait={max_ban_wait:g}s); not calling until the ban ends",
                        retry_after=remaining, system=self.system, shop=shop)
                self._sleep(remaining)
                continue
            self.bucket.acquire()
            with self._cond:
                while True:
                    now = self._clock()
                    while self._answered and self._answered[0] <= now - 1.0:
                        self._answered.popleft()
                    if len(self._answered) + self._in_flight < self.window_limit:
                        break
                    wait = (self._answered[0] + 1.0 - now) if self._answered else None
                    self._cond.wait(timeout=wait)
                if self.banned_until > self._clock():
                    continue
                self._in_flight += 1
                self.calls += 1
                return

    def done(self) -> None:
        """The call's answer is in (or it failed): it now occupies the window for one more second."""
        with self._cond:
            self._in_flight -= 1
            self._answered.append(self._clock())
            self._cond.notify_all()

    def ban(self, seconds: float) -> None:
        """Record a ban the platform announced (``seconds`` as it said) and halve the limits."""
        with self._cond:
            self.banned_until = max(self.banned_until, self._clock() + float(seconds) + 1.0)
            self.bans += 1
            new_rate = max(0.5, self.bucket.rate / 2)
            log.warning("%s: platform ban of %ss; pausing all calls of this app and lowering pace %.1f -> %.1f "
                        "calls/s", self.system, seconds, self.bucket.rate, new_rate)
            self.bucket.rate = new_rate
            self.window_limit = max(1, self.window_limit // 2)
