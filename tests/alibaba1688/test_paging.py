"""The paging rule both marketplace clients rely on (``read_pages_backwards``), checked on arbitrary shrinking
result sets: whatever is removed while we page, every item that stays is returned."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orderhub.connectors.alibaba1688.marketplace import ban_seconds_from, read_pages_backwards


@settings(max_examples=120, deadline=None)
@given(n=st.integers(0, 90), size=st.integers(1, 30), first=st.sampled_from([0, 1]), data=st.data())
def test_every_item_that_stays_in_a_shrinking_result_set_is_returned(n, size, first, data):
    items = list(range(n))
    seen_calls = []

    def fetch(page):
        # before answering, the platform drops any items (orders modified elsewhere leave the window)
        for _ in range(data.draw(st.integers(0, 3), label="removed before this call")):
            if items:
                items.pop(data.draw(st.integers(0, len(items) - 1), label="which"))
        seen_calls.append(page)
        start = (page - first) * size
        return [{"id": i} for i in items[start:start + size]], len(items)

    got = {r["id"] for r in read_pages_backwards(fetch, first_page=first, page_size=size)}
    assert set(items) <= got
    assert seen_calls[0] == first and (len(seen_calls) == 1 or seen_calls[-1] == first)


def test_a_result_set_that_grows_is_read_again():
    items = list(range(45))
    calls = []

    def fetch(page):
        calls.append(page)
        if len(calls) == 2:
            items.insert(0, 999)  # something entered the window: read it all again
        return [{"id": i} for i in items[(page - 1) * 20:page * 20]], len(items)

    got = {r["id"] for r in read_pages_backwards(fetch, first_page=1, page_size=20)}
    assert set(items) <= got and calls == [1, 3, 2, 1, 1, 3, 2, 1]


def test_ban_lengths_are_read_from_english_and_chinese_messages():
    assert ban_seconds_from("App call exceeds limited frequency; This ban will last for 7 more seconds") == 7
    assert ban_seconds_from(None, "触发限流，请 3 秒后重试") == 3
    assert ban_seconds_from("App call exceeds limited frequency") is None
