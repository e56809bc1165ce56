"""SQL Server and Oracle without a server: the generated SQL (incremental keyset page, MERGE upsert) compiled
with SQLAlchemy's mssql and oracle dialects. With ``ORDERHUB_TEST_MSSQL_URL`` / ``ORDERHUB_TEST_ORACLE_URL`` set,
the same read/write round trip that runs here on PostgreSQL runs against the real server."""
from __future__ import annotations

import datetime as dt
import os
import uuid
from decimal import Decimal

import pytest
import sqlalchemy as sa

from orderhub.connectors.erp_sql.db import compile_for, normalize_url
from orderhub.connectors.erp_sql.reader import OrderReader, _Source
from orderhub.connectors.erp_sql.sql import upsert
from orderhub.connectors.erp_sql.writer import OrderWriter

CST = dt.timezone(dt.timedelta(hours=8))
MSSQL = "mssql://u:pw@db.example:1433/UFDATA_001_2024?driver=ODBC+Driver+18+for+SQL+Server"
ORACLE = "oracle://u:pw@db.example:1521/?service_name=ERP"


def _page(url: str, schema: str | None):
    reader = OrderReader({"url": url, "header_table": "SO_SOMain", "line_table": "SO_SODetails", "join_key": "ID",
                          "primary_key": "ID", "line_primary_key": "AutoId", "updated_at": "dmoddate",
                          "batch_size": 500})
    db = reader._parts[reader.partition_names[0]].db
    src = _Source(sa.table("SO_SOMain", sa.column("ID"), sa.column("cSOCode"), sa.column("dmoddate"), schema=schema),
                  ["ID", "cSOCode", "dmoddate"], "ID", ["dmoddate"])
    after = (dt.datetime(2026, 3, 1, 9, 0, tzinfo=CST), 42)
    return db, compile_for(reader.page_statement(src, {}, after, naive=True), db.dialect)


def test_sql_server_page_is_a_top_n_keyset_query_with_bound_values():
    db, (sql, params) = _page(MSSQL, "dbo")
    assert db.driver == "pyodbc" and db.in_list_limit == 2000
    assert " ".join(sql.split()) == (
        "SELECT TOP 500 dbo.[SO_SOMain].[ID], dbo.[SO_SOMain].[cSOCode], dbo.[SO_SOMain].dmoddate "
        "FROM dbo.[SO_SOMain] WHERE dbo.[SO_SOMain].dmoddate >= ? AND (dbo.[SO_SOMain].dmoddate > ? "
        "OR dbo.[SO_SOMain].[ID] > ?) ORDER BY dbo.[SO_SOMain].dmoddate, dbo.[SO_SOMain].[ID]")
    # the bookmark is bound as the ERP's naive wall-clock time, never inlined
    assert params == (dt.datetime(2026, 3, 1, 9, 0), dt.datetime(2026, 3, 1, 9, 0), 42)


def test_oracle_page_uses_fetch_first_and_named_binds():
    db, (sql, params) = _page(ORACLE, None)
    assert db.driver == "oracledb" and db.in_list_limit == 1000
    assert " ".join(sql.split()) == (
        'SELECT "SO_SOMain"."ID", "SO_SOMain"."cSOCode", "SO_SOMain".dmoddate FROM "SO_SOMain" '
        'WHERE "SO_SOMain".dmoddate >= :param_1 AND ("SO_SOMain".dmoddate > :param_2 OR "SO_SOMain"."ID" > :param_3) '
        'ORDER BY "SO_SOMain".dmoddate, "SO_SOMain"."ID" FETCH FIRST 500 ROWS ONLY')
    assert params["param_1"] == dt.datetime(2026, 3, 1, 9, 0) and params["param_3"] == 42


def _iface_table() -> sa.Table:
    md = sa.MetaData()
    return sa.Table("orderhub_so_interface", md, sa.Column("source_system", sa.String(32)),
                    sa.Column("source_id", sa.String(128)), sa.Column("total_amount", sa.Numeric(18, 2)),
                    sa.Column("status", sa.String(8)), schema="erp")


def _compiled(dialect_name: str) -> str:
    from sqlalchemy.dialects import mssql, oracle

    t = _iface_table()
    stmt = upsert(dialect_name, t, ["source_system", "source_id", "total_amount", "status"],
                  ["source_system", "source_id"], ["total_amount", "status", "source_id"])
    dialect = {"mssql": mssql.dialect(), "oracle": oracle.dialect()}[dialect_name]
    return " ".join(str(stmt.compile(dialect=dialect)).split())


def test_sql_server_upsert_is_a_holdlock_merge():
    assert _compiled("mssql") == (
        "MERGE INTO erp.orderhub_so_interface WITH (HOLDLOCK) AS tgt "
        "USING (VALUES (:source_system, :source_id, :total_amount, :status)) "
        "AS src (source_system, source_id, total_amount, status) "
        "ON tgt.source_system = src.source_system AND tgt.source_id = src.source_id "
        "WHEN MATCHED THEN UPDATE SET tgt.total_amount = src.total_amount, tgt.status = src.status "
        "WHEN NOT MATCHED THEN INSERT (source_system, source_id, total_amount, status) "
        "VALUES (src.source_system, src.source_id, src.total_amount, src.status);")


def test_oracle_upsert_is_a_merge_from_dual_that_never_updates_the_key():
    assert _compiled("oracle") == (
        "MERGE INTO erp.orderhub_so_interface tgt USING (SELECT :source_system AS source_system, "
        ":source_id AS source_id, :total_amount AS total_amount, :status AS status FROM dual) src "
        "ON (tgt.source_system = src.source_system AND tgt.source_id = src.source_id) "
        "WHEN MATCHED THEN UPDATE SET tgt.total_amount = src.total_amount, tgt.status = src.status "
        "WHEN NOT MATCHED THEN INSERT (source_system, source_id, total_amount, status) "
        "VALUES (src.source_system, src.source_id, src.total_amount, src.status)")


def test_sql_server_merge_binds_positionally_for_pyodbc():
    from orderhub.connectors.erp_sql.db import Database, load_timezone

    db = Database(normalize_url(MSSQL), load_timezone("Asia/Shanghai"))
    stmt = upsert("mssql", _iface_table(), ["source_system", "source_id", "total_amount"],
                  ["source_system", "source_id"], ["total_amount"])
    compiled = stmt.compile(dialect=db.dialect)
    assert db.dialect.paramstyle == "qmark"
    assert str(compiled).count("?") == 3
    assert compiled.positiontup == ["source_system", "source_id", "total_amount"]


# --- the same round trip on every server we can reach ----------------------------------------------------------
SERVERS = [pytest.param("postgresql", id="postgresql"),
           pytest.param("mssql", id="mssql", marks=pytest.mark.skipif(
               not os.environ.get("ORDERHUB_TEST_MSSQL_URL"), reason="set ORDERHUB_TEST_MSSQL_URL")),
           pytest.param("oracle", id="oracle", marks=pytest.mark.skipif(
               not os.environ.get("ORDERHUB_TEST_ORACLE_URL"), reason="set ORDERHUB_TEST_ORACLE_URL"))]


@pytest.fixture
def server_url(request):
    if request.param == "postgresql":
        from tests.pg import fresh_pg_database

        with fresh_pg_database(prefix="oh_test_erp") as url:
            yield url, None
        return
    url = os.environ[f"ORDERHUB_TEST_{request.param.upper()}_URL"]
    yield url, f"oh_t{uuid.uuid4().hex[:6]}"  # table prefix in the given (disposable) schema


def _erp_tables(url: str, prefix: str | None) -> tuple[str, str]:
    h, ln = (f"{prefix}_h", f"{prefix}_l") if prefix else ("so_header", "so_line")
    md = sa.MetaData()
    sa.Table(h, md, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("bill_no", sa.String(32)), sa.Column("status", sa.String(16)),
             sa.Column("total_amount", sa.Numeric(18, 2)), sa.Column("updated_at", sa.DateTime, nullable=False))
    sa.Table(ln, md, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("header_id", sa.BigInteger, index=True), sa.Column("qty", sa.Numeric(18, 4)),
             sa.Column("amount", sa.Numeric(18, 2)), sa.Column("updated_at", sa.DateTime, nullable=False))
    eng = sa.create_engine(normalize_url(url))
    md.create_all(eng)
    t0 = dt.datetime(2026, 3, 1, 9, 0)
    with eng.begin() as c:
        c.execute(md.tables[h].insert(), [{"id": i, "bill_no": f"SO{i}", "status": "B",
                                           "total_amount": Decimal("3.30"), "updated_at": t0} for i in range(1, 8)])
        c.execute(md.tables[ln].insert(), [{"id": i * 10 + k, "header_id": i, "qty": Decimal(k),
                                            "amount": Decimal("1.10"), "updated_at": t0}
                                           for i in range(1, 8) for k in (1, 2, 3)])
    eng.dispose()
    return h, ln


@pytest.mark.parametrize("server_url", SERVERS, indirect=True)
def test_read_and_write_round_trip_on_the_server(server_url):
    url, prefix = server_url
    h, ln = _erp_tables(url, prefix)
    try:
        _round_trip(url, prefix, h, ln)
    finally:
        if prefix:  # a real server: drop what this test made
            eng = sa.create_engine(normalize_url(url))
            md = sa.MetaData()
            md.reflect(eng, only=lambda name, _: name.lower().startswith(prefix.lower()))
            md.drop_all(eng)
            eng.dispose()


def _round_trip(url: str, prefix: str | None, h: str, ln: str) -> None:
    cfg = {"url": url, "header_table": h, "line_table": ln, "join_key": "header_id", "updated_at": "updated_at",
           "batch_size": 3, "lookback_seconds": 0, "shop": "book1"}
    records = [r for batch, _ in OrderReader(cfg).iter_batches({}) for r in batch]
    assert [r["id"] for r in records] == list(range(1, 8))
    assert [ln_["qty"] for ln_ in records[0]["lines"]] == [Decimal(1), Decimal(2), Decimal(3)]
    assert records[0]["updated_at"] == dt.datetime(2026, 3, 1, 9, 0, tzinfo=CST)
    orders = [{"order_id": f"o_{r['id']}", "source_system": "erp", "source_order_id": r["bill_no"],
               "status": "confirmed", "total_amount": r["total_amount"], "updated_at": r["updated_at"],
               "lines": [{"line_no": i + 1, "canonical_sku": "M8", "qty": x["qty"], "amount": x["amount"]}
                         for i, x in enumerate(r["lines"])]} for r in records]
    wcfg = {"url": url, "header_table": f"{prefix or 'oh'}_if", "line_table": f"{prefix or 'oh'}_ifl",
            "write_log_table": f"{prefix or 'oh'}_wlog"}
    writer = OrderWriter(wcfg)
    assert [r["result"] for r in writer.write(orders)] == ["created"] * 7
    assert [r["result"] for r in writer.write(orders)] == ["unchanged"] * 7
    eng = writer.db.engine
    with eng.connect() as c:
        n_head = c.execute(sa.text(f"SELECT COUNT(*) FROM {wcfg['header_table']}")).scalar()
        n_line, total = c.execute(sa.text(f"SELECT COUNT(*), SUM(amount) FROM {wcfg['line_table']}")).one()
    assert (n_head, n_line, Decimal(total)) == (7, 21, Decimal("23.10"))
    writer.close()
