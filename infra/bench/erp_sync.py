"""Benchmark: ERP database → hub, side by side with the raw ceiling, in the same run.

    python -m orderhub.infra.bench.erp_sync [--runs 1]

(a) raw ceiling: ``mariadb --batch --raw -N -e "select …" | psql -c "COPY …"`` for so_header and so_line;
(b) ``orderhub sync`` (a subprocess, as a user runs it) of the same 200,000 orders / 600,000 lines from MariaDB
    through the canonical layer and the default rule set into a hub on PostgreSQL, lineage included;
(c) an incremental run after 1,000 orders changed; with ``--flow`` also (b') the orderhub-sync Prefect flow;
(d) the hub floor: PostgreSQL alone storing (b)'s rows (psql binary COPY into an empty hub with the same schema and
    indexes) — what any design keeping this hub schema pays on the server before its own work.
Prints wall times, the ratio (b)/(a) (bar ≤ 3×), peak RSS of the sync process (bar ≤ 300 MB) and (c) (bar ≤ 5 s).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from orderhub.infra.bench.canonical import ensure_dataset

PG = os.environ.get("ORDERHUB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
H_COLS = ("id, bill_no, customer_code, customer_name, order_date, status, total_amount, currency, remark, "
          "receiver_name, receiver_phone, receiver_address, urgent, updated_at")
L_COLS = "id, header_id, line_no, sku, sku_name, qty, price, amount, updated_at"


def recreate_db(name: str) -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


_TICK = os.sysconf("SC_CLK_TCK")
SERVERS = {"postgres": "PostgreSQL", "mariadbd": "MariaDB", "mysqld": "MariaDB"}


def server_cpu() -> dict[str, float]:
    """CPU seconds used so far by the database servers' processes (from /proc), by server."""
    out = {"PostgreSQL": 0.0, "MariaDB": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        name = SERVERS.get(comm)
        if name:
            fields = text[text.rindex(")") + 2:].split()
            # utime + stime, and cutime + cstime: a PostgreSQL backend that ended is in its postmaster's
            out[name] += sum(int(x) for x in fields[11:15]) / _TICK
    return out


def run_timed(cmd: list[str] | str, *, shell: bool = False, env: dict | None = None,
              cpu: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) of the child, stdout. ``cpu`` receives the CPU seconds of the command (with
    its children) and of each database server while it ran."""
    before = server_cpu()
    t = time.perf_counter()
    p = subprocess.Popen(cmd, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = p.stdout.read().decode() if p.stdout else ""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode() if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {cmd}\n{err[-2000:]}")
    if cpu is not None:
        time.sleep(0.3)  # a backend of the ended client is reaped (its CPU moves to the postmaster) a moment later
        after = server_cpu()
        cpu["client"] = cpu.get("client", 0.0) + ru.ru_utime + ru.ru_stime
        for k in after:
            cpu[k] = cpu.get(k, 0.0) + after[k] - before[k]
    return wall, ru.ru_maxrss, out


def ceiling(cpu: dict | None = None) -> float:
    url = recreate_db("oh_bench_raw")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE so_header (id bigint primary key, bill_no text, customer_code text, customer_name "
                  "text, order_date timestamp, status text, total_amount numeric(18,2), currency text, remark text, "
                  "receiver_name text, receiver_phone text, receiver_address text, urgent smallint, "
                  "updated_at timestamp)")
        c.execute("CREATE TABLE so_line (id bigint primary key, header_id bigint, line_no int, sku text, sku_name "
                  "text, qty numeric(18,4), price numeric(18,4), amount numeric(18,2), updated_at timestamp)")
    total = 0.0
    for table, cols in (("so_header", H_COLS), ("so_line", L_COLS)):
        cmd = (f"mariadb -h127.0.0.1 -uroot --batch --raw -N -e \"select {cols} from erp.{table}\" | "
               f"psql -q '{url}' -c \"COPY {table} ({cols}) FROM STDIN WITH (FORMAT text, NULL 'NULL')\"")
        wall, _, _ = run_timed(cmd, shell=True, cpu=cpu)  # the shell's CPU includes mariadb's and psql's
        total += wall
    return total


HUB_TABLES = ("hub_orders", "hub_lineage")  # lines: in their order's row (hub_order_lines is a view)


def hub_floor(hub_url: str, tmp: Path, cpu: dict | None = None) -> tuple[float, dict[str, float]]:
    """(d) what PostgreSQL alone spends storing the hub that (b) wrote: (b)'s own rows, in the order (b) wrote
    them (a fresh table's physical order), binary-COPYed by psql into an empty hub with the hub's schema and
    indexes. No Python, no parsing: the floor of any design that keeps this hub schema."""
    for t in HUB_TABLES:
        subprocess.run(["psql", "-q", hub_url, "-c", f"\\copy {t} to '{tmp / t}.bin' with (format binary)"],
                       check=True)
    floor_url = recreate_db("oh_bench_hub_floor")
    subprocess.run([sys.executable, "-c", f"from orderhub.connectors.hub.store import HubStore; "
                    f"HubStore({floor_url.replace('postgresql://', 'postgresql+psycopg://')!r})"], check=True)
    per: dict[str, float] = {}
    for t in HUB_TABLES:
        per[t], _, _ = run_timed(["psql", "-q", floor_url, "-c", f"\\copy {t} from '{tmp / t}.bin' with "
                                  "(format binary)"], cpu=cpu)
    return sum(per.values()), per


def pipeline_file(tmp: Path, hub_url: str, engine: str = "columnar") -> Path:
    import yaml

    spec = {"name": "bench-erp", "mapping": "erp_sql", "rules": "default", "batch_size": 5000, "engine": engine,
            "source": {"connector": "erp_sql", "config": {
                "url": "mysql+mysqldb://root@127.0.0.1:3306/erp", "header_table": "so_header",
                "line_table": "so_line", "join_key": "header_id", "updated_at": "updated_at",
                "lookback_seconds": 0, "shop": "main"}},
            "hub": {"url": hub_url.replace("postgresql://", "postgresql+psycopg://")}}
    p = tmp / "bench-erp.yaml"
    p.write_text(yaml.safe_dump(spec))
    return p


def time_flow(pf: Path) -> float:
    """(b') the full sync again, as the orderhub-sync flow on a temporary Prefect server, into a fresh hub."""
    import yaml

    spec = yaml.safe_load(pf.read_text())
    hub = recreate_db("oh_bench_hub_flow")
    spec["hub"]["url"] = hub.replace("postgresql://", "postgresql+psycopg://")
    flow_pf = pf.with_name("bench-erp-flow.yaml")
    flow_pf.write_text(yaml.safe_dump(spec))
    code = ("import sys, time\nfrom prefect.testing.utilities import prefect_test_harness\n"
            "with prefect_test_harness(server_startup_timeout=120):\n"
            "    from orderhub.flows.sync import sync\n"
            "    t = time.perf_counter()\n"
            f"    s = sync({str(flow_pf)!r})\n"
            "    print('FLOW', time.perf_counter() - t, s['read'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = [x for x in out.splitlines() if x.startswith("FLOW ")][-1]
    wall, read = float(line.split()[1]), int(line.split()[2])
    if read != 200_000:
        raise SystemExit(f"the flow read {read} orders, expected 200,000")
    print(f"  (b') orderhub-sync flow: {wall:.2f}s", flush=True)
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--engine", choices=("columnar", "row"), default="columnar",
                    help="the pipeline's engine for (b) and (c) (default columnar; row: the per-record engine)")
    ap.add_argument("--flow", action="store_true",
                    help="also time (b) as the orderhub-sync Prefect flow (temporary local Prefect server)")
    a = ap.parse_args(argv)
    ensure_dataset()
    orderhub = str(Path(sys.executable).parent / "orderhub")
    rows = []
    flow_walls: list[float] = []
    for i in range(a.runs):
        ceil_cpu: dict = {}
        sync_cpu: dict = {}
        ceil = ceiling(ceil_cpu)
        with tempfile.TemporaryDirectory() as tmp:
            hub_url = recreate_db("oh_bench_hub")
            subprocess.run([sys.executable, "-c", f"from orderhub.connectors.hub.store import HubStore; "
                            f"HubStore({hub_url.replace('postgresql://', 'postgresql+psycopg://')!r})"], check=True)
            pf = pipeline_file(Path(tmp), hub_url, a.engine)
            wall, rss, out = run_timed([orderhub, "sync", str(pf), "--json"], cpu=sync_cpu)
            summary = json.loads(out.strip().splitlines()[-1])
            floor_cpu: dict = {}
            floor, floor_per = hub_floor(hub_url, Path(tmp), floor_cpu)
            # (c) 1,000 changed orders
            subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", "erp", "-e",
                            "UPDATE so_header SET status='C', updated_at = TIMESTAMP('2026-03-01') + INTERVAL id "
                            "MICROSECOND WHERE id % 200 = 7"], check=True)
            iwall, irss, iout = run_timed([orderhub, "sync", str(pf), "--json"])
            isum = json.loads(iout.strip().splitlines()[-1])
            # restore the dataset for the next run
            subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", "erp", "-e",
                            "UPDATE so_header SET status=ELT(1 + id % 5, 'A','B','C','D','Z'), updated_at = "
                            "TIMESTAMP('2026-01-01') + INTERVAL (id*13) SECOND WHERE id % 200 = 7"], check=True)
            if a.flow:
                flow_walls.append(time_flow(pf))
        with psycopg.connect(hub_url) as c:
            n_orders = c.execute("select count(*) from hub_orders").fetchone()[0]
            n_lines = c.execute("select count(*) from hub_order_lines").fetchone()[0]
            n_lineage = c.execute("select count(*) from hub_lineage").fetchone()[0]
        rows.append((ceil, wall, rss, summary, iwall, isum, n_orders, n_lines, n_lineage, ceil_cpu, sync_cpu,
                     floor, floor_per, floor_cpu))
        print(f"run {i + 1}: ceiling {ceil:.2f}s, orderhub {wall:.2f}s ({wall / ceil:.2f}×), RSS {rss / 1024:.0f} MB, "
              f"incremental {iwall:.2f}s, hub floor {floor:.2f}s ({floor / ceil:.2f}×)", flush=True)
    ceil = statistics.median(r[0] for r in rows)
    wall = statistics.median(r[1] for r in rows)
    last = rows[-1]
    print("\n| step | wall s (median) | × ceiling |\n|---|---:|---:|")
    print(f"| (a) raw ceiling: mariadb --batch \\| psql COPY, both tables | {ceil:.2f} | 1.0 |")
    print(f"| (b) orderhub sync → canonical → hub on PostgreSQL (lineage), engine {a.engine} | {wall:.2f} | "
          f"{wall / ceil:.2f} |")
    if flow_walls:
        fw = statistics.median(flow_walls)
        print(f"| (b') the same sync as the orderhub-sync Prefect flow (tasks per batch) | {fw:.2f} | {fw / ceil:.2f} |")
    fl = statistics.median(r[11] for r in rows)
    per = " + ".join(f"{t.removeprefix('hub_')} {statistics.median(r[12][t] for r in rows):.2f}" for t in HUB_TABLES)
    print(f"| (d) PostgreSQL alone storing (b)'s hub rows: psql binary COPY into an empty hub ({per}) | {fl:.2f} | "
          f"{fl / ceil:.2f} |")
    print(f"| (c) incremental run, 1,000 changed orders: whole process | {statistics.median(r[4] for r in rows):.2f} | |")
    print(f"| (c) … of which the sync's own work (run summary duration) | "
          f"{statistics.median(r[5]['duration_s'] for r in rows):.2f} | |")
    print("\nCPU seconds while each step ran (last run; 2 cores = 2 CPU-seconds per wall second):")
    print("| step | client processes | PostgreSQL | MariaDB | total |\n|---|---:|---:|---:|---:|")
    for label, cpu in (("(a) ceiling (mariadb + psql)", last[9]), ("(b) orderhub sync", last[10]),
                       ("(d) hub floor (psql)", last[13])):
        print(f"| {label} | {cpu['client']:.1f} | {cpu['PostgreSQL']:.1f} | {cpu['MariaDB']:.1f} | "
              f"{cpu['client'] + cpu['PostgreSQL'] + cpu['MariaDB']:.1f} |")
    print(f"\npeak RSS of the sync process: {max(r[2] for r in rows) / 1024:.0f} MB (bar ≤ 300 MB); "
          f"incremental run read {max(r[5]['read'] for r in rows)} orders")
    print(f"hub after (b): {last[6]:,} orders, {last[7]:,} lines, {last[8]:,} lineage rows; (b) summary: "
          f"created {last[3]['hub']['created']:,}, held {last[3]['held_orders']:,}, quarantined "
          f"{last[3]['quarantined']:,}, decided by engine {last[3].get('engine')}; (c) summary: updated {last[5]['hub']['updated']:,}, read {last[5]['read']:,}")
    print(f"bars: (b) ≤ 3× (a): {'PASS' if wall <= 3 * ceil else 'FAIL'}; RSS ≤ 300 MB: "
          f"{'PASS' if max(r[2] for r in rows) <= 300 * 1024 else 'FAIL'}; (c) ≤ 5 s: "
          f"{'PASS' if statistics.median(r[5]['duration_s'] for r in rows) <= 5 else 'FAIL'} (work), whole process "
          f"{'PASS' if statistics.median(r[4] for r in rows) <= 5 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
