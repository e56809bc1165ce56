"""Benchmark: the SQL ERP reader alone on ../shared/bench/erp_orders.sql (200,000 orders / 600,000 lines).

    python -m orderhub.infra.bench.erp_reader [--runs 3] [--batch-size 5000] [--database oh_bench_erp] [--profile]

The dataset is loaded into its own MariaDB database (default ``oh_bench_erp``, the ``erp`` of the SQL file
renamed) so the changes of the incremental variant never disturb another benchmark reading ``erp``. Each variant runs in a child process (so peak RSS is its own) and reads every order with its lines nested,
as the flows consume them; nothing is stored. Variants:

* ``floor``       — mysqlclient fetching both tables with the same typed converters, no nesting: the floor;
* ``first-run``   — OrderReader with no bookmark: primary-key pass, lines by key range (what a first sync does);
* ``by-updated``  — OrderReader walking the updated-at index (an incremental run over everything);
* ``incremental`` — 1,000 orders changed, then an incremental run from the first run's bookmark (dataset restored).

Prints orders/s, lines/s, CPU and peak RSS per variant (median wall of ``--runs``); ``--profile`` prints the top
functions of one first-run pass.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DB = os.environ.get("ORDERHUB_BENCH_ERP_DB", "oh_bench_erp")
URL = f"mysql://root@127.0.0.1:3306/{DB}"
CONFIG = {"url": URL, "header_table": "so_header", "line_table": "so_line", "join_key": "header_id",
          "updated_at": "updated_at", "lookback_seconds": 0, "shop": "main"}
CHANGE = ("UPDATE so_header SET status='C', updated_at = TIMESTAMP('2026-03-01') + INTERVAL id MICROSECOND "
          "WHERE id % 200 = 7")
RESTORE = ("UPDATE so_header SET status=ELT(1 + id % 5, 'A','B','C','D','Z'), updated_at = "
           "TIMESTAMP('2026-01-01') + INTERVAL (id*13) SECOND WHERE id % 200 = 7")


def _mariadb(sql: str) -> None:
    subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", DB, "-e", sql], check=True)


def ensure_dataset() -> None:
    """Load ../shared/bench/erp_orders.sql into ``DB`` unless it already holds the 200k/600k rows."""
    import MySQLdb

    from orderhub.infra.bench.canonical import DATASET

    try:
        c = MySQLdb.connect(host="127.0.0.1", user="root", db=DB)
        cur = c.cursor()
        cur.execute("SELECT (SELECT COUNT(*) FROM so_header), (SELECT COUNT(*) FROM so_line)")
        counts = cur.fetchone()
        c.close()
        if counts == (200_000, 600_000):
            return
    except MySQLdb.Error:
        pass
    print(f"loading {DATASET} into MariaDB database {DB} …", flush=True)
    sql = DATASET.read_text(encoding="utf-8")
    head, rest = sql.split("\n", 1)
    assert head.startswith("DROP DATABASE IF EXISTS erp;"), head
    head = f"DROP DATABASE IF EXISTS `{DB}`; CREATE DATABASE `{DB}`; USE `{DB}`;"
    subprocess.run(["mariadb", "-h127.0.0.1", "-uroot"], input=(head + "\n" + rest).encode(), check=True)


def _read(cfg: dict, state: dict | None) -> tuple[int, int, dict]:
    from orderhub.connectors.erp_sql.reader import OrderReader

    orders = lines = 0
    final: dict = state or {}
    for batch, final in OrderReader(cfg).iter_batches(state):
        orders += len(batch)
        lines += batch.line_count
    return orders, lines, final


def _floor(batch: int) -> tuple[int, int]:
    from orderhub.connectors.erp_sql.db import Database, load_timezone, normalize_url

    db = Database(normalize_url(URL), load_timezone("Asia/Shanghai"))
    conn = db.connect()
    raw = conn.driver_connection
    counts = []
    for table in ("so_header", "so_line"):
        raw.query(f"SELECT * FROM {table}")
        res = raw.use_result()
        n = 0
        while rows := res.fetch_row(batch, 1):
            n += len(rows)
        counts.append(n)
    conn.close()
    return counts[0], counts[1]


def child(variant: str, batch: int, state_json: str | None) -> dict:
    """One measured run in this process; prints a JSON line."""
    cfg = dict(CONFIG, batch_size=batch)
    state = json.loads(state_json) if state_json else None
    t0, c0 = time.perf_counter(), time.process_time()
    if variant == "floor":
        orders, lines = _floor(batch)
        final = {}
    elif variant == "by-updated":
        orders, lines, final = _read(dict(cfg, start="2000-01-01T00:00:00+08:00"), None)
    else:
        orders, lines, final = _read(cfg, state)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"variant": variant, "orders": orders, "lines": lines, "wall": wall, "cpu": cpu,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "state": final}


def run_child(variant: str, batch: int, state: dict | None = None) -> dict:
    cmd = [sys.executable, "-m", "orderhub.infra.bench.erp_reader", "--child", variant, "--batch-size", str(batch)]
    if state is not None:
        cmd += ["--state", json.dumps(state)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def profile(batch: int) -> None:
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    _read(dict(CONFIG, batch_size=batch), None)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--database", help="MariaDB database holding the dataset (default oh_bench_erp)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.database:
        os.environ["ORDERHUB_BENCH_ERP_DB"] = a.database
        global DB, URL
        DB, URL = a.database, f"mysql://root@127.0.0.1:3306/{a.database}"
        CONFIG["url"] = URL
    if a.child:
        print(json.dumps(child(a.child, a.batch_size, a.state), default=str))
        return 0
    ensure_dataset()
    if a.profile:
        profile(a.batch_size)
        return 0
    results: dict[str, list[dict]] = {}
    for _ in range(a.runs):
        for variant in ("floor", "first-run", "by-updated"):
            results.setdefault(variant, []).append(run_child(variant, a.batch_size))
        state = results["first-run"][-1]["state"]
        _mariadb(CHANGE)
        try:
            results.setdefault("incremental", []).append(run_child("incremental", a.batch_size, state))
        finally:
            _mariadb(RESTORE)
    print(f"\nreader alone, batch {a.batch_size}, median of {a.runs} run(s) (each in its own process)\n")
    print("| variant | orders | lines | wall s | CPU s | orders/s | lines/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for variant, rs in results.items():
        wall = statistics.median(r["wall"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        r = rs[-1]
        print(f"| {variant} | {r['orders']:,} | {r['lines']:,} | {wall:.2f} | {cpu:.2f} | "
              f"{r['orders'] / wall:,.0f} | {r['lines'] / wall:,.0f} | {max(x['rss_mb'] for x in rs):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
