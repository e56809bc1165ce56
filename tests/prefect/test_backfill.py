"""orderhub-backfill: a date range in daily partitions, each with its own bookmark; the scheduled sync's bookmark
is left alone, and exactly the orders modified in the range reach the hub."""
import sqlite3
from datetime import date, datetime, timedelta

import pytest
import yaml

from orderhub.connectors.hub.store import HubStore
from orderhub.infra import demo_erp

pytestmark = pytest.mark.prefect


def test_backfill_reads_exactly_the_range_in_partitions(prefect_api, tmp_path):
    erp = tmp_path / "erp.db"
    c = demo_erp.connect(erp)
    day0 = datetime(2026, 11, 1, 10, 0)
    ids = {}
    for i in range(1, 31):  # one order every 4 hours: 10 days
        at = day0 + timedelta(hours=4 * (i - 1))
        h = {"bill_no": f"BF{i:04d}", "customer_code": f"C{i}", "status": "B", "total_amount": "10.00",
             "receiver_address": "上海市浦东新区张江路1号", "updated_at": at.strftime("%Y-%m-%d %H:%M:%S"),
             "order_date": at.strftime("%Y-%m-%d %H:%M:%S")}
        demo_erp.insert_order(c, i, h, [{"sku": "A", "qty": 1, "price": "10", "amount": "10.00"}])
        ids[h["bill_no"]] = at
    c.close()
    spec = {"name": "bf-test", "mapping": "erp_sql",
            "source": {"connector": "erp_sql", "config": {"url": f"sqlite:///{erp}", "header_table": "so_header",
                                                          "line_table": "so_line", "join_key": "header_id",
                                                          "updated_at": "updated_at", "lookback_seconds": 0,
                                                          "batch_size": 3}},
            "hub": {"url": f"sqlite:///{tmp_path / 'hub.db'}"}}
    p = tmp_path / "bf.yaml"
    p.write_text(yaml.safe_dump(spec))
    from orderhub.flows.sync import backfill

    with prefect_api.use():
        summaries = backfill(str(p), date(2026, 11, 3), date(2026, 11, 5), partition_days=1)
    assert len(summaries) == 2
    hub = HubStore(spec["hub"]["url"])
    got = {o["source_order_id"] for ids_ in hub.iter_order_ids() for o in hub.load_orders(ids_)}
    want = {b for b, at in ids.items() if datetime(2026, 11, 3) <= at < datetime(2026, 11, 5)}
    assert got == want and len(want) == 12
    state = hub.get_state("bf-test")
    assert state == {}                                    # the scheduled sync's bookmark is untouched
    assert set(hub.get_state("bf-test.backfill.2026-11-03")) == {"source"}
