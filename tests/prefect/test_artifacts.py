"""The run summary artifact and the held/quarantined table: rendered exactly, read back from the Prefect API."""
import json

import pytest

from orderhub.connectors.common.secrets import register_secret
from orderhub.flows.artifacts import (artifact_slug, publish_run_summary, render_summary_markdown,
                                      summary_table_rows)

SUMMARY = {
    "pipeline": "Taobao_Shop A", "run_id": "taobao-shop-a-20260101T000000-abc123", "status": "completed",
    "duration_s": 12.34, "batches": 3, "read": 120, "quarantined": 2,
    "hub": {"created": 100, "updated": 10, "unchanged": 8, "stale": 0},
    "held": {"credit_limit": 3, "out_of_stock": 1}, "held_orders": 4,
    "targets": {"erp": {"created": 90, "updated": 10, "unchanged": 0, "failed": 1},
                "wms": {"created": 96, "updated": 4, "held": 0}},
    "held_list": [
        {"order_id": "o_1", "source_order_id": "T1001", "reasons": ["credit_limit"],
         "message": "balance 100.00 < 235.00; call 13812345678"},
        {"order_id": "o_2", "source_order_id": "T1002",
         "reasons": [{"code": "credit_limit", "message": "over credit"}, {"code": "out_of_stock", "message": "A1"}],
         "receiver_mobile": "13900001111", "receiver_address": "浙江省杭州市西湖区文三路 100 号"}],
    "quarantined_records": [
        {"source_order_id": "T1009", "reason_code": "bad_phone", "field": "receiver_mobile",
         "message": "not a CN mobile: 1380000 | token sk-live-123456"},
        {"record_id": "T1010", "code": "unknown_status", "field": "status", "message": "WAIT_GOD"}],
}


def test_summary_markdown_shows_counts_reasons_and_targets():
    md = render_summary_markdown(SUMMARY)
    lines = md.splitlines()
    assert lines[0] == "# Sync summary · `Taobao_Shop A`"
    assert lines[2] == "**completed** · in 12.3 s · 3 batch(es) · run `taobao-shop-a-20260101T000000-abc123`"
    for row in ("| read from the source | 120 |", "| quarantined (bad records) | 2 |", "| created in the hub | 100 |",
                "| updated in the hub | 10 |", "| unchanged | 8 |", "| held (not sent to targets) | 4 |",
                "| `credit_limit` | 3 |", "| `out_of_stock` | 1 |",
                "| target | created | updated | unchanged | held | failed |",
                "| erp | 90 | 10 | 0 | 0 | 1 |", "| wms | 96 | 4 | 0 | 0 | 0 |"):
        assert row in lines, row
    assert "stale" not in md  # shown only when there were stale updates
    assert "**1** target write(s) failed" in md
    assert "`sync-held-quarantined-taobao-shop-a`" in md


def test_table_rows_mask_phones_and_addresses_and_redact_secrets():
    register_secret("sk-live-123456")
    rows = summary_table_rows(SUMMARY)
    assert [(r["kind"], r["order_id"], r["source_id"], r["reason_code"]) for r in rows] == [
        ("held", "o_1", "T1001", "credit_limit"), ("held", "o_2", "T1002", "credit_limit, out_of_stock"),
        ("quarantined", "", "T1009", "bad_phone"), ("quarantined", "", "T1010", "unknown_status")]
    assert rows[0]["message"] == "balance 100.00 < 235.00; call 138****5678"
    assert rows[1]["message"] == "over credit; A1"
    assert rows[1]["receiver_mobile"] == "139****1111"
    assert rows[1]["receiver_address"].startswith("浙江省杭州市") and "文三路" not in rows[1]["receiver_address"]
    assert rows[2]["message"] == "not a CN mobile: 1380000 | token ***"
    assert "13812345678" not in json.dumps(rows, ensure_ascii=False)


def test_artifact_keys_are_lowercase_slugs():
    assert artifact_slug("Taobao_Shop A") == "taobao-shop-a"
    assert artifact_slug("京东/JD 001") == "jd-001"


@pytest.mark.prefect
def test_summary_artifacts_read_back_from_the_api_with_the_right_counts():
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    @flow(name="orderhub-test-publish-summary")
    def sync_like(summary: dict) -> dict:
        return publish_run_summary(summary)

    state = sync_like(SUMMARY, return_state=True)
    published = state.result()
    run_id = state.state_details.flow_run_id
    assert published["summary_key"] == "sync-summary-taobao-shop-a" and published["rows"] == 4

    with get_client(sync_client=True) as client:
        def latest(key):
            found = client.read_latest_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            assert len(found) == 1, key
            return found[0]

        md, table = latest("sync-summary-taobao-shop-a"), latest("sync-held-quarantined-taobao-shop-a")
    assert md.type == "markdown" and md.flow_run_id == run_id
    assert "| created in the hub | 100 |" in md.data and "| erp | 90 | 10 | 0 | 0 | 1 |" in md.data
    assert md.description == "Taobao_Shop A: read 120, created 100, updated 10, held 4, quarantined 2"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert table.type == "table" and table.flow_run_id == run_id
    assert [r["source_id"] for r in rows] == ["T1001", "T1002", "T1009", "T1010"]
    assert "13812345678" not in table.data and "138****5678" in table.data

    # a clean run publishes an empty table, so the latest version never shows an earlier run's orders
    sync_like({"pipeline": "Taobao_Shop A", "read": 5, "hub": {"created": 5}}, return_state=True)
    with get_client(sync_client=True) as client:
        table = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sync-held-quarantined-taobao-shop-a"])))[0]
    assert (json.loads(table.data) if isinstance(table.data, str) else table.data) == []
