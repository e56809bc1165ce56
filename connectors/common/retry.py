"""The one retry policy of orderhub (tenacity).

Retries only errors whose ``retryable`` is true (see :mod:`errors`) plus network-level httpx errors, with
exponential back-off and full jitter. A :class:`RateLimitedError` that announces a ban waits exactly the
announced seconds plus one (so the ban is never extended by an early call); a ban longer than
``max_ban_wait`` is raised at once so the caller can park that shop instead of blocking the run.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Callable, TypeVar

import tenacity

from orderhub.connectors.common.errors import OrderhubError, RateLimitedError

T = TypeVar("T")
log = logging.getLogger("orderhub.retry")


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, OrderhubError):
        return exc.retryable
    try:
        import httpx

        if isinstance(exc, (httpx.TransportError,)):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (ConnectionError, TimeoutError))


class _Wait(tenacity.wait.wait_base):
    def __init__(self, base: float, cap: float, max_ban_wait: float) -> None:
        self.base, self.cap, self.max_ban_wait = base, cap, max_ban_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return float(exc.retry_after) + 1.0
        ceiling = min(self.cap, self.base * (2 ** (retry_state.attempt_number - 1)))
        return random.uniform(self.base / 2, ceiling)


class _Stop(tenacity.stop.stop_base):
    def __init__(self, attempts: int, max_ban_wait: float) -> None:
        self.attempts, self.max_ban_wait = attempts, max_ban_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None and exc.retry_after > self.max_ban_wait:
            return True
        return retry_state.attempt_number >= self.attempts


def retry_policy(*, attempts: int = 5, base: float = 0.5, cap: float = 30.0, max_ban_wait: float = 300.0,
                 name: str = "call", sleep: Callable[[float], None] | None = None) -> tenacity.Retrying:
    """Build the standard policy. ``attempts`` counts the first call too."""

    def before_sleep(rs: tenacity.RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        log.warning("%s failed (%s), retry %d/%d in %.1fs", name, exc, rs.attempt_number, attempts - 1,
                    rs.next_action.sleep if rs.next_action else 0)

    kw: dict[str, Any] = {}
    if sleep is not None:
        kw["sleep"] = sleep
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        wait=_Wait(base, cap, max_ban_wait),
        stop=_Stop(attempts, max_ban_wait),
        reraise=True,
        before_sleep=before_sleep,
        **kw,
    )


def call_with_retry(fn: Callable[..., T], *args: Any, policy: tenacity.Retrying | None = None, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` under ``policy`` (the standard one by default)."""
    return (policy or retry_policy(name=getattr(fn, "__name__", "call")))(fn, *args, **kwargs)
