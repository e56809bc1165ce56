"""The demo's ERP: a SQLite database with the so_header/so_line tables of a home-grown ERP, seeded with the
sample orders (``demo_data/erp_orders.jsonl``) plus generated ones, and a ticker that keeps adding orders so the
near-real-time pipeline has something to carry."""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
SCHEMA = """
CREATE TABLE IF NOT EXISTS so_header (
  id INTEGER PRIMARY KEY, bill_no VARCHAR(32) NOT NULL, customer_code VARCHAR(32), customer_name VARCHAR(128),
  order_date DATETIME, status VARCHAR(16), total_amount DECIMAL(18,2), currency CHAR(3), remark TEXT,
  receiver_name VARCHAR(64), receiver_phone VARCHAR(20), receiver_address VARCHAR(255), urgent INTEGER,
  updated_at DATETIME NOT NULL);
CREATE INDEX IF NOT EXISTS ix_so_header_updated ON so_header(updated_at);
CREATE TABLE IF NOT EXISTS so_line (
  id INTEGER PRIMARY KEY, header_id INTEGER NOT NULL, line_no INTEGER, sku VARCHAR(64), sku_name VARCHAR(128),
  qty DECIMAL(18,4), price DECIMAL(18,4), amount DECIMAL(18,2), updated_at DATETIME NOT NULL);
CREATE INDEX IF NOT EXISTS ix_so_line_header ON so_line(header_id);
"""
CITIES = ["江苏省常州市武进区湖塘镇工业路{n}号", "广东省深圳市南山区科技园南区{n}栋", "浙江省宁波市鄞州区中河街道{n}号",
          "北京市朝阳区望京街道{n}号", "四川省成都市高新区天府大道{n}号", "上海市浦东新区张江路{n}号"]
SKUS = [("M8-BOLT-20", "六角螺栓 M8x20", "0.35"), ("M8-NUT", "六角螺母 M8", "0.12"),
        ("Mercedes-Benz C200", "奔驰C200 配件包", "2350"), ("M8X20螺栓", "六角螺栓 M8x20", "0.35")]


def _now() -> str:
    return datetime.now(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S.%f")


def connect(path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.executescript(SCHEMA)
    return c


def insert_order(c: sqlite3.Connection, oid: int, h: dict, lines: list[dict]) -> None:
    c.execute("BEGIN")
    c.execute("INSERT OR REPLACE INTO so_header VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
              (oid, h["bill_no"], h.get("customer_code"), h.get("customer_name"), h.get("order_date"), h["status"],
               str(h.get("total_amount")), "CNY", h.get("remark", ""), h.get("receiver_name"), h.get("receiver_phone"),
               h.get("receiver_address"), int(h.get("urgent") or 0), h["updated_at"]))
    c.execute("DELETE FROM so_line WHERE header_id = ?", (oid,))
    for i, ln in enumerate(lines, 1):
        c.execute("INSERT INTO so_line VALUES (?,?,?,?,?,?,?,?,?)",
                  (oid * 100 + i, oid, ln.get("line_no", i), ln.get("sku"), ln.get("sku_name"), str(ln["qty"]),
                   str(ln.get("price")), str(ln.get("amount")), h["updated_at"]))
    c.execute("COMMIT")


def generated(n: int, rnd: random.Random) -> tuple[dict, list[dict]]:
    k = rnd.randint(1, 3)
    lines = []
    for i in range(k):
        sku, name, price = rnd.choice(SKUS[:2] if i else SKUS)
        qty = rnd.choice([1, 2, 10, 50, 100, 500]) if "C200" not in sku else 1
        lines.append({"line_no": i + 1, "sku": sku, "sku_name": name, "qty": qty, "price": price,
                      "amount": f"{qty * float(price):.2f}"})
    total = f"{sum(float(x['amount']) for x in lines):.2f}"
    now = _now()
    h = {"bill_no": f"SO-DEMO-{n:06d}", "customer_code": f"C{100 + n % 7}", "customer_name": f"客户{n % 7}五金有限公司",
         "order_date": now[:19], "status": rnd.choice("AAAAB"), "total_amount": total,
         "remark": "加急 请优先发货" if n % 9 == 0 else "", "receiver_name": f"收货人{n % 13}",
         "receiver_phone": f"139{rnd.randint(0, 99999999):08d}", "receiver_address": rnd.choice(CITIES).format(n=n),
         "urgent": int(n % 9 == 0), "updated_at": now}
    return h, lines


def seed(path: Path, *, generated_orders: int = 40, seed_value: int = 7) -> int:
    """Create the ERP tables and fill them; returns the number of orders."""
    c = connect(path)
    if c.execute("SELECT count(*) FROM so_header").fetchone()[0]:
        return c.execute("SELECT count(*) FROM so_header").fetchone()[0]
    n = 0
    for n, line in enumerate((DEMO_DATA / "erp_orders.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        r = json.loads(line)
        r["updated_at"] = _now()
        insert_order(c, n, r, r["lines"])
    rnd = random.Random(seed_value)
    for i in range(generated_orders):
        n += 1
        insert_order(c, n, *generated(n, rnd))
    return n


def add_order(path: Path, rnd: random.Random | None = None) -> str:
    """Insert one new order now (what the ticker and the latency benchmark do); returns its bill number."""
    c = connect(path)
    n = (c.execute("SELECT coalesce(max(id), 0) FROM so_header").fetchone()[0] or 0) + 1
    h, lines = generated(n, rnd or random.Random(n))
    h["status"] = "B"
    insert_order(c, n, h, lines)
    return h["bill_no"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("db")
    p.add_argument("--seed", action="store_true")
    p.add_argument("--tick", type=float, default=0, help="add one order every TICK seconds, forever")
    a = p.parse_args(argv)
    path = Path(a.db)
    if a.seed:
        print(f"demo ERP {path}: {seed(path)} orders")
    if a.tick:
        rnd = random.Random()
        while True:
            time.sleep(a.tick)
            add_order(path, rnd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
