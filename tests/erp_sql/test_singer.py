"""tap-erp-sql and target-erp-sql as Singer plugins: the singer-sdk standard suites, a real pipe
tap → mapper-canonical-order → target read back from PostgreSQL (twice: nothing doubled), per-partition state,
and one-line errors from the CLIs."""
from __future__ import annotations

import atexit
import datetime as dt
import json
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from singer_sdk.testing import SuiteConfig, get_tap_test_class, get_target_test_class

from orderhub.connectors.erp_sql.tap import TapErpSql
from orderhub.connectors.erp_sql.target import TargetErpSql
from tests.erp_sql.conftest import ErpDb, T0, create_mariadb, drop_mariadb, mysql_url

BIN = Path(sys.executable).parent

# The standard tap suite builds its stream tests while pytest collects, so its database exists from import on.
_STD_DB = f"oh_test_erp_std_{uuid.uuid4().hex[:6]}"
try:
    create_mariadb(_STD_DB)
except Exception as exc:  # noqa: BLE001 - no MariaDB here: skip the module, say why
    pytest.skip(f"MariaDB not reachable: {exc}", allow_module_level=True)
atexit.register(drop_mariadb, _STD_DB)
_std = ErpDb(_STD_DB)
_std.add_orders(range(1, 13), step=dt.timedelta(seconds=5))
_std.close()

TAP_CONFIG = {"url": mysql_url(_STD_DB), "header_table": "so_header", "line_table": "so_line",
              "join_key": "header_id", "updated_at": "updated_at", "batch_size": 5, "lookback_seconds": 0,
              "partitions": [{"name": "book_a"}], "connect_retries": 1}

TestTapErpSqlStandard = get_tap_test_class(
    TapErpSql, config=TAP_CONFIG, suite_config=SuiteConfig(ignore_no_records_for_streams=["erp_orders_rejects"]))


def _pg_for_target() -> str:
    import psycopg

    from tests.pg import PG_ADMIN

    name = f"oh_test_erp_tgt_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    atexit.register(drop)
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


TestTargetErpSqlStandard = get_target_test_class(TargetErpSql, config={"url": _pg_for_target()})


# --- our own: read back what arrived ------------------------------------------------------------------------
def cli(name: str, config: dict, tmp: Path, stdin: bytes | None = None, *args: str) -> subprocess.CompletedProcess:
    cfg = tmp / f"{name}-{uuid.uuid4().hex[:6]}.json"
    cfg.write_text(json.dumps(config))
    return subprocess.run([str(BIN / name), "--config", str(cfg), *args], input=stdin, capture_output=True,
                          timeout=60)


def messages(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


def test_tap_mapper_target_pipe_writes_each_order_once_even_when_the_stream_is_sent_twice(erp, pg_url, tmp_path):
    erp.add_orders(range(1, 9), lines=3, step=dt.timedelta(seconds=1))
    tap = cli("tap-erp-sql", {**TAP_CONFIG, "url": erp.url}, tmp_path)
    assert tap.returncode == 0, tap.stderr.decode()[-2000:]
    mapped = cli("mapper-canonical-order", {"stream_mappings": {"erp_orders": "erp_sql"}}, tmp_path, tap.stdout)
    assert mapped.returncode == 0, mapped.stderr.decode()[-2000:]
    orders = [m["record"] for m in messages(mapped.stdout) if m["type"] == "RECORD"
              and m["stream"] == "canonical_orders"]
    assert len(orders) == 8
    hub = f"sqlite:///{tmp_path}/hub.db"
    target_cfg = {"url": pg_url, "hub_url": hub, "run_id": "run-1"}
    for attempt in (1, 2):
        out = cli("target-erp-sql", target_cfg, tmp_path, mapped.stdout)
        assert out.returncode == 0, out.stderr.decode()[-2000:]
    eng = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with eng.connect() as c:
        heads = c.execute(sa.text("SELECT source_id, order_no, total_amount, order_time FROM orderhub_so_interface "
                                  "ORDER BY order_no")).all()
        lines = c.execute(sa.text("SELECT source_id, line_no, qty, amount FROM orderhub_so_interface_line "
                                  "ORDER BY source_id, line_no")).all()
        log = c.execute(sa.text("SELECT result, count(*) FROM orderhub_write_log GROUP BY result")).all()
    eng.dispose()
    assert [(h.source_id, h.order_no, h.total_amount) for h in heads] == [
        (o["order_id"], o["source_order_id"], Decimal(str(o["total_amount"]))) for o in orders]
    assert heads[0].order_time == dt.datetime(2026, 3, 1, 9, 0)  # Shanghai wall time
    assert sorted((ln.source_id, ln.line_no, ln.qty, ln.amount) for ln in lines) == sorted(
        (o["order_id"], x["line_no"], Decimal(str(x["qty"])), Decimal(str(x["amount"])))
        for o in orders for x in o["lines"])
    assert log == [("created", 8)]
    from orderhub.connectors.hub.store import HubStore

    store = HubStore(hub)
    delivered = store.delivered("erp_sql", [o["order_id"] for o in orders])
    assert {d["result"] for d in delivered.values()} == {"unchanged"} and len(delivered) == 8
    store.dispose()


def test_tap_keeps_a_bookmark_per_partition_and_resumes_from_it(erp_factory, tmp_path):
    a, b = erp_factory("_a"), erp_factory("_b")
    a.add_orders(range(1, 6))
    b.add_orders(range(1, 3))
    cfg = {**TAP_CONFIG, "url": a.url, "partitions": [{"name": "book_a", "schema": a.name},
                                                      {"name": "book_b", "schema": b.name}]}
    first = messages(cli("tap-erp-sql", cfg, tmp_path).stdout)
    recs = [(m["record"]["_shop"], m["record"]["id"]) for m in first if m["type"] == "RECORD"]
    assert recs == [("book_a", i) for i in range(1, 6)] + [("book_b", 1), ("book_b", 2)]
    state = [m for m in first if m["type"] == "STATE"][-1]["value"]
    parts = {p["context"]["_shop"]: p for p in state["bookmarks"]["erp_orders"]["partitions"]}
    assert parts["book_a"]["keyset"]["pk"] == 5 and parts["book_b"]["keyset"]["pk"] == 2
    assert parts["book_a"]["replication_key_value"] == "2026-03-01T09:00:00+08:00"
    b.touch([2], T0 + dt.timedelta(minutes=1))
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    second = messages(cli("tap-erp-sql", cfg, tmp_path, None, "--state", str(state_file)).stdout)
    assert [(m["record"]["_shop"], m["record"]["id"]) for m in second if m["type"] == "RECORD"] == [("book_b", 2)]


def _one_line(proc: subprocess.CompletedProcess, name: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert "Traceback" not in err
    ours = [ln for ln in err.splitlines() if ln.startswith(f"{name}: ")]
    assert len(ours) == 1, err
    return ours[0]


def test_a_wrong_config_key_gives_one_line_saying_what_to_fix(tmp_path):
    cfg = {k: v for k, v in TAP_CONFIG.items() if k != "header_table"} | {"heder_table": "so_header"}
    line = _one_line(cli("tap-erp-sql", cfg, tmp_path), "tap-erp-sql")
    assert line == "tap-erp-sql: configuration error: heder_table: unknown setting — did you mean 'header_table'?"


def test_an_unreachable_database_gives_one_line_naming_the_server(tmp_path):
    cfg = {**TAP_CONFIG, "url": "mysql://root:s3cret-pw@127.0.0.1:1/erp"}
    line = _one_line(cli("tap-erp-sql", cfg, tmp_path), "tap-erp-sql")
    assert line.startswith("tap-erp-sql: error: cannot reach database mysql+mysqldb://root:***@127.0.0.1:1/erp")
    assert "check host and port in `url`" in line and "s3cret-pw" not in line


def test_a_table_name_carrying_sql_is_refused_by_the_cli(tmp_path):
    cfg = {**TAP_CONFIG, "header_table": "so_header; drop table x"}
    line = _one_line(cli("tap-erp-sql", cfg, tmp_path), "tap-erp-sql")
    assert line == ("tap-erp-sql: configuration error: header_table: 'so_header; drop table x' is not a valid SQL "
                    "identifier (letters, digits, _ $ #, optional schema.)")


def test_target_with_an_unknown_setting_stops_with_one_line(tmp_path):
    proc = cli("target-erp-sql", {"url": "postgresql://postgres@127.0.0.1:5432/postgres", "modee": "tables"},
               tmp_path, b"")
    line = _one_line(proc, "target-erp-sql")
    assert line == "target-erp-sql: configuration error: modee: unknown setting — did you mean 'mode'?"


def test_tap_sends_quarantined_records_to_the_rejects_stream(erp, tmp_path):
    erp.add_orders(range(1, 4))
    erp.sql("SET SESSION sql_mode = ''")
    erp.sql("UPDATE so_header SET order_date = '0000-00-00 00:00:00' WHERE id = 2")
    out = messages(cli("tap-erp-sql", {**TAP_CONFIG, "url": erp.url}, tmp_path).stdout)
    recs = [(m["stream"], m["record"].get("id") or m["record"].get("record_id")) for m in out if m["type"] == "RECORD"]
    assert recs == [("erp_orders", 1), ("erp_orders", 3), ("erp_orders_rejects", "book_a/2")]
    reject = [m["record"] for m in out if m["type"] == "RECORD" and m["stream"] == "erp_orders_rejects"][0]
    assert (reject["code"], reject["field"]) == ("zero_date", "order_date")
    assert json.loads(reject["record"])["order_date"] == "0000-00-00 00:00:00"
