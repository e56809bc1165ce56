"""A small ERP database on the machine's MariaDB (the benchmark schema), for pipeline tests and the demo."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Iterator

import MySQLdb

from orderhub.infra.erp_schema import create_erp_tables

T0 = datetime(2026, 11, 20, 9, 0, 0)


class ErpDb:
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"mysql+mysqldb://root@127.0.0.1:3306/{name}"

    def conn(self):  # noqa: ANN201
        return MySQLdb.connect(host="127.0.0.1", user="root", db=self.name, charset="utf8mb4", autocommit=True)

    def add_orders(self, ids, *, status="B", minute_offset=0, lines=3, address="江苏省常州市武进区工业路1号"):  # noqa: ANN001
        c = self.conn()
        cur = c.cursor()
        for i in ids:
            ts = T0 + timedelta(seconds=i * 13 + minute_offset * 60)
            amounts = [round((1 + (i * 3 + k) % 50) * 0.5, 2) for k in range(lines)]
            cur.execute("REPLACE INTO so_header VALUES (%s,%s,%s,%s,%s,%s,%s,'CNY',%s,%s,%s,%s,%s,%s)",
                        (i, f"SO{i:08d}", f"C{i % 30}", f"客户{i % 30}", ts, status, sum(amounts),
                         "加急" if i % 7 == 0 else "", f"收货人{i}", f"139{i:08d}", address, int(i % 11 == 0), ts))
            for k in range(lines):
                qty = 1 + (i * 3 + k) % 50
                cur.execute("REPLACE INTO so_line VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                            (i * 10 + k, i, k + 1, f"M8-BOLT-{(i + k) % 20}", "六角螺栓", qty, "0.5",
                             amounts[k], ts))
        c.close()

    def touch(self, ids, *, status, at: datetime) -> None:  # noqa: ANN001
        c = self.conn()
        cur = c.cursor()
        for i in ids:
            cur.execute("UPDATE so_header SET status=%s, updated_at=%s WHERE id=%s", (status, at, i))
        c.close()


@contextmanager
def erp_database() -> Iterator[ErpDb]:
    name = f"oh_test_erp_{uuid.uuid4().hex[:8]}"
    c = MySQLdb.connect(host="127.0.0.1", user="root", autocommit=True)
    c.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    c.select_db(name)
    create_erp_tables(c.cursor())
    c.close()
    try:
        yield ErpDb(name)
    finally:
        c = MySQLdb.connect(host="127.0.0.1", user="root", autocommit=True)
        c.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        c.close()
