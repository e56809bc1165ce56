"""The compiled per-order JSON and BLAKE2b of the columnar engine (orderhub.transforms._native) against the code it
replaces: hashlib's BLAKE2b, the engine's Polars expressions (transforms.columnar.raw_records) and the row engine's
own encoding of the same record (msgspec, canonical.raw_hash), on values chosen to break an encoder."""
from __future__ import annotations

import hashlib
import json
import os
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest

pl = pytest.importorskip("polars")
from orderhub.transforms import columnar  # noqa: E402
from orderhub.transforms.canonical import raw_hash  # noqa: E402
from orderhub.transforms.model import canonical_order_id  # noqa: E402

try:
    from orderhub.transforms import _native as native
except ImportError:  # built by setup.py where a C compiler is (see test_the_extension_is_built_where_it_can_be)
    native = None
needs_native = pytest.mark.skipif(native is None, reason="orderhub.transforms._native is not built (no C compiler)")


def test_the_extension_is_built_where_it_can_be() -> None:
    """setup.py builds it as optional (an install without a compiler still works, on the Polars path): where a
    compiler is, as on this project's machines and CI, a missing extension is a build failure, not a skip."""
    import shutil
    import sysconfig

    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc})")
    assert native is not None, "orderhub.transforms._native did not build: pip install -e . shows why"
    assert columnar._native is native


@needs_native
def test_blake2b_is_hashlibs_for_every_length_and_digest_size() -> None:
    rnd = random.Random(7)
    for n in [*range(0, 260), 383, 384, 385, 1000, 65536, 100_001]:
        data = rnd.randbytes(n)
        for size in (1, 12, 16, 20, 32, 63, 64):
            assert native.blake2b_hex(data, size) == hashlib.blake2b(data, digest_size=size).hexdigest(), (n, size)
    with pytest.raises(ValueError):
        native.blake2b_hex(b"x", 65)


HOSTILE_TEXT = [
    "", "a", "常州五金 王建国", "x" * 12, "y" * 13, "quote\" back\\slash", "\x00nul", "".join(map(chr, range(32))),
    "\x7f del", "\u2028 line sep", "emoji 😀 and é", "tab\tnew\nline\rcr\x08bs\x0cff", "a" * 5000, None,
]


RATES = [Decimal("0"), Decimal("0.0000001"), Decimal("-0.0000001"), Decimal("0.0000000001"), Decimal("0.000001"),
         Decimal("0.0000009999"), Decimal("-0.00000099"), Decimal("1.5"), Decimal("12345678.1234567890"),
         Decimal("0.0000010000"), None]
R7 = [Decimal("0"), Decimal("0.0000001"), Decimal("-0.0000012"), Decimal("3.1415926"), None]


def _page(n: int = 40) -> tuple:
    """A header frame and a line frame with every column type the encoder writes, and the plan fields it reads."""
    rnd = random.Random(11)
    times = [datetime(2026, 1, 1, 0, 0, 13), datetime(1969, 12, 31, 23, 59, 59, 999_999), datetime(1, 1, 1),
             datetime(9999, 12, 31, 23, 59, 59, 1), datetime(2000, 2, 29, 12, 0, 0, 500_000), datetime(1970, 1, 1),
             None]
    decs = [Decimal("0"), Decimal("-0.05"), Decimal("175.00"), Decimal("99999999999999.99"),
            Decimal("-99999999999999.99"), Decimal("0.01"), None]
    h = pl.DataFrame({
        "id": pl.Series(range(1, n + 1), dtype=pl.Int64),
        "bill_no": [HOSTILE_TEXT[i % len(HOSTILE_TEXT)] for i in range(n)],
        "order_date": pl.Series([times[i % len(times)] for i in range(n)], dtype=pl.Datetime("us")),
        "total_amount": pl.Series([decs[i % len(decs)] for i in range(n)], dtype=pl.Decimal(38, 2)),
        "urgent": pl.Series([(i % 3) - 1 if i % 5 else None for i in range(n)], dtype=pl.Int8),
        "big": pl.Series([(-1) ** i * (2 ** 63 - 1 - i) if i % 4 else None for i in range(n)], dtype=pl.Int64),
        "flag": pl.Series([bool(i % 2) if i % 6 else None for i in range(n)], dtype=pl.Boolean),
        # scales above 6: str(Decimal) turns small values and zero scientific ("0E-10", "1.000E-7")
        "rate": pl.Series([RATES[i % len(RATES)] for i in range(n)], dtype=pl.Decimal(38, 10)),
        "r7": pl.Series([R7[i % len(R7)] for i in range(n)], dtype=pl.Decimal(38, 7)),
        "remark": [rnd.choice(HOSTILE_TEXT) for _ in range(n)],
    })
    rows = []
    for hid in range(1, n + 1):
        for k in range(hid % 4):   # some orders without lines
            rows.append((hid * 10 + k, hid, k + 1, rnd.choice(HOSTILE_TEXT), Decimal(rnd.randint(-10**6, 10**6)) / 10000,
                         times[(hid + k) % len(times)]))
    ln = pl.DataFrame(rows, schema={"id": pl.Int64, "header_id": pl.Int64, "line_no": pl.Int32, "sku": pl.String,
                                    "qty": pl.Decimal(38, 4), "updated_at": pl.Datetime("us")}, orient="row")
    ln = ln.with_columns(pl.col("qty").cast(pl.Decimal(38, 4)))
    h = h.with_row_index("_pos")
    ln = ln.join(h.select(pl.col("id").alias("header_id"), "_pos"), on="header_id", maintain_order="left")
    return h, ln, rows


def _plan(offset: timedelta) -> SimpleNamespace:
    return SimpleNamespace(
        header_cols=["id", "bill_no", "order_date", "total_amount", "urgent", "big", "flag", "rate", "r7", "remark"],
        line_cols=["id", "header_id", "line_no", "sku", "qty", "updated_at"],
        scales={"total_amount": 2, "rate": 10, "r7": 7, "l.qty": 4}, strings={"bill_no", "remark", "l.sku"},
        datetimes={"order_date", "l.updated_at"}, ints={"id", "urgent", "big", "l.id", "l.header_id", "l.line_no"},
        offset=offset, lines_field="lines")


@needs_native
@pytest.mark.parametrize("offset", [timedelta(hours=8), timedelta(0), timedelta(hours=-5, minutes=-30)])
def test_raw_records_are_the_polars_expressions_text_byte_for_byte(offset: timedelta) -> None:
    h, ln, _ = _page()
    p = _plan(offset)
    spec = columnar._native_spec(p, h, ln, "店铺\"1")
    assert spec is not None
    header, lines, middle, tail = spec
    texts = native.raw_records(header, lines, ln["_pos"].cast(pl.UInt32), middle, tail, 16, texts=True)
    expected = columnar.raw_records(p, h, ln, "店铺\"1").to_list()
    assert len(texts) == len(expected) == len(h)
    for got, want in zip(texts, expected):
        assert got.decode() == want
    hashes = native.raw_records(header, lines, ln["_pos"].cast(pl.UInt32), middle, tail, 16)
    assert hashes == columnar.raw_hashes(columnar.raw_records(p, h, ln, "店铺\"1"))
    assert columnar.record_hashes(p, h, ln, "店铺\"1") == hashes


@pytest.mark.parametrize("path", ["compiled", "polars"])
def test_raw_records_are_the_row_engines_raw_hash(path: str) -> None:
    """The record the row reader hands the row engine (aware times in the reader's zone, Decimals at the column's
    scale), hashed by canonical.raw_hash, for the rows whose years the engine accepts (1000-9999); both the
    compiled encoder and the Polars expressions it falls back to."""
    zone = timezone(timedelta(hours=8))
    h, ln, rows = _page()
    p = _plan(timedelta(hours=8))
    if path == "compiled":
        if native is None:
            pytest.skip("orderhub.transforms._native is not built (no C compiler)")
        got = columnar.record_hashes(p, h, ln, "main")
    else:
        got = columnar.raw_hashes(columnar.raw_records(p, h, ln, "main"))
    lines_of: dict[int, list[dict]] = {}
    for lid, hid, no, sku, qty, at in rows:
        lines_of.setdefault(hid, []).append({"id": lid, "header_id": hid, "line_no": no, "sku": sku,
                                             "qty": qty.quantize(Decimal("0.0001")),
                                             "updated_at": at.replace(tzinfo=zone) if at else None})
    checked = 0
    for i, r in enumerate(h.drop("_pos").iter_rows(named=True)):
        times = [r["order_date"]] + [ln_["updated_at"] for ln_ in lines_of.get(r["id"], [])]
        if any(t is not None and not 1000 <= t.year <= 9999 for t in times):
            continue
        rec = dict(r)
        rec["order_date"] = r["order_date"].replace(tzinfo=zone) if r["order_date"] else None
        for col, q in (("total_amount", "0.01"), ("rate", "1E-10"), ("r7", "1E-7")):
            rec[col] = r[col].quantize(Decimal(q)) if r[col] is not None else None
        rec["lines"] = lines_of.get(r["id"], [])
        rec["_shop"] = "main"
        assert got[i] == raw_hash(rec), (i, rec)
        checked += 1
    assert checked > 20


def test_decimals_above_scale_6_are_written_as_str_decimal_writes_them() -> None:
    """msgspec writes a Decimal as str(Decimal): "0E-10" for a zero at scale 10, "1.000E-7" for 0.0000001000."""
    frame = pl.DataFrame({"d": pl.Series(RATES, dtype=pl.Decimal(38, 10))})
    got = frame.select(columnar._decimal_text(pl, pl.col("d"), 10)).to_series().to_list()
    want = [str(d.quantize(Decimal("1E-10"))) if d is not None else None for d in RATES]
    assert got == want
    assert want[:4] == ["0E-10", "1.000E-7", "-1.000E-7", "1E-10"] and want[4] == "0.0000010000"
    if native is not None:
        texts = native.raw_records([(b"{\"d\":", frame["d"], b"")], [], pl.Series([], dtype=pl.UInt32), b"", b"}",
                                   16, texts=True)
        assert [json.loads(t)["d"] for t in texts] == want


@needs_native
def test_a_column_type_the_encoder_does_not_write_falls_back_to_the_expressions() -> None:
    h, ln, _ = _page(10)
    p = _plan(timedelta(hours=8))
    h2 = h.with_columns(pl.col("urgent").cast(pl.Float64))   # a float: not the C encoder's
    assert columnar._native_spec(p, h2, ln, "main") is None
    assert columnar.record_hashes(p, h2, ln, "main") == columnar.raw_hashes(columnar.raw_records(p, h2, ln, "main"))


@needs_native
def test_order_ids_are_canonical_order_ids() -> None:
    p = SimpleNamespace(header={})
    sids = ["SO1", "常州-0001", "", "x" * 40, None, "a\x1fb"]
    series = pl.Series("s", sids, dtype=pl.String)
    got = native.prefixed_hashes(series, "erp_sql\x1fmain\x1f".encode(), 12, b"o_")
    assert got == [canonical_order_id("erp_sql", "main", s) if s is not None else None for s in sids]
    assert columnar.order_ids(p, pl.DataFrame({"x": [1, 2]}), "erp_sql", "main") == [None, None]


@needs_native
def test_the_encoder_refuses_what_it_cannot_read() -> None:
    h, ln, _ = _page(5)
    pos = ln["_pos"].cast(pl.UInt32)
    good = [(b"{\"id\":", h["id"], b"")]
    with pytest.raises(TypeError):
        native.raw_records([(b"{", h["id"].cast(pl.Float32), b"")], [], pos, b"", b"", 16)
    with pytest.raises(ValueError):   # lines out of header order
        native.raw_records(good, [], pos.reverse(), b"", b"", 16)
    with pytest.raises(ValueError):   # several chunks
        two = pl.concat([h["id"], h["id"]], rechunk=False)
        native.raw_records([(b"{", two, b"")], [], pos, b"", b"", 16)
    none = pl.Series([], dtype=pl.UInt32)   # no lines
    assert native.raw_records(good, [], none, b"", b"}", 16) == [
        hashlib.blake2b(f'{{"id":{i}}}'.encode(), digest_size=16).hexdigest() for i in h["id"]]
    assert json.loads(native.raw_records(good, [], none, b"", b"}", 16, texts=True)[0]) == {"id": 1}
    assert os.path.basename(native.__file__).startswith("_native")


@needs_native
def test_a_string_view_pointing_outside_its_buffers_is_refused_not_read() -> None:
    """Any object with __arrow_c_stream__ can be handed over: every view is checked against its data buffers first."""
    import struct

    pa = pytest.importorskip("pyarrow")
    data = pa.py_buffer(b"abcdefghijklmnopqrstuvwxyz")

    def column(length: int, buffer: int, offset: int):  # noqa: ANN202
        view = pa.py_buffer(struct.pack("<i4sii", length, b"abcd", buffer, offset))
        return pa.chunked_array([pa.Array.from_buffers(pa.string_view(), 1, [None, view, data])])

    assert native.prefixed_hashes(column(20, 0, 0), b"", 12, b"o_") == [
        "o_" + hashlib.blake2b(b"abcdefghijklmnopqrst", digest_size=12).hexdigest()]
    for length, buffer, offset in ((20, 0, 10), (20, 3, 0), (20, -1, 0), (-5, 0, 0)):
        with pytest.raises(ValueError, match="outside its buffers"):
            native.prefixed_hashes(column(length, buffer, offset), b"", 12, b"o_")
