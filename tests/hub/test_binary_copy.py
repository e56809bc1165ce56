"""The columnar engine's binary COPY (``binary_copy``: typed Polars columns encoded by pgpq) against a real
PostgreSQL: every hub column type, nulls, decimals of every scale the ERP may declare (the column's typmod rounds as
it does for text input), negative and large amounts, microsecond times, JSON text and hostile strings read back
exactly."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

pl = pytest.importorskip("polars")
pytest.importorskip("pgpq")

from orderhub.connectors.hub import schema as t  # noqa: E402
from orderhub.connectors.hub.store import binary_copy, polars_types  # noqa: E402
from tests.pg import fresh_pg_database  # noqa: E402

UTC = timezone.utc


def test_polars_types_cover_every_hub_order_column() -> None:
    types = polars_types(t.orders)
    assert list(types) == [c.name for c in t.orders.columns]
    assert types["order_id"] == pl.String and types["lines"] == pl.String and types["hold_reasons"] == pl.String
    assert types["total_amount"] == pl.Decimal and types["held"] == pl.Boolean
    assert types["status_rank"] == pl.Int32 and types["revision"] == pl.Int32
    assert types["created_at"] == pl.Datetime("us", "UTC")
    assert polars_types(t.lineage)["id"] == pl.Int64


@pytest.mark.parametrize("scale", [0, 2, 4, 6])
def test_binary_copy_reads_back_exactly(scale: int) -> None:
    import psycopg

    q = Decimal(1).scaleb(-scale)
    amounts = [Decimal("12.5").quantize(q), Decimal("-0.5").quantize(q) if scale else Decimal(-1), Decimal(0).quantize(q),
               Decimal("99999999999999").quantize(q) if scale < 5 else Decimal("9999999.123456"), None,
               Decimal("0.000050").quantize(q) if scale == 6 else Decimal(7)]
    times = [datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
             datetime(2000, 1, 1, tzinfo=UTC) - timedelta(microseconds=1), None, datetime(2026, 1, 1, tzinfo=UTC),
             datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC)]
    texts = ["螺栓 M8", None, 'quote " back\\slash', "emoji 😀 \u2028", "", "x" * 500]
    lines = ['[{"qty":"2.0000"}]', None, "[]", '[{"s":"中文"}]', '[{"a":null}]', "[1,2]"]
    frame = pl.DataFrame({"t": texts, "d": amounts, "ts": times, "b": [True, None, False, True, False, None],
                          "i": [1, None, -3, 0, 2**31 - 1, -(2**31)], "j": lines},
                         schema={"t": pl.String, "d": pl.Decimal(38, scale), "ts": pl.Datetime("us", "UTC"),
                                 "b": pl.Boolean, "i": pl.Int32, "j": pl.String})
    with fresh_pg_database("oh_bincopy") as url:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as c:
            c.execute("CREATE TABLE x (t text, d numeric(18,4), ts timestamptz, b boolean, i integer, j json)")
            with c.cursor().copy("COPY x (t, d, ts, b, i, j) FROM STDIN WITH (FORMAT binary)") as cp:
                for chunk in binary_copy(frame):
                    cp.write(chunk)
            got = c.execute("SELECT t, d, ts, b, i, j::text FROM x").fetchall()
    assert len(got) == 6
    for row, t_, d, ts, b, i, j in zip(got, texts, amounts, times, frame["b"].to_list(), frame["i"].to_list(), lines):
        want_d = None if d is None else d.quantize(Decimal("0.0001"), ROUND_HALF_UP)  # numeric(18,4) typmod
        assert row == (t_, want_d, ts, b, i, j), row
