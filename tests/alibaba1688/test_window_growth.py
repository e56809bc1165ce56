"""A window whose result set keeps growing while it is paged is not handed back incomplete."""
import pytest

from orderhub.connectors.alibaba1688.marketplace import read_pages_backwards
from orderhub.connectors.common.incremental import WindowNotStable


def test_a_window_that_keeps_growing_raises_instead_of_returning_part_of_it():
    state = {"total": 45}

    def fetch(page):
        state["total"] += 3  # new orders land in the window on every call
        start = (page - 1) * 20
        return [{"id": i} for i in range(start, min(start + 20, state["total"]))], state["total"]

    with pytest.raises(WindowNotStable) as e:
        read_pages_backwards(fetch, first_page=1, page_size=20, max_rounds=3)
    assert e.value.retryable


def test_a_stable_window_is_read_whole():
    items = [{"id": i} for i in range(45)]

    def fetch(page):
        return items[(page - 1) * 20:page * 20], len(items)

    got = read_pages_backwards(fetch, first_page=1, page_size=20)
    assert {x["id"] for x in got} == set(range(45))
