"""Fixtures for the SQL ERP connector tests: fresh MariaDB databases (``oh_test_erp_…``) holding the benchmark's
``so_header``/``so_line`` schema, and fresh PostgreSQL databases."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, Iterator

import MySQLdb
import pytest

from orderhub.infra.erp_schema import MARIADB_SCHEMA, create_erp_tables
from tests.pg import fresh_pg_database

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root"}
CST = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 3, 1, 9, 0, 0)  # naive: Shanghai wall time, as the ERP stores it

SCHEMA = MARIADB_SCHEMA


def mariadb_admin(db: str | None = None) -> Any:
    kw = dict(MARIADB, charset="utf8mb4", autocommit=True)
    if db:
        kw["database"] = db
    return MySQLdb.connect(**kw)


def create_mariadb(name: str, schema: str = SCHEMA) -> None:
    c = mariadb_admin()
    cur = c.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    cur.execute(f"USE `{name}`")
    create_erp_tables(cur, schema)
    c.close()


def drop_mariadb(name: str) -> None:
    c = mariadb_admin()
    c.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    c.close()


def mysql_url(name: str, driver: str = "mysql") -> str:
    return f"{driver}://root@127.0.0.1:3306/{name}"


class ErpDb:
    """A test ERP database on MariaDB with helpers to add and change orders."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = mysql_url(name)
        self.conn = mariadb_admin(name)

    def sql(self, stmt: str, args: Any = None) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(stmt, args)
        rows = list(cur.fetchall()) if cur.description else []
        cur.close()
        return rows

    def add_orders(self, ids: range | list[int], *, updated_at: dt.datetime = T0, lines: int = 3,
                   step: dt.timedelta | None = None, **header: Any) -> None:
        """Orders ``SO<id>`` with ``lines`` lines each (line ids ``id*10+n``); all share ``updated_at`` unless
        ``step`` spreads them."""
        hrows, lrows = [], []
        for n, i in enumerate(ids):
            ts = updated_at + (step * n if step else dt.timedelta(0))
            h = {"id": i, "bill_no": f"SO{i:06d}", "customer_code": f"C{i % 7}", "customer_name": f"客户{i % 7}五金",
                 "order_date": ts, "status": "ABCDZ"[i % 5], "total_amount": Decimal("0"), "currency": "CNY",
                 "remark": "加急 请优先发货" if i % 4 == 0 else "", "receiver_name": f"收货人{i}",
                 "receiver_phone": f"138{i:08d}", "receiver_address": f"江苏省常州市武进区工业路{i}号",
                 "urgent": 1 if i % 4 == 0 else 0, "updated_at": ts}
            h.update(header)
            total = Decimal("0")
            for k in range(1, lines + 1):
                qty, price = Decimal(k), Decimal("0.35") + Decimal(i % 10) / 100
                amount = (qty * price).quantize(Decimal("0.01"))
                total += amount
                lrows.append((i * 10 + k, i, k, f"M8-BOLT-{k}", f"六角螺栓 M8x{k}", qty, price, amount, ts))
            if "total_amount" not in header:
                h["total_amount"] = total
            hrows.append(h)
        if hrows:
            cols = list(hrows[0])
            self.conn.cursor().executemany(
                f"INSERT INTO so_header ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                [tuple(h[c] for c in cols) for h in hrows])
        if lrows:
            self.conn.cursor().executemany(
                "INSERT INTO so_line (id, header_id, line_no, sku, sku_name, qty, price, amount, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", lrows)

    def touch(self, ids: list[int], at: dt.datetime, **values: Any) -> None:
        sets = ", ".join([f"{k} = %s" for k in values] + ["updated_at = %s"])
        self.sql(f"UPDATE so_header SET {sets} WHERE id IN ({', '.join(['%s'] * len(ids))})",
                 [*values.values(), at, *ids])

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def erp_factory() -> Iterator[Any]:
    """Make fresh ERP databases ``oh_test_erp_<random>`` (dropped after the test)."""
    made: list[ErpDb] = []

    def make(suffix: str = "") -> ErpDb:
        name = f"oh_test_erp_{uuid.uuid4().hex[:8]}{suffix}"
        create_mariadb(name)
        db = ErpDb(name)
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()
        drop_mariadb(db.name)


@pytest.fixture
def erp(erp_factory: Any) -> ErpDb:
    return erp_factory()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_pg_database(prefix="oh_test_erp") as url:
        yield url


def reader_config(db: ErpDb, **over: Any) -> dict:
    cfg = {"url": db.url, "header_table": "so_header", "line_table": "so_line", "join_key": "header_id",
           "updated_at": "updated_at", "batch_size": 7, "lookback_seconds": 0, "connect_retries": 1}
    cfg.update(over)
    return cfg
