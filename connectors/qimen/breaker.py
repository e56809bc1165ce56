"""A circuit breaker for a target system: stop calling it after K consecutive failures, probe after a cool-down.

closed → (K consecutive failures) → open → (cool-down elapsed) → half-open: one probe call is let through;
its success closes the circuit, its failure opens it again for another cool-down.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self.state = "closed"
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None
        self.trips = 0

    def allow(self) -> bool:
        """May the next call go out? In the open state only after the cool-down, and then one probe."""
        with self._lock:
            if self.state == "closed":
                return True
            if self.state == "open" and self._clock() - (self.opened_at or 0.0) >= self.cooldown:
                self.state = "half_open"
                return True
            return False

    def record_success(self) -> None:
        """The system answered (even with a refusal of one order): it is available."""
        with self._lock:
            self.state = "closed"
            self.consecutive_failures = 0
            self.opened_at = None

    def record_failure(self, error: str = "") -> None:
        with self._lock:
            self.consecutive_failures += 1
            self.last_error = error or self.last_error
            if self.state == "half_open" or self.consecutive_failures >= self.threshold:
                if self.state != "open":
                    self.trips += 1
                self.state = "open"
                self.opened_at = self._clock()

    def seconds_until_probe(self) -> float:
        if self.state != "open" or self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self.opened_at))

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state}, failures={self.consecutive_failures}/{self.threshold})"
