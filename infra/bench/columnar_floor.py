"""Feasibility benchmark for a columnar sync path: how fast the first two steps of a vectorised ERP → hub sync
could be, and whether they can stay exact — measured beside the raw ceiling, in the same run.

    pip install 'connectorx>=0.4,<0.5' 'polars>=2,<3'      # not project dependencies (yet)
    python -m orderhub.infra.bench.columnar_floor [--runs 3]

(a) the raw ceiling of ``erp_sync`` (``mariadb --batch | psql COPY``, both tables);
(e1) connectorx reads so_header and so_line from MariaDB into Arrow (Polars frames), decimals at their declared scale;
(e2) each order's raw record as the row engine would hash it — header, its lines nested under ``lines``, ``_shop`` —
     built as JSON text by Polars expressions (no Python object per value), then BLAKE2b per order in Python;
(v)  every one of those hashes compared with :func:`orderhub.transforms.canonical.raw_hash` of the record the row
     engine's reader returns (``OrderReader``): a columnar engine must keep raw hashes identical, or every order in
     an existing hub would look changed once.

It does not map, validate, decide or store: it is the floor of reading plus change detection, the part a columnar
engine cannot avoid. The same dataset through today's row engine is ``python -m orderhub.infra.bench.erp_sync``.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import time

from orderhub.infra.bench.canonical import ensure_dataset
from orderhub.infra.bench.erp_sync import H_COLS, L_COLS, ceiling

MYSQL = "mysql://root@127.0.0.1:3306/erp"
READER_CFG = {"url": "mysql+mysqldb://root@127.0.0.1:3306/erp", "header_table": "so_header", "line_table": "so_line",
              "join_key": "header_id", "updated_at": "updated_at", "lookback_seconds": 0, "shop": "main",
              "batch_size": 5000}
TZ = "Asia/Shanghai"  # the reader's default zone for naive DATETIME columns


def declared_scales() -> dict[str, int]:
    """DECIMAL columns and their declared scale: connectorx hands decimals over as Decimal(38, 10), the row engine
    (mysqlclient) as the column's own scale — and the raw hash sees the text."""
    import MySQLdb

    c = MySQLdb.connect(host="127.0.0.1", user="root", db="erp")
    cur = c.cursor()
    cur.execute("select column_name, numeric_scale from information_schema.columns where table_schema = 'erp' and "
                "table_name in ('so_header', 'so_line') and data_type = 'decimal'")
    out = {name: int(scale) for name, scale in cur.fetchall()}
    c.close()
    return out


def _json_value(pl, col: str, dtype, scales: dict[str, int]):  # noqa: ANN001, ANN202 - polars expressions
    """One value as msgspec (``decimal_format="string"``) writes it in the row engine's raw hash."""
    c = pl.col(col)
    if col in scales:
        text = pl.lit('"') + c.cast(pl.Decimal(38, scales[col])).cast(pl.String) + pl.lit('"')
    elif dtype == pl.String:
        text = c.str.json_encode() if hasattr(c.str, "json_encode") else \
            pl.struct(c).struct.json_encode().str.slice(len(col) + 4).str.head(-1)
    elif isinstance(dtype, pl.Datetime):
        z = c.dt.replace_time_zone(TZ)
        text = pl.lit('"') + pl.when(c.dt.microsecond() != 0).then(z.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f%:z")) \
            .otherwise(z.dt.strftime("%Y-%m-%dT%H:%M:%S%:z")) + pl.lit('"')
    else:
        text = c.cast(pl.String)
    return pl.when(c.is_null()).then(pl.lit("null")).otherwise(text)


def _json_object(pl, df, scales: dict[str, int]):  # noqa: ANN001, ANN202
    import json

    parts = []
    for i, (name, dtype) in enumerate(df.schema.items()):
        parts += [pl.lit(("{" if i == 0 else ",") + json.dumps(name) + ":"), _json_value(pl, name, dtype, scales)]
    return pl.concat_str(parts)


def columnar(scales: dict[str, int]) -> tuple[dict[str, float], dict[int, str]]:
    import connectorx as cx
    import polars as pl

    t0, c0 = time.perf_counter(), time.process_time()
    h = cx.read_sql(MYSQL, f"select {H_COLS} from so_header", return_type="polars")
    ln = cx.read_sql(MYSQL, f"select {L_COLS} from so_line", return_type="polars")
    t1, c1 = time.perf_counter(), time.process_time()
    lines = ln.select(pl.col("header_id"), (_json_object(pl, ln, scales) + pl.lit("}")).alias("j")) \
        .group_by("header_id", maintain_order=True).agg(pl.col("j").str.join(","))
    raw = h.select(pl.col("id"), _json_object(pl, h, scales).alias("j")) \
        .join(lines, left_on="id", right_on="header_id", how="left") \
        .select(pl.col("id"), pl.col("j") + pl.lit(',"lines":[') + pl.col("j_right").fill_null("")
                + pl.lit('],"_shop":"main"}'))
    t2, c2 = time.perf_counter(), time.process_time()
    blake = hashlib.blake2b
    hashes = {i: blake(s.encode(), digest_size=16).hexdigest()
              for i, s in zip(raw["id"].to_list(), raw["j"].to_list())}
    t3, c3 = time.perf_counter(), time.process_time()
    return {"read": t1 - t0, "read_cpu": c1 - c0, "json": t2 - t1, "json_cpu": c2 - c1, "hash": t3 - t2,
            "hash_cpu": c3 - c2, "orders": len(h), "lines": len(ln)}, hashes


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
        raise SystemExit("this benchmark needs connectorx and polars: pip install 'connectorx>=0.4,<0.5' "
                         "'polars>=2,<3'") from None
    ensure_dataset()
    scales = declared_scales()
    rows = []
    hashes: dict[int, str] = {}
    for i in range(a.runs):
        ceil = ceiling()
        step, hashes = columnar(scales)
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
    print(f"\n{rows[-1][1]['orders']:,} orders, {rows[-1][1]['lines']:,} lines; raw hashes equal to the row engine's: "
          f"{same:,} of {len(ref):,}" + ("" if same == len(ref) == len(hashes) else "  ← NOT EXACT"))
    return 0 if same == len(ref) == len(hashes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
