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
