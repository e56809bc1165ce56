"""OrderReader against real MariaDB: nesting, exact types, boundary-safe bookmarks, look-back, resume, partitions,
quarantine of zero dates, and the same data through PyMySQL, pyodbc (MariaDB ODBC) and PostgreSQL."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from orderhub.connectors.common.errors import ConfigError
from orderhub.connectors.erp_sql.reader import OrderReader
from tests.erp_sql.conftest import CST, T0, reader_config


def ids(records):
    return [r["id"] for r in records]


def run(reader, state=None):
    """All records of one run and the state after its last batch."""
    out, final = [], state or {}
    for batch, final in reader.iter_batches(state):
        out.extend(batch)
    return out, final


def test_reads_orders_with_nested_lines_exact_decimals_and_aware_times(erp):
    erp.add_orders(range(1, 4), lines=3)
    records, state = run(OrderReader(reader_config(erp)))
    assert ids(records) == [1, 2, 3]
    first = records[0]
    assert first["_shop"] == erp.name
    assert [ln["line_no"] for ln in first["lines"]] == [1, 2, 3]
    assert [ln["id"] for ln in first["lines"]] == [11, 12, 13]
    assert first["lines"][1]["qty"] == Decimal("2.0000") and isinstance(first["lines"][1]["qty"], Decimal)
    assert first["lines"][2]["amount"] == Decimal("1.08")
    assert first["total_amount"] == Decimal("1.08") + Decimal("0.72") + Decimal("0.36")
    assert first["updated_at"] == T0.replace(tzinfo=CST) and first["updated_at"].utcoffset() == dt.timedelta(hours=8)
    assert first["customer_name"] == "客户1五金"
    assert state["partitions"][erp.name] == {"updated_at": "2026-03-01T09:00:00+08:00", "pk": 3, "naive": True}


def test_rows_sharing_one_updated_at_across_batch_edges_are_read_exactly_once(erp):
    erp.add_orders(range(1, 6), updated_at=T0 - dt.timedelta(hours=1))
    first, state = run(OrderReader(reader_config(erp)))
    assert ids(first) == [1, 2, 3, 4, 5]
    # 50 orders committed with one timestamp; batches of 7 cut through them seven times.
    erp.add_orders(range(100, 150), updated_at=T0)
    reader = OrderReader(reader_config(erp, batch_size=7))
    batches = [(list(b), s) for b, s in reader.iter_batches(state)]
    got = [r["id"] for b, _ in batches for r in b]
    assert got == list(range(100, 150))
    assert [len(b) for b, _ in batches] == [7] * 7 + [1]
    # each batch's state points exactly at its last row: resuming from any of them skips nothing
    for k, (b, s) in enumerate(batches):
        assert s["partitions"][erp.name]["pk"] == b[-1]["id"]
        rest, _ = run(OrderReader(reader_config(erp, batch_size=7)), s)
        assert ids(rest) == got[sum(len(x) for x, _ in batches[:k + 1]):]
    again, _ = run(reader, batches[-1][1])
    assert again == []


def test_late_commit_with_older_timestamp_is_caught_by_the_lookback_window(erp):
    erp.add_orders(range(1, 11), updated_at=T0, step=dt.timedelta(seconds=10))  # 09:00:00 … 09:01:30
    _, state = run(OrderReader(reader_config(erp)))
    assert state["partitions"][erp.name]["updated_at"] == "2026-03-01T09:01:30+08:00"
    # A transaction that started at 09:01:00 commits now, after our run: its timestamp is older than the bookmark.
    erp.add_orders([500], updated_at=T0 + dt.timedelta(seconds=60))
    without, _ = run(OrderReader(reader_config(erp, lookback_seconds=0)), state)
    assert ids(without) == []
    caught, state2 = run(OrderReader(reader_config(erp, lookback_seconds=60)), state)
    # the window (09:00:30 onwards) re-reads recent orders too; the hub drops unchanged ones by hash
    assert 500 in ids(caught) and ids(caught) == [4, 5, 6, 7, 500, 8, 9, 10]
    assert state2["partitions"][erp.name]["pk"] == 10  # the bookmark never moves backwards


def _store_until_crash(reader, state, crash_after):
    """Store batches and commit their state; 'crash' after storing ``crash_after`` batches plus half of the
    next one (stored but not committed)."""
    stored, committed = {}, state
    for n, (batch, new_state) in enumerate(reader.iter_batches(state)):
        if n == crash_after:
            for r in batch[: len(batch) // 2]:
                stored[r["id"]] = r
            return stored, committed
        for r in batch:
            stored[r["id"]] = r
        committed = new_state
    return stored, committed


@pytest.mark.parametrize("initial", [True, False], ids=["initial_full_pass", "incremental"])
def test_run_interrupted_after_a_partial_batch_resumes_exactly(erp, initial):
    if not initial:
        erp.add_orders(range(1, 4), updated_at=T0 - dt.timedelta(days=1))
        _, base = run(OrderReader(reader_config(erp)))
    else:
        base = {}
    erp.add_orders(range(10, 40), updated_at=T0, step=dt.timedelta(seconds=1))
    erp.add_orders(range(40, 50), updated_at=T0 + dt.timedelta(minutes=5))  # a tie group at the end
    stored, committed = _store_until_crash(OrderReader(reader_config(erp, batch_size=6)), base, crash_after=3)
    assert len(stored) == 3 * 6 + 3
    emitted_after_resume = []
    for batch, committed in OrderReader(reader_config(erp, batch_size=6)).iter_batches(committed):
        emitted_after_resume.extend(ids(batch))
        for r in batch:
            stored[r["id"]] = r
    assert sorted(stored) == list(range(10, 50))
    # only the uncommitted batch is read again, nothing before it
    assert emitted_after_resume == list(range(28, 50))
    assert committed["partitions"][erp.name]["pk"] == 49


def test_full_mode_reads_everything_and_leaves_the_high_water_mark_as_bookmark(erp):
    erp.add_orders(range(1, 21), updated_at=T0, step=dt.timedelta(seconds=-1))  # pk order ≠ time order
    records, state = run(OrderReader(reader_config(erp, mode="full", batch_size=6)), {})
    assert ids(records) == list(range(1, 21))
    assert state["partitions"][erp.name] == {"naive": True, "updated_at": "2026-03-01T09:00:00+08:00", "pk": 1}
    erp.touch([7], T0 + dt.timedelta(hours=1), status="Z")
    changed, _ = run(OrderReader(reader_config(erp)), state)
    assert ids(changed) == [7] and changed[0]["status"] == "Z"


def test_partitions_keep_their_own_bookmarks(erp_factory):
    a, b = erp_factory("_a"), erp_factory("_b")
    a.add_orders(range(1, 4))
    b.add_orders(range(1, 3))
    cfg = reader_config(a, partitions=[{"name": "book_a", "schema": a.name}, {"name": "book_b", "schema": b.name}])
    records, state = run(OrderReader(cfg))
    assert [(r["_shop"], r["id"]) for r in records] == [("book_a", 1), ("book_a", 2), ("book_a", 3),
                                                        ("book_b", 1), ("book_b", 2)]
    assert state["partitions"]["book_a"]["pk"] == 3 and state["partitions"]["book_b"]["pk"] == 2
    b.touch([1], T0 + dt.timedelta(minutes=1))
    records, state2 = run(OrderReader(cfg), state)
    assert [(r["_shop"], r["id"]) for r in records] == [("book_b", 1)]
    assert state2["partitions"]["book_a"] == state["partitions"]["book_a"]


def test_partition_filter_reads_one_company_of_a_shared_table(erp):
    erp.add_orders(range(1, 7))
    cfg = reader_config(erp, partitions=[{"name": "c1", "filter": {"customer_code": "C1"}},
                                         {"name": "c2", "filter": {"customer_code": "C2"}}])
    records, _ = run(OrderReader(cfg))
    assert [(r["_shop"], r["id"]) for r in records] == [("c1", 1), ("c2", 2)]


def test_an_order_whose_lines_alone_changed_is_read_again(erp):
    erp.add_orders(range(1, 6))
    cfg = reader_config(erp, line_updated_at="updated_at")
    records, state = run(OrderReader(cfg))
    assert ids(records) == [1, 2, 3, 4, 5]  # first run: each order once, not again for its lines
    erp.sql("UPDATE so_line SET qty = 9, updated_at = %s WHERE id = 32", [T0 + dt.timedelta(minutes=2)])
    records, state2 = run(OrderReader(cfg), state)
    assert ids(records) == [3]
    assert records[0]["lines"][1]["qty"] == Decimal("9.0000")
    assert state2["partitions"][erp.name]["line_pk"] == 32
    assert run(OrderReader(cfg), state2)[0] == []


def test_mysql_zero_date_becomes_a_quarantine_entry_and_the_batch_goes_on(erp):
    erp.add_orders(range(1, 6))
    erp.sql("SET SESSION sql_mode = ''")
    erp.sql("UPDATE so_header SET order_date = '0000-00-00 00:00:00' WHERE id = 3")
    erp.sql("UPDATE so_line SET updated_at = '0000-00-00 00:00:00' WHERE id = 42")
    reader = OrderReader(reader_config(erp, batch_size=10))
    batches = list(reader.iter_batches({}))
    good = [r for b, _ in batches for r in b]
    errors = [e for b, _ in batches for e in b.errors]
    assert ids(good) == [1, 2, 5]
    assert sorted((e.record_id, e.code, e.field) for e in errors) == [
        (f"{erp.name}/3", "zero_date", "order_date"), (f"{erp.name}/4", "zero_date", "lines[1].updated_at")]
    assert errors[0].details["record"]["order_date"] == "0000-00-00 00:00:00"
    assert reader.stats["quarantined"] == 2


def test_a_query_per_stream_can_replace_the_tables(erp):
    erp.add_orders(range(1, 4))
    cfg = reader_config(erp, header_table=None, line_table=None,
                        header_query="SELECT h.*, CONCAT(h.customer_code, '-x') AS cust_tag FROM so_header h "
                                     "WHERE h.status <> 'Z'",
                        line_query="SELECT id, header_id, sku, qty, updated_at FROM so_line WHERE line_no <= 2")
    cfg = {k: v for k, v in cfg.items() if v is not None}
    records, _ = run(OrderReader(cfg))
    assert ids(records) == [1, 2, 3]
    assert records[0]["cust_tag"] == "C1-x"
    assert [sorted(ln) for ln in records[0]["lines"]][0] == ["header_id", "id", "qty", "sku", "updated_at"]
    assert [len(r["lines"]) for r in records] == [2, 2, 2]


@pytest.mark.parametrize("driver", ["mysql+pymysql", "pyodbc"])
def test_other_drivers_read_the_same_orders(erp, driver):
    erp.add_orders(range(1, 9), step=dt.timedelta(seconds=1))
    expected, state = run(OrderReader(reader_config(erp)))
    if driver == "pyodbc":
        from urllib.parse import quote_plus

        odbc = f"DRIVER={{MariaDB Unicode}};SERVER=127.0.0.1;PORT=3306;DATABASE={erp.name};UID=root;PWD="
        url = f"mysql+pyodbc:///?odbc_connect={quote_plus(odbc)}"
    else:
        url = f"{driver}://root@127.0.0.1:3306/{erp.name}"
    got, state2 = run(OrderReader(reader_config(erp, url=url, shop=erp.name)))
    assert got == expected
    assert state2 == state
    erp.touch([5], T0 + dt.timedelta(hours=1))
    assert ids(run(OrderReader(reader_config(erp, url=url, shop=erp.name)), state2)[0]) == [5]


def test_postgresql_source_reads_the_same_orders(erp, pg_url):
    import sqlalchemy as sa

    erp.add_orders(range(1, 5))
    expected, _ = run(OrderReader(reader_config(erp, shop="s")))
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE so_header (id bigint primary key, bill_no text, customer_code text, "
                          "customer_name text, order_date timestamp, status text, total_amount numeric(18,2), "
                          "currency text, remark text, receiver_name text, receiver_phone text, receiver_address text,"
                          " urgent smallint, updated_at timestamp(6) not null)")
        c.exec_driver_sql("CREATE TABLE so_line (id bigint primary key, header_id bigint, line_no int, sku text, "
                          "sku_name text, qty numeric(18,4), price numeric(18,4), amount numeric(18,2), "
                          "updated_at timestamp(6) not null)")
        for table in ("so_header", "so_line"):
            rows = erp.sql(f"SELECT * FROM {table}")
            marks = ", ".join(["%s"] * len(rows[0]))
            c.exec_driver_sql(f"INSERT INTO {table} VALUES ({marks})", [tuple(r) for r in rows])
    eng.dispose()
    got, state = run(OrderReader(reader_config(erp, url=pg_url, shop="s")))
    assert got == expected
    assert state["partitions"]["s"]["naive"] is True


def test_unknown_setting_names_the_closest_known_one():
    with pytest.raises(ConfigError, match=r"heder_table: unknown setting — did you mean 'header_table'\?"):
        OrderReader({"url": "mysql://x/y", "heder_table": "so_header", "line_table": "so_line", "join_key": "h",
                     "updated_at": "u"})


@pytest.mark.parametrize("bad", ["so_header; drop table x", "so_header --", "`so_header`", "a.b.c", "so header"])
def test_table_names_that_could_inject_sql_are_refused(bad):
    with pytest.raises(ConfigError, match="header_table: .* is not a valid SQL identifier"):
        OrderReader({"url": "mysql://x/y", "header_table": bad, "line_table": "so_line", "join_key": "h",
                     "updated_at": "u"})


def test_a_missing_column_is_named_with_a_suggestion(erp):
    reader = OrderReader(reader_config(erp, updated_at="updatd_at"))
    with pytest.raises(ConfigError, match="header_table: column 'updatd_at' not found .* did you mean 'updated_at'"):
        reader.check()


def test_first_run_reads_each_order_once_even_with_a_lookback_window(erp):
    erp.add_orders(range(1, 30), step=dt.timedelta(seconds=1))
    records, state = run(OrderReader(reader_config(erp, lookback_seconds=300, batch_size=8)))
    assert ids(records) == list(range(1, 30))
    again, _ = run(OrderReader(reader_config(erp, lookback_seconds=300, batch_size=8)), state)
    assert ids(again) == list(range(1, 30))  # later runs re-read the window on purpose (late commits)


def test_a_connection_the_server_drops_inside_fetch_orders_is_a_transient_error_not_a_crash(erp, monkeypatch):
    """The columnar engine hands orders back through ``fetch_orders``; when MariaDB drops that connection (here
    a real ``KILL CONNECTION`` after the lines are read, before the closing rollback) the run must end with one
    classified, retryable error, not a raw ``MySQLdb.OperationalError`` and a stack trace (a CI fault trial
    crashed exactly there)."""
    from orderhub.connectors.common.errors import TransientError
    from orderhub.connectors.erp_sql import reader as reader_mod

    erp.add_orders(range(1, 4))
    rd = OrderReader(reader_config(erp))
    part_name = next(iter(rd._parts))
    real_assemble = reader_mod.OrderReader._assemble
    killed = []

    def assemble_then_drop(self, part, conn, headers, key_range=None):
        batch = real_assemble(self, part, conn, headers, key_range)
        cid = conn.driver_connection.thread_id()
        erp.sql(f"KILL CONNECTION {int(cid)}")
        killed.append(cid)
        return batch

    monkeypatch.setattr(reader_mod.OrderReader, "_assemble", assemble_then_drop)
    with pytest.raises(TransientError) as info:
        rd.fetch_orders(part_name, [1, 2, 3])
    assert killed and info.value.retryable
    assert "Lost connection" in str(info.value) or "gone away" in str(info.value)
    monkeypatch.undo()
    assert [r["id"] for r in rd.fetch_orders(part_name, [1, 2, 3])] == [1, 2, 3]  # a new connection reads again
