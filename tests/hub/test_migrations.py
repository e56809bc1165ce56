"""The hub's Alembic migrations: the head the fast start-up check compares with, an upgrade of an older hub, and
migrations that produce exactly the tables and indexes of ``schema.py``."""
from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from orderhub.connectors.hub import schema
from orderhub.connectors.hub.store import MIGRATIONS, SCHEMA_HEAD, HubStore


def _cfg() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def test_schema_head_constant_is_alembics_head():
    assert ScriptDirectory.from_config(_cfg()).get_current_head() == SCHEMA_HEAD


def test_migrations_match_schema_module(hub):
    with hub.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), schema.metadata)
    assert diff == []


def test_hub_at_0001_is_upgraded_on_open(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    eng = create_engine(url)
    cfg = _cfg()
    with eng.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0001")
    assert "ix_hub_orders_source_created" not in {i["name"] for i in inspect(eng).get_indexes("hub_orders")}
    eng.dispose()
    store = HubStore(url)
    try:
        assert store._at_head()
        assert "ix_hub_orders_source_created" in {i["name"] for i in inspect(store.engine).get_indexes("hub_orders")}
    finally:
        store.dispose()


@pytest.mark.postgres
def test_a_migrated_postgresql_hub_is_recognised_at_head(hub):
    assert hub._at_head()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def blank_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
    else:
        from tests.pg import fresh_pg_database

        with fresh_pg_database("oh_test_mig") as url:
            yield url


def test_lines_move_into_their_order_row_and_the_view_keeps_sql_working(blank_url):
    """A hub at 0002 with line rows is upgraded on open: every line arrives in its order's ``lines`` (exact
    amounts, gift flags, order by line number), ``hub_order_lines`` answers SQL as before, and a downgrade
    puts the rows back."""
    from decimal import Decimal

    from sqlalchemy import text

    eng = create_engine(blank_url)
    cfg = _cfg()
    with eng.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0002")
        for oid in ("o_a", "o_b", "o_empty"):
            c.execute(text("INSERT INTO hub_orders (order_id, source_system, source_order_id, status, base_status, "
                           "source_hold, status_rank, held, revision) VALUES (:o, 'erp', :o, 'paid', 'paid', "
                           ":f, 0, :f, 1)"), {"o": oid, "f": False})
        for oid, no, sku, qty, amount, gift in (("o_a", 2, "B", "1.5000", "12.3400", True),
                                                ("o_a", 1, "A", "3", "0.0100", False),
                                                ("o_b", 1, "C", "1", None, None)):
            c.execute(text("INSERT INTO hub_order_lines (order_id, line_no, source_line_id, canonical_sku, qty, "
                           "amount, is_gift) VALUES (:o, :n, :sid, :s, :q, :a, :g)"),
                      {"o": oid, "n": no, "sid": f"L{no}", "s": sku, "q": qty, "a": amount, "g": gift})
    eng.dispose()
    store = HubStore(blank_url)
    try:
        assert store._at_head()
        a, b, empty = store.load_orders(["o_a", "o_b", "o_empty"])
        assert [(ln["line_no"], ln["source_line_id"], ln["canonical_sku"], ln["qty"], ln["amount"], ln["is_gift"])
                for ln in a["lines"]] == [(1, "L1", "A", Decimal("3"), Decimal("0.01"), False),
                                          (2, "L2", "B", Decimal("1.5"), Decimal("12.34"), True)]
        assert all(type(ln["qty"]) is Decimal for ln in a["lines"])
        assert [(ln["canonical_sku"], ln["amount"], ln["is_gift"]) for ln in b["lines"]] == [("C", None, None)]
        assert empty["lines"] == []
        with store.engine.connect() as c:
            rows = c.execute(text("SELECT order_id, line_no, canonical_sku, qty, amount FROM hub_order_lines "
                                  "ORDER BY order_id, line_no")).all()
        assert [(r[0], r[1], r[2], Decimal(str(r[3])), None if r[4] is None else Decimal(str(r[4]))) for r in rows] \
            == [("o_a", 1, "A", Decimal(3), Decimal("0.01")), ("o_a", 2, "B", Decimal("1.5"), Decimal("12.34")),
                ("o_b", 1, "C", Decimal(1), None)]
        assert store.counts()["lines"] == 3
        with store.engine.begin() as c:
            cfg.attributes["connection"] = c
            command.downgrade(cfg, "0002")
        with store.engine.connect() as c:
            back = c.execute(text("SELECT order_id, line_no, qty FROM hub_order_lines ORDER BY 1, 2")).all()
        assert [(r[0], r[1], Decimal(str(r[2]))) for r in back] == [("o_a", 1, Decimal(3)), ("o_a", 2, Decimal("1.5")),
                                                                    ("o_b", 1, Decimal(1))]
        assert "hub_order_lines" in inspect(store.engine).get_table_names()
    finally:
        store.dispose()
