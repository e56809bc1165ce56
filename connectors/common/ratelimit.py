"""A thread-safe token bucket: the client-side QPS limiter every connector shares per partner.

Prefect's own ``rate_limit`` is a coarse ceiling (see the Prefect notes); precise pacing happens here, in the
process that makes the calls.
"""
from __future__ import annotations

import threading
import time


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. :meth:`acquire` blocks until a token is free."""

    def __init__(self, rate: float, burst: float | None = None, *, clock=time.monotonic, sleep=time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return waited
                need = (tokens - self._tokens) / self.rate
            self._sleep(need)
            waited += need

    def pause(self, seconds: float) -> None:
        """Empty the bucket for ``seconds`` (after the partner announced a ban)."""
        with self._lock:
            self._refill()
            self._tokens = -seconds * self.rate
