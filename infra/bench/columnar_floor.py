"""Feasibility benchmark for a columnar sync path: how fast the first two steps of a vectorised ERP → hub sync
could be, and whether they can stay exact — measured beside the raw ceiling, in the same run.

    pip install 'orderhub[columnar]'       # infra/setup.sh installs it
    python -m orderhub.infra.bench.columnar_floor [--runs 3]

(a) the raw ceiling of ``erp_sync`` (``mariadb --batch | psql COPY``, both tables);
(e1) connectorx reads so_header and so_line from MariaDB into Arrow (Polars frames);
(e2) each order's raw record as the row engine would hash it — header, its lines nested under ``lines``, ``_shop`` —
     built as JSON text by the columnar engine's own expressions (:func:`orderhub.transforms.columnar.raw_records`:
     decimals at their declared scale, no Python object per value), then BLAKE2b per order in Python;
(e3) the same JSON and BLAKE2b written in C from the Arrow buffers (:func:`orderhub.transforms.columnar.record_hashes`,
     the engine's path when ``orderhub.transforms._native`` is built);
(v)  every one of those hashes (e2 and e3) compared with :func:`orderhub.transforms.canonical.raw_hash` of the record the row
     engine's reader returns (``OrderReader``): a columnar engine must keep raw hashes identical, or every order in
     an existing hub would look changed once.

It does not map, validate, decide or store: it is the floor of reading plus change detection, the part a columnar
engine cannot avoid. The whole sync of the same dataset is ``python -m orderhub.infra.bench.erp_sync``.
"""
from __future__ import annotations

import argparse
import statistics
import time

from orderhub.infra.bench.canonical import ensure_dataset
from orderhub.infra.bench.erp_sync import ceiling

MYSQL = "mysql://root@127.0.0.1:3306/erp"
READER_CFG = {"url": "mysql+mysqldb://root@127.0.0.1:3306/erp", "header_table": "so_header", "line_table": "so_line",
              "join_key": "header_id", "updated_at": "updated_at", "lookback_seconds": 0, "shop": "main",
              "batch_size": 5000}


def engine_plan():  # noqa: ANN201
    """The columnar engine's plan for the benchmark ERP (the erp_sql mapping, no rules): what it needs to build
    the raw records exactly as the engine does (the reader's column order, declared decimal scales, its zone)."""
    from orderhub.connectors.erp_sql.reader import OrderReader
    from orderhub.transforms import columnar, load_mapping

    reader = OrderReader(READER_CFG)
    s = reader.settings
    htypes, ltypes = reader.column_types()
    return columnar.plan(load_mapping("erp_sql"), None, skus=None, test_filter=None, customer_levels={}, credit=False,
                         stock=False, header_types=htypes, line_types=ltypes, zone=s.timezone,
                         lines_field=s.lines_field, header_key=s.header_key, join_key=s.join_key)


def columnar(plan) -> tuple[dict[str, float], dict[int, str]]:  # noqa: ANN001
    import connectorx as cx

    from orderhub.transforms.columnar import _native, align, raw_hashes, raw_records, record_hashes

    t0, c0 = time.perf_counter(), time.process_time()
    h = cx.read_sql(MYSQL, "select * from so_header order by id", return_type="polars")
    ln = cx.read_sql(MYSQL, "select * from so_line order by header_id, id", return_type="polars")
    t1, c1 = time.perf_counter(), time.process_time()
    h, ln = align(plan, h, ln)
    raw = raw_records(plan, h, ln, "main")
    t2, c2 = time.perf_counter(), time.process_time()
    hashes = dict(zip(h["id"].to_list(), raw_hashes(raw)))
    t3, c3 = time.perf_counter(), time.process_time()
    out = {"read": t1 - t0, "read_cpu": c1 - c0, "json": t2 - t1, "json_cpu": c2 - c1, "hash": t3 - t2,
           "hash_cpu": c3 - c2, "orders": len(h), "lines": len(ln), "native": None, "native_cpu": None}
    if _native is not None:
        native = dict(zip(h["id"].to_list(), record_hashes(plan, h, ln, "main")))
        t4, c4 = time.perf_counter(), time.process_time()
        out.update(native=t4 - t3, native_cpu=c4 - c3)
        if native != hashes:
            raise SystemExit("the compiled raw hashes differ from the Polars expressions'")
    return out, hashes


def row_engine_hashes() -> dict[int, str]:
    from orderhub.connectors.erp_sql.reader import OrderReader
    from orderhub.transforms.canonical import raw_hash

    out: dict[int, str] = {}
    for batch, _ in OrderReader(READER_CFG).iter_batches({}):
        for rec in batch:
            out[rec["id"]] = raw_hash(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        import connectorx  # noqa: F401
        import polars  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark needs the columnar extra: pip install 'orderhub[columnar]'") from None
    ensure_dataset()
    plan = engine_plan()
    rows = []
    hashes: dict[int, str] = {}
    for i in range(a.runs):
        ceil = ceiling()
        step, hashes = columnar(plan)
        rows.append((ceil, step))
        print(f"run {i + 1}: ceiling {ceil:.2f}s, columnar read {step['read']:.2f}s + raw JSON {step['json']:.2f}s "
              f"+ hash {step['hash']:.2f}s", flush=True)
    ref = row_engine_hashes()
    same = sum(1 for k, v in ref.items() if hashes.get(k) == v)
    ceil = statistics.median(r[0] for r in rows)

    def med(k: str) -> float:
        return statistics.median(r[1][k] for r in rows)

    total = med("read") + med("json") + med("hash")
    print("\n| step | wall s (median) | CPU s | × ceiling |\n|---|---:|---:|---:|")
    print(f"| (a) raw ceiling: mariadb --batch \\| psql COPY, both tables | {ceil:.2f} | | 1.0 |")
    print(f"| (e1) connectorx → Arrow, both tables | {med('read'):.2f} | {med('read_cpu'):.2f} | "
          f"{med('read') / ceil:.2f} |")
    print(f"| (e2) raw records as JSON text (Polars) | {med('json'):.2f} | {med('json_cpu'):.2f} | "
          f"{med('json') / ceil:.2f} |")
    print(f"| (e2) BLAKE2b per order (Python) | {med('hash'):.2f} | {med('hash_cpu'):.2f} | {med('hash') / ceil:.2f} |")
    print(f"| (e) read + change detection, columnar | {total:.2f} | | {total / ceil:.2f} |")
    if rows[-1][1]["native"] is not None:
        nat = med("read") + med("native")
        print(f"| (e3) raw records as JSON + BLAKE2b, compiled (orderhub.transforms._native) | {med('native'):.2f} | "
              f"{med('native_cpu'):.2f} | {med('native') / ceil:.2f} |")
        print(f"| (e') read + change detection, columnar with the compiled hashing | {nat:.2f} | | {nat / ceil:.2f} |")
    print(f"\n{rows[-1][1]['orders']:,} orders, {rows[-1][1]['lines']:,} lines; raw hashes equal to the row engine's: "
          f"{same:,} of {len(ref):,}" + ("" if same == len(ref) == len(hashes) else "  ← NOT EXACT"))
    return 0 if same == len(ref) == len(hashes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
