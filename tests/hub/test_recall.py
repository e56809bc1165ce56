"""The duplicate-submission recall: a second submission (重复下单) is held even when the first was stored by an
earlier run — or by an earlier attempt with the same run id — on SQLite and on PostgreSQL (where the lists go to
the server as one text parameter, or as an array when a value holds the separator)."""
from __future__ import annotations

import copy

import pytest

from orderhub.flows.pipeline import Pipeline, SourceBatch, parse_pipeline

BASE = {"bill_no": "SO1", "status": "A", "order_date": "2026-11-20 09:00:00", "updated_at": "2026-11-20 09:00:00",
        "customer_code": "C1", "customer_name": "常州五金", "receiver_name": "王建国", "receiver_phone": "13912345678",
        "receiver_address": "江苏省常州市武进区湖塘镇工业路18号", "total_amount": "175.00", "urgent": 0, "remark": "",
        "_shop": "main", "lines": [{"id": 11, "line_no": 1, "sku": "M8-BOLT-20", "qty": "500", "price": "0.35",
                                    "amount": "175.00"}]}


def rec(bill: str, at: str, **kw) -> dict:
    r = copy.deepcopy(BASE)
    r.update(bill_no=bill, order_date=at, updated_at=at, **kw)
    return r


def pipeline(hub, run_id: str) -> Pipeline:
    cfg = parse_pipeline({"name": "recall", "mapping": "erp_sql", "rules": "default",
                          "source": {"connector": "erp_sql", "config": {
                              "url": "mysql://nobody@127.0.0.1:1/none", "header_table": "h", "line_table": "l",
                              "join_key": "header_id", "updated_at": "updated_at"}}})
    return Pipeline(cfg, hub=hub, run_id=run_id)


def run_batch(p: Pipeline, *records: dict) -> dict:
    result, sb = p.prepare(SourceBatch(list(records), None))
    p.store(result, sb)
    return {o["source_order_id"]: [r["code"] for r in o.get("hold_reasons") or []] for o in result.orders}


@pytest.mark.parametrize("customer", ["C1", "C\x1f1"], ids=["text-parameter", "array-fallback"])
def test_second_submission_in_a_later_run_is_held(hub, customer):
    assert run_batch(pipeline(hub, "r1"), rec("SO1", "2026-11-20 09:00:00", customer_code=customer)) == {"SO1": []}
    later = run_batch(pipeline(hub, "r2"), rec("SO2", "2026-11-20 09:03:00", customer_code=customer),
                      rec("SO3", "2026-11-20 09:30:00", customer_code=customer))  # outside the 10-minute window
    assert later == {"SO2": ["duplicate_submission"], "SO3": []}


def test_an_attempt_with_the_same_run_id_recalls_what_the_failed_one_stored(hub):
    run_batch(pipeline(hub, "r1"), rec("SO1", "2026-11-20 09:00:00"))
    retry = pipeline(hub, "r1")  # e.g. Prefect retrying the flow run: same run id, fresh memory
    assert run_batch(retry, rec("SO2", "2026-11-20 09:02:00")) == {"SO2": ["duplicate_submission"]}


def test_the_first_submission_is_not_held_when_its_run_stores_it_again(hub):
    p = pipeline(hub, "r1")
    assert run_batch(p, rec("SO1", "2026-11-20 09:00:00")) == {"SO1": []}
    # the same order read again later in the same run (e.g. the catch-up pass): still the first submission
    assert run_batch(p, rec("SO1", "2026-11-20 09:00:00")) == {"SO1": []}
    assert run_batch(pipeline(hub, "r2"), rec("SO1", "2026-11-20 09:00:00")) == {"SO1": []}


def test_a_batch_far_from_every_earlier_order_asks_no_recall_query(hub, monkeypatch):
    run_batch(pipeline(hub, "r1"), rec("SO1", "2026-11-20 09:00:00"))
    asked: list = []
    real = hub.iter_order_ids
    monkeypatch.setattr(hub, "iter_order_ids", lambda **kw: asked.append(kw) or real(**kw))
    p = pipeline(hub, "r2")
    # a month earlier: no earlier order within the 10-minute window, so no recall query
    assert run_batch(p, rec("SO7", "2026-10-20 09:00:00")) == {"SO7": []}
    assert asked == []
    # near the earlier order (from the same reading of its time range): asked, and held
    assert run_batch(p, rec("SO2", "2026-11-20 09:09:00")) == {"SO2": ["duplicate_submission"]}
    assert len(asked) == 1


def test_a_first_sync_into_a_hub_without_the_source_asks_no_recall_query(hub, monkeypatch):
    asked: list = []
    monkeypatch.setattr(hub, "iter_order_ids", lambda **kw: asked.append(kw) or iter(()))
    p = pipeline(hub, "r1")
    assert run_batch(p, rec("SO1", "2026-11-20 09:00:00")) == {"SO1": []}
    # the run's own orders are not "earlier": its second submission is caught by the run's memory, not a query
    assert run_batch(p, rec("SO2", "2026-11-20 09:02:00")) == {"SO2": ["duplicate_submission"]}
    assert asked == []


def test_an_order_another_run_stores_meanwhile_is_recalled_once_the_range_is_read_again(hub, monkeypatch):
    import orderhub.flows.pipeline as pipeline_mod

    p = pipeline(hub, "r2")
    assert run_batch(p, rec("SO9", "2026-11-20 08:00:00", customer_code="C9")) == {"SO9": []}  # range read: none
    run_batch(pipeline(hub, "r1"), rec("SO1", "2026-11-20 09:00:00"))  # another run stores the first submission
    # within SPAN_TTL_S the reading stands (documented: seen from the next reading on) ...
    assert run_batch(p, rec("SO2", "2026-11-20 09:02:00")) == {"SO2": []}
    # ... and once it is read again, the earlier run's order is recalled
    monkeypatch.setattr(pipeline_mod, "SPAN_TTL_S", 0.0)
    assert run_batch(p, rec("SO3", "2026-11-20 09:04:00")) == {"SO3": ["duplicate_submission"]}
