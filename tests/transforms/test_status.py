"""The status lifecycle: every documented source status is mapped; updates never move an order backwards."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderhub.connectors.common.errors import RecordError
from orderhub.transforms import status as S

# The status values listed in ../shared/reference (marketplaces §1.4, §2.4, §3.4, §4.4; erp §1.6, §3.3), typed
# out here independently of the maps, so a value missing from a map fails this test.
DOCUMENTED = {
    "taobao": ["TRADE_NO_CREATE_PAY", "WAIT_BUYER_PAY", "SELLER_CONSIGNED_PART", "WAIT_SELLER_SEND_GOODS",
               "WAIT_BUYER_CONFIRM_GOODS", "TRADE_BUYER_SIGNED", "TRADE_FINISHED", "TRADE_CLOSED",
               "TRADE_CLOSED_BY_TAOBAO", "PAY_PENDING", "WAIT_PRE_AUTH_CONFIRM", "PAID_FORBID_CONSIGN",
               "ALL_WAIT_PAY", "ALL_CLOSED"],
    "taobao_refund": ["WAIT_SELLER_AGREE", "WAIT_BUYER_RETURN_GOODS", "WAIT_SELLER_CONFIRM_GOODS",
                      "SELLER_REFUSE_BUYER", "CLOSED", "SUCCESS", "NO_REFUND"],
    "jd": ["WAIT_SELLER_STOCK_OUT", "WAIT_GOODS_RECEIVE_CONFIRM", "WAIT_SELLER_DELIVERY", "PAUSE", "FINISHED_L",
           "TRADE_CANCELED", "LOCKED", "POP_ORDER_PAUSE", "WAIT_SEND_CODE", "NOT_PAY", "SUSPEND", "WAIT_DELIVERY",
           "WAIT_SHIPMENTS", "FINISH", "CANCEL", "LOCK"],
    "alibaba1688": ["waitbuyerpay", "waitsellersend", "waitlogisticstakein", "waitbuyerreceive", "waitbuyersign",
                    "signinsuccess", "confirm_goods", "success", "cancel", "terminated", "unenumerated"],
    "alibaba1688_step": ["waitactivate", "waitsellerpush", "success", "settlebill", "cancel", "inactiveandcancel",
                         "waitbuyerpay", "waitsellersend", "waitbuyerreceive", "waitselleract",
                         "waitbuyerconfirmaction"],
    "alibaba1688_refund": ["WAIT_SELLER_AGREE", "REFUND_SUCCESS", "REFUND_CLOSED", "WAIT_BUYER_MODIFY",
                           "WAIT_BUYER_SEND", "WAIT_SELLER_RECEIVE", "waitselleragree", "refundsuccess",
                           "refundclose", "waitbuyermodify", "waitbuyersend", "waitsellerreceive"],
    "douyin": ["1", "105", "2", "101", "3", "4", "5", "103", "21", "22", "39"],
    "douyin_after_sale": ["0", "6", "7", "27", "12", "28", "11", "29", "13", "14", "51", "53"],
    "douyin_refund": ["1", "3", "4"],
    "kingdee": ["Z", "A", "B", "C", "D"],
    "kingdee_line": ["A", "B"],
    "yonyou": ["CONFIRMORDER", "APPROVING", "DELIVERGOODS", "DELIVERY_PART", "DELIVERY_TAKE_PART", "TAKEDELIVERY",
               "ENDORDER", "CLOSEDORDER", "OPPOSE"],
}
EXPECTED = {  # a sample of exact mappings (reference marketplaces §6.1)
    ("taobao", "WAIT_SELLER_SEND_GOODS"): "awaiting_confirmation", ("taobao", "TRADE_FINISHED"): "completed",
    ("taobao", "PAID_FORBID_CONSIGN"): "on_hold", ("jd", "WAIT_GOODS_RECEIVE_CONFIRM"): "shipped",
    ("jd", "LOCKED"): "on_hold", ("alibaba1688", "waitbuyerpay"): "pending_payment",
    ("alibaba1688", "cancel"): "cancelled", ("douyin", "101"): "partially_shipped", ("douyin", "3"): "shipped",
    ("kingdee", "C"): "confirmed", ("kingdee", "C|B|A"): "closed", ("kingdee", "C|A|B"): "cancelled",
    ("kingdee", "D"): "on_hold", ("yonyou", "OPPOSE"): "cancelled", ("yonyou", "ENDORDER"): "completed",
    ("taobao_refund", "SUCCESS"): "refunded", ("douyin_after_sale", "7"): "returning",
}


@pytest.mark.parametrize("name,value", [(n, v) for n, vs in DOCUMENTED.items() for v in vs])
def test_every_documented_status_is_mapped(name, value):
    kind = "refund_status" if "refund" in name or "after_sale" in name else "status"
    m = S.status_map(name, source=name, kind=kind)
    assert m(value) in (S.REFUND_STATES if kind == "refund_status" else S.STATUSES)


@pytest.mark.parametrize("key,expected", list(EXPECTED.items()))
def test_status_maps_follow_the_reference_table(key, expected):
    name, raw = key
    kind = "refund_status" if "refund" in name or "after_sale" in name else "status"
    assert S.status_map(name, source=name, kind=kind)(raw) == expected


def test_unknown_status_is_an_error_naming_value_and_source():
    with pytest.raises(RecordError) as e:
        S.status_map("taobao", source="taobao")("WAIT_SOMETHING_NEW")
    assert e.value.code == "unknown_status"
    assert "WAIT_SOMETHING_NEW" in str(e.value) and "taobao" in str(e.value)
    assert e.value.field == "source_status"


def test_inline_map_to_a_non_canonical_value_is_a_config_error():
    from orderhub.connectors.common.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown canonical"):
        S.status_map({"A": "approved"}, source="erp")


def test_late_update_never_moves_an_order_backwards():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    st, _ = S.apply_update(None, "shipped", t0 + timedelta(hours=2))
    st, what = S.apply_update(st, "awaiting_confirmation", t0)
    assert st.status == "shipped" and what == "stale"
    st, what = S.apply_update(st, "confirmed", t0 + timedelta(hours=5))  # newer but behind in the lifecycle
    assert st.status == "shipped" and what == "stale"


def test_hold_and_release_follow_the_newest_update():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    st, _ = S.apply_update(None, "awaiting_confirmation", t0)
    st, what = S.apply_update(st, "on_hold", t0 + timedelta(minutes=1))
    assert (st.status, what) == ("on_hold", "held")
    st, what = S.apply_update(st, "awaiting_confirmation", t0 + timedelta(minutes=2))
    assert (st.status, what) == ("awaiting_confirmation", "released")
    st, what = S.apply_update(st, "on_hold", t0 + timedelta(seconds=30))  # an older lock arriving late
    assert st.status == "awaiting_confirmation"


def test_final_statuses_are_final():
    st, _ = S.apply_update(None, "cancelled")
    st, _ = S.apply_update(st, "shipped")
    assert st.status == "cancelled"
    st, _ = S.apply_update(st, "closed")
    assert st.status == "closed"  # both final: closed wins in any order of arrival
    st2, _ = S.apply_update(S.apply_update(None, "closed")[0], "cancelled")
    assert st2.status == "closed"
    assert S.LEGAL_TRANSITIONS["closed"] == frozenset()
    assert "shipped" in S.LEGAL_TRANSITIONS["confirmed"] and "confirmed" not in S.LEGAL_TRANSITIONS["shipped"]


updates = st.lists(
    st.tuples(st.sampled_from(S.STATUSES), st.integers(min_value=0, max_value=50)), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(updates, st.randoms(use_true_random=False))
def test_no_permutation_of_updates_moves_an_order_backwards(batch, rnd):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    evs = [(s, t0 + timedelta(minutes=m)) for s, m in batch]
    finals = set()
    for _ in range(4):
        rnd.shuffle(evs)
        state = None
        for s, at in evs:
            before = state
            state, _ = S.apply_update(state, s, at)
            if before is not None:
                assert S.RANK.get(state.base, 0) >= S.RANK.get(before.base, 0), "lifecycle moved backwards"
        finals.add((state.status, state.base, state.hold))
    assert len(finals) == 1, f"order-dependent result: {finals}"
