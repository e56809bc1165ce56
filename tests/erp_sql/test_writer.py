"""OrderWriter against real databases: interface table (中间表) and ERP order tables, per-dialect upserts,
idempotent re-sends, replaced lines, one transaction per batch, bad orders isolated. Orders come from the
benchmark-schema ERP through the reader and the erp_sql mapping (the in-process path of the flows)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from orderhub.connectors.common.errors import ConfigError
from orderhub.connectors.erp_sql.reader import OrderReader
from orderhub.connectors.erp_sql.writer import OrderWriter
from orderhub.transforms.canonical import canonicalize
from orderhub.transforms.mapping import load_mapping
from tests.erp_sql.conftest import CST, create_mariadb, drop_mariadb, mysql_url, reader_config

NOW = dt.datetime(2026, 3, 2, tzinfo=CST)


def canonical_orders(erp, **cfg):
    mapping = load_mapping("erp_sql")
    records = [r for b, _ in OrderReader(reader_config(erp, **cfg)).iter_batches({}) for r in b]
    return [canonicalize(r, mapping, now=NOW) for r in records]


def rows(url: str, sql: str) -> list[tuple]:
    from orderhub.connectors.erp_sql.db import normalize_url

    eng = sa.create_engine(normalize_url(url))
    with eng.connect() as c:
        out = [tuple(r) for r in c.execute(sa.text(sql))]
    eng.dispose()
    return out


@pytest.fixture
def target_mariadb():
    import uuid

    name = f"oh_test_erp_{uuid.uuid4().hex[:8]}_t"
    create_mariadb(name, schema="SELECT 1")
    yield mysql_url(name)
    drop_mariadb(name)


@pytest.fixture(params=["mariadb", "postgresql"])
def target_url(request, target_mariadb, pg_url):
    return target_mariadb if request.param == "mariadb" else pg_url


def test_interface_table_gets_same_orders_lines_and_amounts_and_a_resend_changes_nothing(erp, target_url):
    erp.add_orders(range(1, 13), lines=3)
    orders = canonical_orders(erp)
    writer = OrderWriter({"url": target_url, "batch_size": 5})
    first = writer.write(orders)
    assert [r["result"] for r in first] == ["created"] * 12
    assert [r["order_id"] for r in first] == [o["order_id"] for o in orders]
    head = rows(target_url, "SELECT source_id, order_no, order_status, total_amount, status, attempts, is_urgent "
                            "FROM orderhub_so_interface ORDER BY order_no")
    assert [(h[1], h[2], Decimal(h[3]), h[4], h[5]) for h in head] == [
        (o["source_order_id"], o["status"], o["total_amount"], "NEW", 0) for o in orders]
    assert [bool(h[6]) for h in head] == [o["is_urgent"] for o in orders] and any(o["is_urgent"] for o in orders)
    lines = rows(target_url, "SELECT source_id, line_no, sku, qty, amount FROM orderhub_so_interface_line "
                             "ORDER BY source_id, line_no")
    expect = sorted((o["order_id"], ln["line_no"], ln["canonical_sku"], ln["qty"], ln["amount"])
                    for o in orders for ln in o["lines"])
    assert [(a, b, c, Decimal(d), Decimal(e)) for a, b, c, d, e in lines] == expect
    # the same stream again: nothing doubled, every order reported unchanged with its earlier target_ref
    again = writer.write(orders)
    assert [r["result"] for r in again] == ["unchanged"] * 12
    assert [r["target_ref"] for r in again] == [r["target_ref"] for r in first]
    assert rows(target_url, "SELECT COUNT(*) FROM orderhub_so_interface")[0][0] == 12
    assert rows(target_url, "SELECT COUNT(*) FROM orderhub_so_interface_line")[0][0] == 36
    log = writer.read_back()
    assert {k: v["result"] for k, v in log.items()} == {o["order_id"]: "created" for o in orders}
    writer.close()


def test_a_changed_order_is_updated_its_lines_replaced_and_it_goes_back_to_new(erp, target_mariadb):
    erp.add_orders(range(1, 4), lines=3)
    writer = OrderWriter({"url": target_mariadb})
    orders = canonical_orders(erp)
    writer.write(orders)
    # the ERP's importer took order 2 and wrote back its bill number
    oid = orders[1]["order_id"]
    rows(target_mariadb, "SELECT 1")
    eng = sa.create_engine(target_mariadb.replace("mysql://", "mysql+mysqldb://"))
    with eng.begin() as c:
        c.execute(sa.text("UPDATE orderhub_so_interface SET status='OK', erp_bill_no='XSDD0002', attempts=1 "
                          "WHERE source_id = :s"), {"s": oid})
    eng.dispose()
    erp.sql("DELETE FROM so_line WHERE id = 23")
    erp.sql("UPDATE so_header SET status = 'Z', total_amount = 1.23 WHERE id = 2")
    changed = canonical_orders(erp)
    results = OrderWriter({"url": target_mariadb}).write(changed)
    assert [r["result"] for r in results] == ["unchanged", "updated", "unchanged"]
    assert rows(target_mariadb, f"SELECT order_status, total_amount, status, attempts, erp_bill_no "
                                f"FROM orderhub_so_interface WHERE source_id = '{oid}'") == [
        ("cancelled", Decimal("1.23"), "NEW", 0, "XSDD0002")]
    assert rows(target_mariadb, f"SELECT line_no FROM orderhub_so_interface_line WHERE source_id = '{oid}' "
                                f"ORDER BY line_no") == [(1,), (2,)]


ERP_TABLES = """
CREATE TABLE erp_so (id BIGINT AUTO_INCREMENT PRIMARY KEY, ext_no VARCHAR(64) NOT NULL UNIQUE,
  bill_no VARCHAR(32), status CHAR(1), total DECIMAL(18,2), order_time DATETIME, memo VARCHAR(20), urgent TINYINT);
CREATE TABLE erp_so_line (id BIGINT AUTO_INCREMENT PRIMARY KEY, so_id BIGINT NOT NULL, seq INT, item VARCHAR(64),
  qty DECIMAL(18,4), amount DECIMAL(18,2), KEY (so_id))
"""
TABLES_CFG = {
    "mode": "tables", "header_table": "erp_so", "line_table": "erp_so_line", "header_key": "ext_no",
    "line_parent": {"so_id": "id"}, "ref_column": "id",
    "header_columns": {"ext_no": "order_id", "bill_no": "source_order_id",
                       "status": {"field": "status", "map": {"awaiting_confirmation": "A", "confirmed": "B",
                                                             "shipped": "C", "completed": "D", "cancelled": "Z"},
                                  "strict": True},
                       "total": "total_amount", "order_time": "created_at", "memo": "special_requirements",
                       "urgent": "is_urgent"},
    "line_columns": {"seq": "line_no", "item": "canonical_sku", "qty": "qty", "amount": "amount"},
}


def test_erp_order_tables_link_lines_to_the_generated_header_id(erp):
    import uuid

    name = f"oh_test_erp_{uuid.uuid4().hex[:8]}_own"
    create_mariadb(name, schema=ERP_TABLES)
    try:
        url = mysql_url(name)
        erp.add_orders(range(1, 6), lines=2)
        orders = canonical_orders(erp)
        writer = OrderWriter({"url": url, **TABLES_CFG})
        results = writer.write(orders)
        assert [r["result"] for r in results] == ["created"] * 5
        heads = rows(url, "SELECT id, ext_no, bill_no, status, total, order_time, urgent FROM erp_so ORDER BY id")
        assert [r["target_ref"] for r in results] == [str(h[0]) for h in heads]
        assert [(h[1], h[2], h[3], h[4]) for h in heads] == [
            (o["order_id"], o["source_order_id"], "ABCDZ"[int(o["source_order_id"][2:]) % 5], o["total_amount"])
            for o in orders]
        assert heads[0][5] == dt.datetime(2026, 3, 1, 9, 0)  # Shanghai wall time in a naive DATETIME
        lines = rows(url, "SELECT so_id, seq, item, qty, amount FROM erp_so_line ORDER BY so_id, seq")
        assert [(so, seq) for so, seq, *_ in lines] == [(h[0], k) for h in heads for k in (1, 2)]
        assert sum(Decimal(a) for *_, a in lines) == sum(o["goods_amount"] for o in orders)
        assert [r["result"] for r in writer.write(orders)] == ["unchanged"] * 5
        assert rows(url, "SELECT COUNT(*) FROM erp_so_line")[0][0] == 10
    finally:
        drop_mariadb(name)


def test_one_bad_order_fails_alone_and_its_batch_neighbours_are_written(erp):
    import uuid

    name = f"oh_test_erp_{uuid.uuid4().hex[:8]}_own"
    create_mariadb(name, schema=ERP_TABLES)
    try:
        url = mysql_url(name)
        erp.add_orders(range(1, 5), lines=1)
        orders = canonical_orders(erp)
        orders[1]["special_requirements"] = "很长的备注" * 10  # memo is VARCHAR(20)
        orders[2]["status"] = "on_hold"  # no entry in the strict status map
        results = OrderWriter({"url": url, **TABLES_CFG}).write(orders)
        assert [r["result"] for r in results] == ["created", "failed", "failed", "created"]
        assert "field special_requirements" in results[1]["message"] and "takes 20" in results[1]["message"]
        assert "field status" in results[2]["message"] and "'on_hold'" in results[2]["message"]
        assert rows(url, "SELECT bill_no FROM erp_so ORDER BY bill_no") == [("SO000001",), ("SO000004",)]
    finally:
        drop_mariadb(name)


def test_a_failure_inside_the_transaction_leaves_nothing_half_written(erp, target_mariadb, monkeypatch):
    erp.add_orders(range(1, 4), lines=2)
    orders = canonical_orders(erp)
    writer = OrderWriter({"url": target_mariadb, "retry_attempts": 1})
    writer._setup()

    def boom(*a, **k):
        raise RuntimeError("killed between header upsert and lines")

    monkeypatch.setattr(writer, "_replace_lines", boom)
    with pytest.raises(Exception, match="killed"):
        writer.write(orders)
    assert rows(target_mariadb, "SELECT COUNT(*) FROM orderhub_so_interface")[0][0] == 0
    assert rows(target_mariadb, "SELECT COUNT(*) FROM orderhub_write_log")[0][0] == 0
    monkeypatch.undo()
    assert [r["result"] for r in OrderWriter({"url": target_mariadb}).write(orders)] == ["created"] * 3
    assert rows(target_mariadb, "SELECT COUNT(*) FROM orderhub_so_interface_line")[0][0] == 6


def test_held_orders_are_not_written(erp, target_mariadb):
    erp.add_orders(range(1, 3), lines=1)
    orders = canonical_orders(erp)
    orders[0]["held"] = True
    orders[0]["hold_reasons"] = [{"code": "credit_limit", "message": "over credit"}]
    results = OrderWriter({"url": target_mariadb}).write(orders)
    assert [(r["result"], r["message"]) for r in results] == [
        ("held", "held by rules (credit_limit); not written"), ("created", None)]
    assert rows(target_mariadb, "SELECT order_no FROM orderhub_so_interface") == [("SO000002",)]


def test_pyodbc_writes_through_the_mariadb_odbc_driver(erp, target_mariadb):
    from urllib.parse import quote_plus

    erp.add_orders(range(1, 4), lines=2)
    orders = canonical_orders(erp)
    db = target_mariadb.rsplit("/", 1)[1]
    odbc = f"DRIVER={{MariaDB Unicode}};SERVER=127.0.0.1;PORT=3306;DATABASE={db};UID=root;PWD="
    url = f"mysql+pyodbc:///?odbc_connect={quote_plus(odbc)}"
    writer = OrderWriter({"url": url})
    assert [r["result"] for r in writer.write(orders)] == ["created"] * 3
    assert [r["result"] for r in writer.write(orders)] == ["unchanged"] * 3
    assert rows(target_mariadb, "SELECT COUNT(*), SUM(amount) FROM orderhub_so_interface_line") == [
        (6, sum(ln["amount"] for o in orders for ln in o["lines"]))]


def test_an_upsert_key_without_a_unique_index_is_refused(erp):
    import uuid

    name = f"oh_test_erp_{uuid.uuid4().hex[:8]}_own"
    create_mariadb(name, schema=ERP_TABLES)
    try:
        cfg = {**TABLES_CFG, "header_key": "bill_no"}
        with pytest.raises(ConfigError, match=r"header_key: no unique index or primary key on erp_so\(bill_no\)"):
            OrderWriter({"url": mysql_url(name), **cfg}).write([])
    finally:
        drop_mariadb(name)


def test_missing_tables_and_columns_are_named(target_mariadb):
    with pytest.raises(ConfigError, match=r"header_table: table\(s\) \['orderhub_write_log', 'orderhub_so_interface', "
                                          r"'orderhub_so_interface_line'\] do not exist .* \(set create_tables: true"):
        OrderWriter({"url": target_mariadb, "create_tables": False}).write([])
    OrderWriter({"url": target_mariadb}).write([])  # creates the interface tables
    with pytest.raises(ConfigError, match="header_columns: column 'order_nr' not in table orderhub_so_interface"):
        OrderWriter({"url": target_mariadb, "header_columns": {"order_nr": "source_order_id"},
                     "create_tables": False}).write([])
