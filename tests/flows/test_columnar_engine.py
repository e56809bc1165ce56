"""The columnar engine against the row engine: the same ERP database synced by each into its own PostgreSQL hub
must leave the same hub — every order column, the stored lines (exact JSON text), holds, lineage, quarantine and
bookmarks — while the columnar engine really decides most orders itself.

The dataset mixes clean orders with every kind of record the engine hands to the row engine: unknown statuses,
hostile text, too-long and NUL-bearing fields, odd phone numbers and addresses, negative, zero and missing amounts,
implausible and fractional-second times, lines-less orders, a repeated source order id, test orders, price holds,
the priority threshold exactly, duplicate submissions and merge candidates (stateful rules across both engines).
"""
from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

pytest.importorskip("polars")
pytest.importorskip("connectorx")

from orderhub.connectors.hub.store import HubStore  # noqa: E402
from orderhub.flows.pipeline import Pipeline, parse_pipeline  # noqa: E402
from tests.erp_db import erp_database  # noqa: E402
from tests.pg import fresh_pg_database  # noqa: E402

T0 = datetime(2026, 3, 2, 9, 0, 0)
ADDRESSES = ["江苏省常州市武进区工业路1号", "北京市北京市朝阳区建国路8号", "北京朝阳区建国路9号", "上海市浦东新区世纪大道1号",
             "广西南宁市青秀区民族大道", "内蒙古自治区呼和浩特市新城区", "广东深圳市南山区科技园", "浙江省杭州市西湖区",
             "新疆维吾尔自治区乌鲁木齐市天山区", "湖北恩施土家族苗族自治州恩施市", "某某路100号", " 江苏省南京市鼓楼区",
             "江苏省南京市鼓楼区　中山路", "四川省成都市高新区天府大道", "黑龙江哈尔滨市南岗区", "重庆市渝中区解放碑",
             "云南省大理白族自治州大理市", "甘肃省临夏回族自治州临夏县", "Room 5, 88 Nanjing Rd", "江苏省苏州市工业园区星湖街"]
TEXTS = ["", "正常备注", "加急 请优先发货", 'quote " and \\ backslash', "tab\tnew\nline", "emoji 😀 ok", "\u2028sep",
         "测试订单 请勿发货", "ctrl \x01\x1f", "x" * 300]
PHONES = ["13800000000", "+86 138-0000-0001", "0519-88886666", "138****0000", "13800000002-1234", "12345", "",
          "１３８００００００００"]


def _dataset(conn, zero_dates: bool = True, dense: bool = False) -> int:  # noqa: ANN001
    """``dense``: line ids numbered consecutively as an ERP inserting lines with their order does (each order's
    lines in reverse), so the columnar reader reads a page's lines as one primary-key range; otherwise sparse ids
    (``order × 10 + k``), read through the join-key index."""
    cur = conn.cursor()
    cur.execute("SET SESSION sql_mode = ''")  # zero dates, like a legacy ERP
    n = 0
    next_id = 1
    for i in range(1, 601):
        ts = T0 + timedelta(seconds=i * 37)
        status = "ABCDZ"[i % 5] if i % 97 else "Q"          # Q: not in the status map
        cust = f"C{i % 40}" if i % 13 else None
        remark = TEXTS[i % len(TEXTS)] if i % 3 == 0 else ""
        phone = PHONES[i % len(PHONES)] if i % 4 == 0 else f"139{i:08d}"
        addr = ADDRESSES[i % len(ADDRESSES)]
        name = f"收货人{i % 50}"
        nlines = 0 if i % 151 == 0 else 1 + i % 4
        amounts = []
        lines = []
        for k in range(nlines):
            qty = Decimal(1 + (i + k) % 9) if (i + k) % 83 else Decimal(0)
            price = Decimal("0.50") + Decimal((i * 7 + k) % 300) / 4
            if i % 89 == 0 and k == 0:
                price = Decimal("0.001")                     # below min_unit_price
            amount = (qty * price).quantize(Decimal("0.01"))
            if i % 71 == 0 and k == 0:
                amount += Decimal("50")                      # amount_mismatch
            if i % 113 == 0 and k == 1:
                amount = None                                # computed by the row engine
            amounts.append(amount or Decimal(0))
            lines.append((next_id + nlines - 1 - k if dense else i * 10 + k, i, k + 1 if i % 17 else None, f"SKU-{(i + k) % 25}", f"螺栓 M{k}", qty, price,
                          amount, ts))
        total = sum(amounts, Decimal(0))
        if i % 59 == 0:
            total = Decimal("10000.00")                      # exactly the priority threshold
        if i % 131 == 0:
            total = Decimal("-5.00")                         # negative_amount
        order_date = ts
        if i % 67 == 0:
            order_date = "2045-01-01 00:00:00"               # implausible: future
        if i % 109 == 0 and zero_dates:
            order_date = "0000-00-00 00:00:00"               # zero date
        if i % 211 == 0 and zero_dates:
            order_date = "2026-00-15 10:00:00"               # partial zero date (month 0)
        upd = ts + timedelta(microseconds=(i * 1234) % 1000000) if i % 5 == 0 else ts
        bill = f"SO{i:08d}" if i % 149 else "SO00000001"     # a repeated source order id
        cur.execute("INSERT INTO so_header VALUES (%s,%s,%s,%s,%s,%s,%s,'CNY',%s,%s,%s,%s,%s,%s)",
                    (i, bill, cust, f"客户{i % 40}" if i % 29 else "测试单位", order_date, status, total, remark, name,
                     phone, addr, int(i % 11 == 0), upd))
        for ln in lines:
            cur.execute("INSERT INTO so_line VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", ln)
        next_id += nlines
        n += 1
    # duplicate submissions: the same customer, lines and total a few minutes apart (clean orders)
    for j, i in enumerate(range(1001, 1013)):
        ts = T0 + timedelta(hours=5, minutes=j // 2 * 3)
        cur.execute("INSERT INTO so_header VALUES (%s,%s,%s,%s,%s,'A',%s,'CNY','',%s,%s,%s,0,%s)",
                    (i, f"SO{i:08d}", "C-DUP", "客户重复", ts, Decimal("30.00"), f"重复收货人{j // 4}",
                     f"1370000{j // 4:04d}", "江苏省常州市武进区工业路9号", ts))
        cur.execute("INSERT INTO so_line VALUES (%s,%s,1,'SKU-1','螺栓',%s,%s,%s,%s)",
                    (i * 10, i, Decimal("3.0000") if j % 2 else Decimal("3"), Decimal("10.00"), Decimal("30.00"), ts))
        n += 1
    # a DECIMAL of scale 10 (a rate column): zero and values below 1E-6 are "0E-10" / "1.000E-7" in the row engine's
    # raw record (str(Decimal)), and the columnar engine must hash the same text
    cur.execute("ALTER TABLE so_header ADD COLUMN fx_rate DECIMAL(20,10) NULL")
    cur.execute("UPDATE so_header SET fx_rate = CASE id % 6 WHEN 0 THEN 0 WHEN 1 THEN 0.0000001 WHEN 2 THEN NULL "
                "WHEN 3 THEN -0.0000009999 WHEN 4 THEN 0.000001 ELSE 7.1234567891 END")
    return n


def _pipeline(erp_url: str, hub_url: str, engine: str, batch: int) -> Pipeline:
    spec = {"name": "colq", "mapping": "erp_sql", "rules": "default", "batch_size": batch, "engine": engine,
            "source": {"connector": "erp_sql", "config": {
                "url": erp_url, "header_table": "so_header", "line_table": "so_line", "join_key": "header_id",
                "updated_at": "updated_at", "lookback_seconds": 0, "shop": "main"}},
            "customer_levels": {"C3": "vip", "C7": "svip"},
            "hub": {"url": hub_url}}
    return Pipeline(parse_pipeline(spec))


def _dump(url: str) -> dict:
    hub = HubStore(url)
    out = {}
    with hub.engine.connect() as c:
        raw = c.connection.driver_connection
        cur = raw.cursor()
        cur.execute("select * from hub_orders order by order_id")
        cols = [d[0] for d in cur.description]
        skip = {"first_run_id", "last_run_id", "hub_created_at", "hub_updated_at", "lines"}
        out["orders"] = [{k: v for k, v in zip(cols, r) if k not in skip} for r in cur.fetchall()]
        cur.execute("select order_id, lines::text from hub_orders order by order_id")
        out["lines"] = cur.fetchall()
        cur.execute("select order_id, reason_code, message, ruleset_version, released_at from hub_holds "
                    "order by order_id, reason_code, message")
        out["holds"] = cur.fetchall()
        cur.execute("select order_id, event, source_system, source_order_id, raw_hash, mapping_version, "
                    "ruleset_version, message from hub_lineage order by 1, 2, 8")
        out["lineage"] = cur.fetchall()
        cur.execute("select source_system, source_order_id, reason_code, field, message, raw, raw_hash, seen_count "
                    "from hub_quarantine order by raw_hash")
        out["quarantine"] = cur.fetchall()
        cur.execute("select key, value::text from hub_state order by key")
        out["state"] = cur.fetchall()
    hub.dispose()
    return out


@pytest.mark.parametrize("batch,zero_dates,dense,native", [(97, True, False, True), (5000, False, False, True),
                                                           (250, False, True, True), (250, False, False, False)])
def test_columnar_engine_leaves_the_same_hub_as_the_row_engine(batch: int, zero_dates: bool, dense: bool,
                                                              native: bool, monkeypatch, capfd) -> None:  # noqa: ANN001
    """Pages of 97 orders, some with MySQL zero dates (connectorx cannot read those pages: the row reader does;
    the columnar reader finds them by a flag column, before connectorx would panic and print a Rust backtrace);
    one page of all orders without them; pages of 250 whose lines have dense ids (read as primary-key ranges);
    pages of 250 without the compiled hashing (orderhub.transforms._native: the Polars expressions and hashlib)."""
    from orderhub.transforms import columnar

    if not native:
        monkeypatch.setattr(columnar, "_native", None)
    with ExitStack() as st:
        erp = st.enter_context(erp_database())
        conn = erp.conn()
        n = _dataset(conn, zero_dates, dense)
        conn.close()
        hub_row = st.enter_context(fresh_pg_database("oh_col_row"))
        hub_col = st.enter_context(fresh_pg_database("oh_col_col"))
        row = _pipeline(erp.url, hub_row, "row", batch)
        s_row = row.run()
        col = _pipeline(erp.url, hub_col, "columnar", batch)
        s_col = col.run()
        assert col.engine_note is None and col.columnar is not None
        ranges = col.source.reader.stats["line_ranges"]
        assert ranges > 0 if dense else ranges == 0, ranges
        a, b = _dump(hub_row), _dump(hub_col)
        assert len(a["orders"]) == s_row.hub["created"] > 500
        # the columnar engine decided most orders itself (not all handed back to the row engine)
        assert set(s_row.engine) == {"row"}
        assert s_col.engine["columnar"] > (0.1 if zero_dates else 0.5) * n, s_col.engine
        assert s_col.engine["columnar"] + s_col.engine["row"] == s_row.engine["row"]
        for key in ("orders", "lines", "holds", "lineage", "quarantine", "state"):
            assert len(a[key]) == len(b[key]), key
            for x, y in zip(a[key], b[key]):
                assert x == y, (key, x, y)
        assert s_col.read == s_row.read == n
        assert s_col.quarantined == s_row.quarantined > 0
        assert s_col.held == s_row.held and s_col.held.get("duplicate_submission")
        assert s_col.held_orders == s_row.held_orders
        assert json.loads(b["lines"][0][1])[0]["qty"]  # stored lines are JSON arrays of line objects
        if zero_dates:
            zero = [q for q in b["quarantine"] if q[2] in ("zero_date", "invalid_value")]
            assert len(zero) == 5 + 2, zero   # orders 109, 218, …, 545 and 211, 422
        assert "panicked" not in capfd.readouterr().err


@pytest.mark.parametrize("order", ["both-prepared-first", "looked-up-before-the-first-commits"])
def test_a_repeated_order_in_the_next_page_waits_for_the_hub(order: str) -> None:
    """A source order id that comes again in the next page, while the page with its first occurrence is not yet
    committed (what the run's overlap of reading and writing does; made deterministic here): the columnar engine
    must not COPY it as new (a primary-key violation that would fail the run), but hand it to the row engine,
    which stores it as an update — the same hub as the row engine leaves. Two orders of events: both pages
    prepared before either is stored; or the second page canonicalized ahead — its hub lookup done — before the
    first is prepared, stored and committed (the lookup cannot see it; PendingOrders must)."""
    from orderhub.flows.columnar_step import canonicalize_ahead

    with ExitStack() as st:
        erp = st.enter_context(erp_database())
        erp.add_orders(range(1, 11))
        c = erp.conn()
        c.cursor().execute("UPDATE so_header SET bill_no='SO00000002', status='C', "
                           "updated_at=updated_at + INTERVAL 1 HOUR WHERE id=7")
        c.close()
        hubs = {e: st.enter_context(fresh_pg_database(f"oh_col_rep_{e}")) for e in ("row", "columnar")}
        row = _pipeline(erp.url, hubs["row"], "row", 5)
        row.run()
        col = _pipeline(erp.url, hubs["columnar"], "columnar", 5)
        first, second = list(col.batches())[:2]
        if order == "both-prepared-first":
            prepared = [col.prepare(first), col.prepare(second)]   # both prepared before either is stored
            assert col._pending.since(col._pending.token(), ["x"]) == set() and len(col._pending) == 10
            for result, sb in prepared:
                col.commit(col.store(result, sb))
        else:
            canonicalize_ahead(col, second)
            assert second.ahead.lookup.result() == set()           # asked before the first page is in the hub
            result, sb = col.prepare(first)
            col.commit(col.store(result, sb))
            assert len(col._pending) == 0 and len(col._pending._log) == 1   # kept for the token still out
            result, sb = col.prepare(second)
            assert len(col._pending._log) == 0                     # the token ended: nothing kept
            col.commit(col.store(result, sb))
        assert len(col._pending) == 0
        assert col.summary.engine == {"columnar": 9, "row": 1}   # the repeated id went to the row engine
        a, b = _dump(hubs["row"]), _dump(hubs["columnar"])
        assert len(b["orders"]) == 9
        for key in ("orders", "lines", "holds", "lineage", "quarantine"):
            assert a[key] == b[key], key
        again = {o["order_id"]: o for o in b["orders"]}
        assert [o["status"] for o in b["orders"] if o["source_order_id"] == "SO00000002"] == ["shipped"]
        assert len(again) == 9


def test_pending_orders_answer_for_batches_committed_after_a_token() -> None:
    from orderhub.flows.pipeline import PendingOrders

    p = PendingOrders()
    p.hold(["a", "b"])
    t1 = p.token()                      # a lookup starts: a, b uncommitted
    p.hold(["c"])
    p.release(["a", "b"])               # committed after t1: logged
    t2 = p.token()
    p.release(["c"])                    # committed after t1 and t2
    p.hold(["d"])
    assert p.since(t1, ["a", "c", "d", "x"]) == {"a", "c", "d"}
    assert len(p._log) == 1             # t2 still needs the release of c
    assert p.since(t2, ["a", "c", "d"]) == {"c", "d"}
    assert len(p._log) == 0 and p.since(p.token(), ["d", "a"]) == {"d"} and len(p) == 1
    p.release(["d"])                    # no token out: nothing logged
    assert len(p._log) == 0 and len(p) == 0


def _fails_midrun_then_reruns_exact(monkeypatch, owner: Any, attr: str, nth: int, exc: BaseException,  # noqa: ANN001
                                    db: str) -> None:
    """``owner.attr`` raises ``exc`` on its ``nth`` call during a columnar run of 30 orders in pages of 5: the run
    fails with that error on its own thread; the hub keeps only whole committed pages (lineage with them), each
    with its bookmark; the next run ends with exactly the hub of one uninterrupted run (nothing lost, nothing
    doubled)."""
    with ExitStack() as st:
        erp = st.enter_context(erp_database())
        erp.add_orders(range(1, 31))
        hubs = {e: st.enter_context(fresh_pg_database(f"{db}_{e}")) for e in ("ref", "col")}
        ref = _pipeline(erp.url, hubs["ref"], "columnar", 5).run()
        assert ref.hub["created"] == 30 and ref.engine["columnar"] == 30
        real = getattr(owner, attr)
        calls = []

        def flaky(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            calls.append(1)
            if len(calls) == nth:
                raise exc
            return real(self, *a, **k)

        monkeypatch.setattr(owner, attr, flaky)
        failing = _pipeline(erp.url, hubs["col"], "columnar", 5)
        with pytest.raises(type(exc)) as raised:
            failing.run()
        assert raised.value is exc                     # the stage's own error, raised on the run's thread
        assert failing.summary.status == "failed"
        hub = HubStore(hubs["col"])
        with hub.engine.connect() as c:
            raw = c.connection.driver_connection.cursor()
            raw.execute("select count(*) from hub_orders")
            stored = raw.fetchone()[0]
            raw.execute("select count(*) from hub_lineage")
            assert raw.fetchone()[0] == stored
        state = hub.get_state("colq")
        hub.dispose()
        assert stored % 5 == 0 and stored < 5 * nth   # whole pages only, none from the failed one on
        # the bookmark is the last committed page's: the full pass resumes after its last key
        full = (state.get("source") or {}).get("partitions", {}).get("main", {}).get("full", {})
        assert full.get("after_pk") == (stored or None), state
        monkeypatch.setattr(owner, attr, real)
        again = _pipeline(erp.url, hubs["col"], "columnar", 5).run()
        assert again.hub["created"] == 30 - stored and again.hub["updated"] == 0
        a, b = _dump(hubs["ref"]), _dump(hubs["col"])
        for key in ("orders", "lines", "holds", "lineage", "quarantine", "state"):
            assert a[key] == b[key], key


def test_a_source_failure_on_the_reader_thread_fails_the_run_and_a_rerun_ends_exact(monkeypatch) -> None:  # noqa: ANN001
    """The reader thread (one page ahead of canonicalization) fails on the fourth page: the run fails with that
    error, raised on the run's own thread; the hub keeps only whole committed pages, each with its bookmark; the next
    run ends with exactly the hub of one uninterrupted run (nothing lost, nothing doubled)."""
    from orderhub.connectors.common.errors import OrderhubError
    from orderhub.connectors.erp_sql.reader import OrderReader

    _fails_midrun_then_reruns_exact(monkeypatch, OrderReader, "_arrow_page", 4,
                                    OrderhubError("the ERP went away", code="source_failed", retryable=True),
                                    "oh_col_fail")


def test_an_encoder_failure_fails_the_run_and_a_rerun_ends_exact(monkeypatch) -> None:  # noqa: ANN001
    """The encoder thread (COPY streams of the page after the one being stored) fails on the third page: the run
    fails with that error on its own thread, the writer stores nothing after it, the hub keeps whole committed
    pages with their bookmark, and a re-run ends with the hub of one uninterrupted run."""
    from orderhub.connectors.hub.store import ColumnarRows

    _fails_midrun_then_reruns_exact(monkeypatch, ColumnarRows, "encode", 3, RuntimeError("out of encoder"),
                                    "oh_col_enc")


def test_polars_allocator_defaults_apply_before_polars_loads_and_keep_a_users_setting() -> None:
    import os
    import subprocess
    import sys

    from orderhub.flows.columnar_step import POLARS_MALLOC_CONF, release_memory

    code = ("import os, sys; from orderhub.flows.columnar_step import _allocator_defaults; _allocator_defaults(); "
            "print(os.environ.get('_RJEM_MALLOC_CONF'), 'polars' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [POLARS_MALLOC_CONF, "False"]
    out = subprocess.run([sys.executable, "-c", code], env={**env, "_RJEM_MALLOC_CONF": "narenas:2"},
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["narenas:2", "False"]
    release_memory()  # glibc's malloc_trim here; twice is harmless
    release_memory()
