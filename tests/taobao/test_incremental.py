"""The shared incremental pieces (windows, backwards paging, dedupe, parallel windows, app gate) on their own."""
from __future__ import annotations

import random
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from orderhub.connectors.common.errors import RateLimitedError
from orderhub.connectors.taobao.incremental import (
    AppGate, EdgeDedupe, WindowNotStable, ordered_prefetch, page_backwards, time_windows,
)


def test_windows_share_their_edges_and_cover_the_range():
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    w = time_windows(t0, t0 + timedelta(minutes=70), timedelta(minutes=30))
    assert w == [(t0, t0 + timedelta(minutes=30)), (t0 + timedelta(minutes=30), t0 + timedelta(minutes=60)),
                 (t0 + timedelta(minutes=60), t0 + timedelta(minutes=70))]
    assert time_windows(t0, t0, timedelta(minutes=30)) == []


class MovingList:
    """A newest-first list of ids; after every page read, ``leave_per_call`` random rows leave it (modified)."""

    def __init__(self, n: int, leave_per_call: int, seed: int) -> None:
        self.rows = list(range(n, 0, -1))
        self.rng = random.Random(seed)
        self.leave = leave_per_call
        self.left: set[int] = set()

    def fetch(self, page: int, size: int) -> tuple[list[int], int]:
        out = (self.rows[(page - 1) * size: page * size], len(self.rows))
        for _ in range(min(self.leave, len(self.rows))):
            self.left.add(self.rows.pop(self.rng.randrange(len(self.rows))))
        return out


@pytest.mark.parametrize("seed", range(25))
def test_paging_backwards_never_loses_a_row_that_stays(seed):
    lst = MovingList(237, leave_per_call=2, seed=seed)
    got = set(page_backwards(lambda p: lst.fetch(p, 20), 20))
    stayed = set(range(1, 238)) - lst.left
    assert stayed <= got


def test_paging_forwards_would_lose_rows_which_is_why_we_page_backwards():
    lost = 0
    for seed in range(25):
        lst = MovingList(237, leave_per_call=2, seed=seed)
        got, page = set(), 1
        while True:
            rows, total = lst.fetch(page, 20)
            got |= set(rows)
            if page * 20 >= total:
                break
            page += 1
        lost += len(set(range(1, 238)) - lst.left - got)
    assert lost > 0


def test_a_window_that_keeps_growing_is_read_again_then_given_up():
    rows = list(range(50))
    calls = []

    def fetch(page):
        calls.append(page)
        rows.insert(0, -len(calls))  # a new row enters at the head on every call
        return rows[(page - 1) * 10: page * 10], len(rows)

    with pytest.raises(WindowNotStable):
        page_backwards(fetch, 10, attempts=3)
    assert calls.count(1) == 3


def test_single_page_window_costs_one_call():
    calls = []
    assert page_backwards(lambda p: (calls.append(p) or [1, 2], 2), 10) == [1, 2]
    assert calls == [1]


def test_dedupe_skips_same_version_and_older_versions_but_not_new_content_in_the_same_second():
    d = EdgeDedupe()
    assert d.admit("a", "2024-01-01 10:00:00", "h1")
    assert not d.admit("a", "2024-01-01 10:00:00", "h1")       # same version read again (edge/overlap)
    assert d.admit("a", "2024-01-01 10:00:00", "h2")           # changed twice within one second
    assert not d.admit("a", "2024-01-01 09:59:59", "h0")       # a stale copy from an earlier page
    assert d.admit("a", "2024-01-01 10:00:01", "h3")
    d.admit("b", "2024-01-01 09:00:00", "x")
    d.prune("2024-01-01 09:55:00")
    assert d.to_state() == {"a": ["2024-01-01 10:00:01", "h3"]}
    assert not EdgeDedupe(d.to_state()).admit("a", "2024-01-01 10:00:01", "h3")


def test_parallel_windows_come_out_in_order_and_errors_surface_in_turn():
    def slow_square(x):
        time.sleep(random.random() / 100)
        return x * x

    assert [r for _, r in ordered_prefetch(slow_square, range(20), 4)] == [x * x for x in range(20)]

    def boom(x):
        if x == 5:
            raise ValueError("window 5")
        return x

    seen = []
    with pytest.raises(ValueError, match="window 5"):
        for x, _ in ordered_prefetch(boom, range(20), 3):
            seen.append(x)
    assert seen == [0, 1, 2, 3, 4]


def test_gate_holds_every_thread_during_a_ban_and_halves_the_pace():
    gate = AppGate(100, system="t")
    gate.ban(0.2)                      # platform said 0.2 s: closed for 1.2 s
    assert gate.bucket.rate == 50
    t0 = time.monotonic()
    started = []
    threads = [threading.Thread(target=lambda: (gate.wait_turn(max_ban_wait=5), started.append(time.monotonic())))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert min(started) - t0 >= 1.15


def test_gate_refuses_at_once_during_a_ban_longer_than_max_ban_wait():
    gate = AppGate(100, system="t")
    gate.ban(3600)
    t0 = time.monotonic()
    with pytest.raises(RateLimitedError) as ei:
        gate.wait_turn(max_ban_wait=60)
    assert ei.value.retry_after > 3600 and time.monotonic() - t0 < 0.1
