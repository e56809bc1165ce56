"""The hub store: every canonical order, its lines, lineage, change history, holds, quarantine and bookmarks.

One :meth:`HubStore.apply_batch` call writes a whole batch in **one transaction** together with the pipeline's
bookmark, so a run killed at any point resumes from a state that matches the data (nothing lost, nothing
doubled). Applying the same batch twice changes nothing: orders are keyed by their stable canonical id and an
unchanged raw record is recognised by its hash. Status updates go through the lifecycle merge
(:func:`orderhub.transforms.status.apply_update`), so a late or out-of-order update never moves an order back.

SQLite is the embedded default; PostgreSQL is the production store (new rows go in with COPY).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlalchemy import String, Text, and_, bindparam, create_engine, event, false, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from orderhub.connectors.common.errors import ConfigError
from orderhub.connectors.hub import schema as t
from orderhub.infra.faults.crash import crash_point
from orderhub.transforms.canonical import BatchResult, QuarantineEntry
from orderhub.transforms.status import RANK, StatusState, apply_update

log = logging.getLogger("orderhub.hub")
MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_HEAD = "0003"  # the newest migration (a test keeps this equal to Alembic's head)
DEFAULT_URL = "sqlite:///.orderhub/hub.db"

ORDER_COLS = [c.name for c in t.orders.columns]
#: The fields of a stored line (``hub_orders.lines`` holds each line as an object with exactly these keys).
LINE_KEYS = tuple(name for name, _ in t.LINE_COLUMNS)
_LINE_KEYSET = frozenset(LINE_KEYS)
LINEAGE_COLS = [c.name for c in t.lineage.columns if c.name != "id"]
#: Fields whose changes are recorded in the field-level history.
TRACKED = ("status", "source_status", "total_amount", "paid_amount", "shipping_fee", "discount_amount",
           "receiver_name", "receiver_mobile", "receiver_phone", "receiver_province", "receiver_city",
           "receiver_district", "receiver_address", "special_requirements", "seller_memo", "is_urgent", "held",
           "warehouse_code", "priority", "customer_id", "paid_at", "shipped_at")
_CHUNK = 900
_MIGRATE_LOCK = __import__("threading").Lock()
_MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CENTS = Decimal("0.01")
_TIME_COLS = ("created_at", "paid_at", "updated_at", "shipped_at")
_I = {c: i for i, c in enumerate(ORDER_COLS)}
_TIME_IDX = tuple(_I[c] for c in _TIME_COLS)
_I_LINES = _I["lines"]
(_I_STATUS, _I_BASE, _I_SRC_HOLD, _I_STATUS_AT, _I_RANK, _I_HELD, _I_REASONS, _I_FIRST_RUN, _I_LAST_RUN, _I_REVISION,
 _I_CREATED, _I_UPDATED) = (_I[c] for c in ("status", "base_status", "source_hold", "status_at", "status_rank", "held",
                                            "hold_reasons", "first_run_id", "last_run_id", "revision",
                                            "hub_created_at", "hub_updated_at"))
_UTC = timezone.utc
_N_COLS = len(ORDER_COLS)
_BY_ID = __import__("operator").itemgetter("order_id")
_ROW_TEMPLATE = dict.fromkeys(ORDER_COLS)


_json_bytes = __import__("msgspec").json.Encoder(decimal_format="string").encode  # Decimal as exact text


def _json_text(v: Any) -> str:
    return _json_bytes(v).decode()


def _stored_lines(lines: list[dict]) -> list[dict]:
    """The lines as stored in ``hub_orders.lines``: objects with exactly :data:`LINE_KEYS`, the source line id as
    text. Canonical lines already are (one C-level key-set comparison each); others are projected."""
    for ln in lines:
        sid = ln.get("source_line_id")
        if ln.keys() != _LINE_KEYSET or (sid is not None and sid.__class__ is not str):
            break
    else:
        return lines
    out = []
    for ln in lines:
        row = {k: ln.get(k) for k in LINE_KEYS}
        if row["source_line_id"] is not None:
            row["source_line_id"] = str(row["source_line_id"])
        out.append(row)
    return out


_LINE_MONEY = ("qty", "unit_price", "amount")


def _loaded_lines(lines: list[dict] | None) -> list[dict]:
    """Stored lines back as canonical lines: amounts (kept as exact JSON text) as Decimals."""
    for ln in lines or ():
        for k in _LINE_MONEY:
            v = ln.get(k)
            if v is not None and v.__class__ is not Decimal:
                ln[k] = Decimal(str(v))
    return lines or []


def _utc(v: datetime) -> datetime:
    """Stored in UTC: SQLite keeps no offset, so every backend gets the same instant (naive = UTC already)."""
    return v.astimezone(_UTC) if v.tzinfo is not None and v.utcoffset() else v


_SEP = "\x1f"  # ASCII unit separator: never part of an id, a phone number or an amount


def _joined(values: list) -> str | None:
    """Values as one ``_SEP``-joined text for ``string_to_array`` — None when one of them could not round-trip
    (not text or a number, contains the separator, or is empty: string_to_array reads '' as no element)."""
    out = []
    for v in values:
        if v.__class__ is not str:
            if not isinstance(v, (int, Decimal)) or isinstance(v, bool):
                return None
            v = str(v)
        elif not v or _SEP in v:
            return None
        out.append(v)
    return _SEP.join(out)


def polars_types(table: Any) -> dict[str, Any]:
    """The Polars type each column of a hub table is COPYed from (binary format): text, JSON as text,
    booleans, integers, timestamps as UTC microseconds; numerics as Decimal (any scale: the column's own typmod
    rounds, as it does for text input)."""
    import polars as pl

    out = {}
    for col in table.columns:
        name = _pg_type(col.type)
        out[col.name] = {"bool": pl.Boolean, "int8": pl.Int64, "int4": pl.Int32, "numeric": pl.Decimal,
                         "timestamptz": pl.Datetime("us", "UTC")}.get(name, pl.String)
    return out


def binary_copy(frame: Any) -> Iterator[bytes]:
    """A Polars frame as the chunks of one PostgreSQL binary COPY stream (header, rows, trailer), encoded by
    pgpq from the frame's Arrow columns."""
    import pgpq
    import polars as pl

    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())  # strings as views: no copy (pgpq encodes them)
    enc = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
    yield enc.write_header()
    # chunks of a few hundred kB: buffers of several MB would raise glibc's mmap threshold and stay in the
    # encoding thread's arena after use (measured: 40 MB more peak RSS with one chunk per page)
    for batch in table.to_batches(max_chunksize=_COPY_ROWS):
        yield enc.write_batch(batch)
    yield enc.finish()


_COPY_ROWS = 256


def _pg_type(typ: Any) -> str:
    """The PostgreSQL type a hub column has (for binary COPY)."""
    from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, Numeric

    for sa_type, name in ((JSON, "json"), (Boolean, "bool"), (BigInteger, "int8"), (Integer, "int4"),
                          (Numeric, "numeric"), (DateTime, "timestamptz")):
        if isinstance(typ, sa_type):
            return name
    return "text"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return _aware(v).astimezone(timezone.utc).isoformat()
    if isinstance(v, Decimal):  # same text for 235.00 and 235.0000 (NUMERIC(18,4) read back)
        n = v.normalize()
        return str(n.quantize(_CENTS) if n.as_tuple().exponent > -2 else n)
    return str(v)


@dataclass
class ColumnarRows:
    """New orders decided by the columnar engine: ``orders``/``lineage`` as Polars frames in table column order,
    typed as :func:`polars_types` says, ``holds``/``held_lineage`` as row dicts."""

    orders: Any
    lineage: Any
    holds: list[dict] = field(default_factory=list)
    held_lineage: list[dict] = field(default_factory=list)
    encoded: dict[str, tuple[list[str], list[bytes]]] | None = None  # table → (columns, COPY chunks), see encode
    count: int = 0                  # new orders (once encoded, when the frames are gone)

    def encode(self) -> None:
        """Encode the COPY streams now (pgpq), so that storing them is only sending bytes: the run encodes the
        next batch while the writer thread stores this one. The frames are dropped (only the bytes are needed)."""
        self.encoded = {}
        for table, frame in ((t.orders, self.orders), (t.lineage, self.lineage)):
            if len(frame):
                self.encoded[table.name] = (list(frame.columns), list(binary_copy(frame)))
        self.count = len(self.orders)
        self.orders = self.lineage = None


@dataclass
class BatchStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    held: int = 0          # orders held after this batch (new holds and still-held updates)
    released: int = 0
    quarantined: int = 0
    hold_reasons: dict[str, int] = field(default_factory=dict)
    created_ids: list[str] = field(default_factory=list, repr=False)
    changed_ids: list[str] = field(default_factory=list, repr=False)

    def add(self, other: "BatchStats") -> None:
        for k in ("created", "updated", "unchanged", "stale", "held", "released", "quarantined"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k, v in other.hold_reasons.items():
            self.hold_reasons[k] = self.hold_reasons.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("created_ids")
        d.pop("changed_ids")
        return d


class HubStore:
    """The hub database. ``url`` is any SQLAlchemy URL (SQLite file by default, PostgreSQL in production)."""

    def __init__(self, url: str | None = None, *, migrate: bool = True, echo: bool = False) -> None:
        self.url = url or DEFAULT_URL
        if self.url.startswith("sqlite:///") and not self.url.startswith("sqlite:///:memory:"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if self.url.startswith("postgresql://"):
            self.url = "postgresql+psycopg://" + self.url.removeprefix("postgresql://")
        # psycopg prepares a statement after 5 runs; PostgreSQL then may pick a generic plan in which a
        # 900-element IN list is scanned linearly per row (measured: 0.4 s instead of 4 ms per chunk).
        kw: dict[str, Any] = {}
        if self.url.startswith("postgresql+psycopg"):
            kw["connect_args"] = {"prepare_threshold": None}
        if not self.url.startswith("sqlite"):
            # a pooled connection the server dropped (restart, idle timeout, failover) is replaced on checkout
            # instead of failing the next run of a long-lived process; one round trip per checkout
            kw["pool_pre_ping"] = True
        try:
            # hide_parameters: a database error must not print an order's phone and address with its SQL
            self.engine: Engine = create_engine(self.url, echo=echo, future=True, hide_parameters=True,
                                                json_serializer=_json_text, **kw)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"cannot use hub database URL ({type(exc).__name__}: {exc})", key="hub_url") from None
        self.dialect = self.engine.dialect.name
        if self.dialect == "postgresql":
            @event.listens_for(self.engine, "connect")
            def _json_dumps(dbapi_conn, _rec):  # noqa: ANN001, ANN202 - COPY's JSON columns: exact Decimals, C speed
                from psycopg.types.json import set_json_dumps

                set_json_dumps(_json_bytes, dbapi_conn)
        if self.dialect == "sqlite":
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _rec):  # noqa: ANN001, ANN202
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        if migrate:
            self.migrate()

    # ------------------------------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent, and safe when several processes or
        threads open a new hub at once: PostgreSQL takes an advisory lock, SQLite a file lock)."""
        if self._at_head():
            return  # the common case, without importing Alembic (a second of start-up on every run)
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with _MIGRATE_LOCK, self._file_lock():
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(72183910)")
                elif self.dialect == "sqlite":  # pysqlite runs DDL outside any transaction unless one is open: a
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # process killed mid-migration left half a schema
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                crash_point("hub_migration")

    def _at_head(self) -> bool:
        from sqlalchemy import exc, text

        try:
            with self.engine.connect() as c:
                return c.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_HEAD
        except exc.DBAPIError:
            return False

    def _file_lock(self):  # noqa: ANN202
        import contextlib

        path = self.url.removeprefix("sqlite:///") if self.dialect == "sqlite" else None
        if not path or path.startswith(":memory:"):
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def lock():  # noqa: ANN202
            import fcntl

            with open(f"{path}.migrate.lock", "w") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        return lock()

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------------------------------------------
    # runs and state
    def start_run(self, run_id: str, pipeline: str) -> None:
        with self.engine.begin() as c:
            if c.execute(select(t.runs.c.run_id).where(t.runs.c.run_id == run_id)).first() is None:
                c.execute(insert(t.runs).values(run_id=run_id, pipeline=pipeline, started_at=_now(), status="running"))

    def finish_run(self, run_id: str, status: str, summary: dict | None = None) -> None:
        with self.engine.begin() as c:
            c.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(
                finished_at=_now(), status=status, summary=json.loads(json.dumps(summary or {}, default=str))))

    def get_state(self, pipeline: str) -> dict[str, Any]:
        with self.engine.connect() as c:
            rows = c.execute(select(t.state.c.key, t.state.c.value).where(t.state.c.pipeline == pipeline)).all()
        return {k: v for k, v in rows}

    def _put_state(self, c: Connection, pipeline: str, values: dict[str, Any], run_id: str | None) -> None:
        now = _now()
        for k, v in values.items():
            v = json.loads(json.dumps(v, default=str))
            n = c.execute(update(t.state).where(and_(t.state.c.pipeline == pipeline, t.state.c.key == k))
                          .values(value=v, run_id=run_id, updated_at=now)).rowcount
            if not n:
                c.execute(insert(t.state).values(pipeline=pipeline, key=k, value=v, run_id=run_id, updated_at=now))

    def set_state(self, pipeline: str, values: dict[str, Any], run_id: str | None = None) -> None:
        with self.engine.begin() as c:
            self._put_state(c, pipeline, values, run_id)

    # ------------------------------------------------------------------------------------------------------
    # the batch write
    def apply_batch(self, batch: BatchResult, *, run_id: str, pipeline: str = "default",
                    state: dict[str, Any] | None = None, columnar: Any = None) -> BatchStats:
        """Write a canonicalized batch (orders, quarantine) and, in the same transaction, the bookmark.
        ``columnar``: new orders the columnar engine decided (:class:`ColumnarRows`), COPYed first."""
        stats = BatchStats()
        with self.engine.begin() as c:
            if columnar is not None:
                self._copy_columnar(c, columnar, stats)
            if batch.orders:
                self._write_orders(c, batch.orders, run_id, stats)
            if batch.quarantined:
                self._write_quarantine(c, batch.quarantined, run_id, pipeline, stats)
            if state:
                self._put_state(c, pipeline, state, run_id)
            crash_point("hub_transaction")
        return stats

    def _copy_columnar(self, c: Connection, rows: "ColumnarRows", stats: BatchStats) -> None:
        """COPY the columnar engine's new orders and their lineage in PostgreSQL's binary format (typed Arrow
        columns encoded by pgpq: no text to format here or to parse on the server), then their holds."""
        if self.dialect != "postgresql":
            raise ConfigError("the columnar engine writes to a PostgreSQL hub", key="hub.url")
        if rows.encoded is None:
            rows.encode()
        raw = c.connection.driver_connection
        with raw.cursor() as cur:
            for table in (t.orders, t.lineage):
                if table.name not in rows.encoded:
                    continue
                columns, chunks = rows.encoded[table.name]
                with cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)") as cp:
                    for chunk in chunks:
                        cp.write(chunk)
        stats.created += rows.count
        if rows.holds:
            c.execute(insert(t.holds), rows.holds)
        if rows.held_lineage:
            c.execute(insert(t.lineage), rows.held_lineage)
        for h in rows.holds:
            stats.hold_reasons[h["reason_code"]] = stats.hold_reasons.get(h["reason_code"], 0) + 1
        stats.held += len({h["order_id"] for h in rows.holds})

    def existing_ids(self, ids: list[str]) -> set[str]:
        """Which of these order ids the hub holds already (one round trip on PostgreSQL: one list parameter)."""
        with self.engine.connect() as c:
            return self._present(c, ids)

    def _present(self, c: Connection, ids: list[str]) -> set[str]:
        if self.dialect == "postgresql":
            return {r[0] for r in c.execute(select(t.orders.c.order_id).where(self.one_of(t.orders.c.order_id, ids)))}
        out: set[str] = set()
        for i in range(0, len(ids), _CHUNK):
            out.update(r[0] for r in c.execute(select(t.orders.c.order_id).where(
                t.orders.c.order_id.in_(ids[i:i + _CHUNK]))))
        return out

    def _existing(self, c: Connection, ids: list[str]) -> dict[str, dict]:
        cols = [t.orders.c[n] for n in ("order_id", "raw_hash", "ruleset_version", "base_status", "source_hold",
                                        "status_at", "status_rank", "updated_at", "revision", "hold_reasons", *TRACKED)]
        out: dict[str, dict] = {}
        if self.dialect == "postgresql":
            # one round trip: which of these ids exist at all (one list parameter), then fetch only those
            ids = sorted(self._present(c, ids))
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            for row in c.execute(select(*cols).where(t.orders.c.order_id.in_(chunk))).mappings():
                out[row["order_id"]] = dict(row)
        return out

    @staticmethod
    def _collapse(orders: list[dict]) -> tuple[list[dict], dict[str, list[tuple[str, Any]]]]:
        """Several versions of one order in a batch: keep the newest (by source updated_at, then position) as
        the data, and return the statuses of the others so the lifecycle merge still sees every version —
        re-applying the same batch then changes nothing."""
        if len(set(map(_BY_ID, orders))) == len(orders):  # the common case: each order once
            return orders, {}
        groups: dict[str, list[dict]] = {}
        for o in orders:
            groups.setdefault(o["order_id"], []).append(o)
        final, extra = [], {}
        for oid, vs in groups.items():
            if len(vs) == 1:
                final.append(vs[0])
                continue
            last = max(enumerate(vs), key=lambda x: (_aware(x[1].get("updated_at")) or _MIN_TIME, x[0]))[1]
            extra[oid] = [(v["status"], v.get("updated_at")) for v in vs if v is not last]
            final.append(last)
        return final, extra

    def _write_orders(self, c: Connection, orders: list[dict], run_id: str, stats: BatchStats) -> None:
        now = _now()
        pg = self.dialect == "postgresql"
        now_v = now.isoformat() if pg else now  # one text for the whole batch on the COPY path
        orders, extra_status = self._collapse(orders)
        # in key order: each index page of orders, lines and lineage is then touched once per batch instead of
        # at random (measured: a third less PostgreSQL time for the lines' primary key)
        orders = sorted(orders, key=_BY_ID)
        existing = self._existing(c, [o["order_id"] for o in orders])
        new_rows: dict[str, list] = {}
        new_lineage: list[tuple] = []
        lineage_rows: list[dict] = []
        change_rows: list[dict] = []
        upd_rows: list[dict] = []
        hold_updates: dict[str, list[dict]] = {}
        for o in orders:
            oid = o["order_id"]
            ex = existing.get(oid)
            if ex is None:
                st = None
                for s_, at in extra_status.get(oid, ()):
                    st, _ = apply_update(st, s_, at)
                st, _ = apply_update(st, o["status"], o.get("updated_at"))
                new_rows[oid] = self._new_row(o, st, run_id, now, pg)
                new_lineage.append((oid, run_id, "created", o.get("source_system"), o.get("source_order_id"),
                                    o.get("raw_hash"), o.get("mapping_version"), o.get("ruleset_version"), None,
                                    None, None, None, now_v))
                stats.created += 1
                stats.created_ids.append(oid)
                hold_updates[oid] = o.get("hold_reasons") or []
                continue
            if ex.get("raw_hash") == o.get("raw_hash") and ex.get("ruleset_version") == o.get("ruleset_version") \
                    and bool(ex.get("held")) == bool(o.get("held")) and _codes(ex.get("hold_reasons")) == \
                    _codes(o.get("hold_reasons")) and ex.get("warehouse_code") == o.get("warehouse_code"):
                stats.unchanged += 1  # same source record and same decision
                continue
            ex_updated, new_updated = ex.get("updated_at"), o.get("updated_at")
            if ex_updated is not None and new_updated is not None and _aware(new_updated) < _aware(ex_updated):
                stats.stale += 1  # an older copy of the order arrived late: keep the newer data
                lineage_rows.append(self._lineage(o, run_id, "stale", now, message=f"source updated_at "
                                    f"{new_updated.isoformat()} older than hub's {_aware(ex_updated).isoformat()}"))
                continue
            st = StatusState(ex["base_status"], bool(ex["source_hold"]), _aware(ex.get("status_at")),
                             ex.get("status_rank") or 0)
            for s_, at in extra_status.get(oid, ()):
                st, _ = apply_update(st, s_, at)
            st, what = apply_update(st, o["status"], o.get("updated_at"))
            row = self._row(o, st, run_id, now, revision=(ex.get("revision") or 1) + 1)
            for f in TRACKED:
                old, new = ex.get(f), row.get(f)
                if _text(old) != _text(new):
                    change_rows.append({"order_id": oid, "run_id": run_id, "field": f, "old_value": _text(old),
                                        "new_value": _text(new), "at": now})
            row.pop("first_run_id", None)
            row.pop("hub_created_at", None)
            upd_rows.append(row)
            msg = f"status {what}" + (f" ({o['status']} ignored: never backwards)" if what == "stale" else "")
            lineage_rows.append(self._lineage(o, run_id, "updated", now, message=msg))
            stats.updated += 1
            stats.changed_ids.append(oid)
            hold_updates[oid] = o.get("hold_reasons") or []
        if new_rows:  # binary COPY: psycopg formats datetimes and numbers in C, PostgreSQL parses nothing
            self._bulk_insert(c, t.orders, ORDER_COLS, list(new_rows.values()), binary=True)
        if new_lineage:
            self._bulk_insert(c, t.lineage, LINEAGE_COLS, new_lineage)
        if upd_rows:  # one executemany (psycopg sends it as a pipeline) instead of a statement per order
            keys = [k for k in upd_rows[0] if k != "order_id"]
            stmt = update(t.orders).where(t.orders.c.order_id == bindparam("k_order_id")).values(
                {k: bindparam(f"v_{k}") for k in keys})
            c.execute(stmt, [{"k_order_id": r["order_id"], **{f"v_{k}": r[k] for k in keys}} for r in upd_rows])
        self._write_holds(c, hold_updates, orders, run_id, now, stats, lineage_rows)
        if change_rows:
            c.execute(insert(t.changes), change_rows)
        if lineage_rows:
            self._bulk_insert(c, t.lineage, LINEAGE_COLS, lineage_rows)

    def _write_holds(self, c: Connection, updates: dict[str, list[dict]], orders: list[dict], run_id: str,
                     now: datetime, stats: BatchStats, lineage_rows: list[dict]) -> None:
        by_id = {o["order_id"]: o for o in orders}
        ids = list(updates)
        open_holds: dict[str, dict[str, int]] = {}
        fresh = set(stats.created_ids)
        check_ids = [oid for oid in ids if oid not in fresh]  # a new order has no open holds yet
        for i in range(0, len(check_ids), _CHUNK):
            chunk = check_ids[i:i + _CHUNK]
            for hid, oid, code in c.execute(select(t.holds.c.id, t.holds.c.order_id, t.holds.c.reason_code).where(
                    and_(t.holds.c.order_id.in_(chunk), t.holds.c.released_at.is_(None)))):
                open_holds.setdefault(oid, {})[code] = hid
        new_holds, release_ids = [], []
        for oid in ids:
            reasons = {r["code"]: r.get("message") for r in updates[oid]}
            current = open_holds.get(oid, {})
            o = by_id[oid]
            for code, msg in reasons.items():
                stats.hold_reasons[code] = stats.hold_reasons.get(code, 0) + 1
                if code not in current:
                    new_holds.append({"order_id": oid, "reason_code": code, "message": msg,
                                      "ruleset_version": o.get("ruleset_version"), "run_id": run_id, "created_at": now})
            if reasons:
                stats.held += 1
                if not current:
                    lineage_rows.append(self._lineage(o, run_id, "held", now,
                                                      message="; ".join(f"{k}: {v}" for k, v in reasons.items())))
            for code, hid in current.items():
                if code not in reasons:
                    release_ids.append(hid)
            if current and not reasons:
                stats.released += 1
                lineage_rows.append(self._lineage(o, run_id, "released", now, message="all rules pass now"))
        if new_holds:
            c.execute(insert(t.holds), new_holds)
        for i in range(0, len(release_ids), _CHUNK):
            c.execute(update(t.holds).where(t.holds.c.id.in_(release_ids[i:i + _CHUNK]))
                      .values(released_at=now, released_run_id=run_id))

    def _write_quarantine(self, c: Connection, entries: list[QuarantineEntry], run_id: str, pipeline: str,
                          stats: BatchStats) -> None:
        from orderhub.transforms.canonical import raw_hash

        now = _now()
        rows: dict[tuple[str, str], dict] = {}
        for e in entries:
            h = raw_hash(e.raw)
            rows[(e.source_system, h)] = {
                "source_system": e.source_system, "source_order_id": _storable(e.source_order_id, 128),
                "reason_code": e.reason_code, "field": _storable(e.field, 128), "message": _storable(e.message),
                "raw": _raw_json(e.raw), "raw_hash": h,
                "mapping_version": e.mapping_version, "pipeline": pipeline, "run_id": run_id, "last_run_id": run_id,
                "seen_count": 1, "state": "open", "created_at": now}
        stats.quarantined += len(entries)
        hashes = [k[1] for k in rows]
        seen: set[tuple[str, str]] = set()
        for i in range(0, len(hashes), _CHUNK):
            for src, h in c.execute(select(t.quarantine.c.source_system, t.quarantine.c.raw_hash)
                                    .where(t.quarantine.c.raw_hash.in_(hashes[i:i + _CHUNK]))):
                seen.add((src, h))
        fresh = [r for k, r in rows.items() if k not in seen]
        if fresh:
            c.execute(insert(t.quarantine), fresh)
        for src, h in seen & set(rows):
            c.execute(update(t.quarantine).where(and_(t.quarantine.c.source_system == src, t.quarantine.c.raw_hash == h))
                      .values(seen_count=t.quarantine.c.seen_count + 1, last_run_id=run_id))

    # ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _new_row(o: dict, st: StatusState, run_id: str, now: datetime, aware: bool = False) -> list:
        """A new order as a row in ORDER_COLS order (the COPY fast path). Times in UTC (SQLite keeps no offset),
        or with ``aware`` as they are (PostgreSQL stores the instant), a naive one read as UTC."""
        d = _ROW_TEMPLATE.copy()  # the columns, in order, then the order's values (C speed)
        d.update(o)
        row = list(d.values())[:_N_COLS] if len(d) > _N_COLS else list(d.values())
        stored = _aware if aware else _utc
        for i in _TIME_IDX:
            v = row[i]
            if v is not None:
                row[i] = stored(v)
        at = st.newest_at
        row[_I_STATUS] = st.status
        row[_I_BASE] = st.base
        row[_I_SRC_HOLD] = st.hold
        row[_I_STATUS_AT] = None if at is None else stored(at)
        row[_I_RANK] = st.newest_rank
        row[_I_HELD] = bool(row[_I_HELD])
        row[_I_REASONS] = row[_I_REASONS] or None
        row[_I_FIRST_RUN] = row[_I_LAST_RUN] = run_id
        row[_I_REVISION] = 1
        row[_I_CREATED] = row[_I_UPDATED] = now
        row[_I_LINES] = _stored_lines(row[_I_LINES] or [])
        return row

    @staticmethod
    def _row(o: dict, st: StatusState, run_id: str, now: datetime, *, revision: int) -> dict:
        row = {k: o.get(k) for k in ORDER_COLS}
        for k in _TIME_COLS:  # stored in UTC: SQLite keeps no offset, so every backend gets the same instant
            v = row[k]
            if v is not None and v.tzinfo is not None and v.utcoffset():
                row[k] = v.astimezone(timezone.utc)
        row["status"] = st.status
        row["base_status"] = st.base
        row["source_hold"] = st.hold
        row["status_at"] = st.newest_at.astimezone(timezone.utc) if st.newest_at is not None else None
        row["status_rank"] = st.newest_rank
        row["held"] = bool(o.get("held"))
        row["hold_reasons"] = o.get("hold_reasons") or None
        row["first_run_id"] = run_id
        row["last_run_id"] = run_id
        row["revision"] = revision
        row["hub_created_at"] = now
        row["hub_updated_at"] = now
        row["lines"] = _stored_lines(o.get("lines") or [])
        return row

    @staticmethod
    def _lineage(o: dict, run_id: str, ev: str, now: datetime, *, target: str | None = None,
                 result: str | None = None, target_ref: str | None = None, message: str | None = None) -> dict:
        return {"order_id": o["order_id"], "run_id": run_id, "event": ev, "source_system": o.get("source_system"),
                "source_order_id": o.get("source_order_id"), "raw_hash": o.get("raw_hash"),
                "mapping_version": o.get("mapping_version"), "ruleset_version": o.get("ruleset_version"),
                "target": target, "result": result, "target_ref": target_ref, "message": message, "at": now}

    def _bulk_insert(self, c: Connection, table: Any, cols: list[str], rows: list, *, binary: bool = False) -> None:
        """Insert rows (dicts, or sequences in ``cols`` order). PostgreSQL: COPY (``binary``: in PostgreSQL's
        binary format, column types from the table; JSON columns take Python objects); elsewhere one executemany."""
        if not rows:
            return
        as_seq = not isinstance(rows[0], dict)
        if self.dialect == "postgresql" and len(rows) > 200:
            raw = c.connection.driver_connection
            json_cols = [] if binary else [i for i, col in enumerate(cols) if isinstance(table.c[col].type, t.JSON)]
            with raw.cursor() as cur:
                with cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
                              + (" WITH (FORMAT BINARY)" if binary else "")) as cp:
                    if binary:
                        cp.set_types([_pg_type(table.c[col].type) for col in cols])
                    write = cp.write_row
                    for r in rows:
                        vals = r if as_seq else [r.get(col) for col in cols]
                        for i in json_cols:
                            if vals[i] is not None:
                                vals = list(vals)
                                vals[i] = json.dumps(vals[i], ensure_ascii=False, default=str)
                        write(vals)
            return
        c.execute(insert(table), [dict(zip(cols, r)) for r in rows] if as_seq else rows)

    # ------------------------------------------------------------------------------------------------------
    # targets
    def record_target_writes(self, run_id: str, target: str, results: Iterable[dict]) -> None:
        """Record what a target did with each order: ``{order_id, result, target_ref, message, payload_hash}``.
        Upserts ``hub_target_writes`` (the delivery ledger) and appends a lineage event per order."""
        now = _now()
        results = list(results)
        if not results:
            return
        with self.engine.begin() as c:
            ids = [r["order_id"] for r in results]
            known: dict[str, dict] = {}
            for i in range(0, len(ids), _CHUNK):
                for row in c.execute(select(t.target_writes).where(and_(t.target_writes.c.target == target,
                                                                    t.target_writes.c.order_id.in_(ids[i:i + _CHUNK])))
                                     ).mappings():
                    known[row["order_id"]] = dict(row)
            src = {}
            for i in range(0, len(ids), _CHUNK):
                for row in c.execute(select(t.orders.c.order_id, t.orders.c.source_system, t.orders.c.source_order_id,
                                            t.orders.c.raw_hash, t.orders.c.mapping_version,
                                            t.orders.c.ruleset_version).where(t.orders.c.order_id.in_(ids[i:i + _CHUNK]))
                                     ).mappings():
                    src[row["order_id"]] = dict(row)
            fresh, lin = [], []
            for r in results:
                oid = r["order_id"]
                vals = {"result": r["result"], "target_ref": _text(r.get("target_ref")),
                        "payload_hash": r.get("payload_hash"), "message": r.get("message"), "run_id": run_id, "at": now}
                if oid in known:
                    c.execute(update(t.target_writes).where(and_(t.target_writes.c.order_id == oid,
                                                                 t.target_writes.c.target == target))
                              .values(**vals, attempts=known[oid]["attempts"] + 1))
                else:
                    fresh.append({"order_id": oid, "target": target, "attempts": 1, **vals})
                    known[oid] = fresh[-1]
                o = src.get(oid, {"order_id": oid})
                lin.append(self._lineage(o, run_id, "target_write", now, target=target, result=r["result"],
                                         target_ref=_text(r.get("target_ref")), message=r.get("message")))
            if fresh:
                c.execute(insert(t.target_writes), fresh)
            if lin:
                self._bulk_insert(c, t.lineage, LINEAGE_COLS, lin)

    def delivered(self, target: str, order_ids: list[str]) -> dict[str, dict]:
        """The delivery ledger rows of ``target`` for these orders."""
        out: dict[str, dict] = {}
        with self.engine.connect() as c:
            for i in range(0, len(order_ids), _CHUNK):
                for row in c.execute(select(t.target_writes).where(and_(
                        t.target_writes.c.target == target,
                        t.target_writes.c.order_id.in_(order_ids[i:i + _CHUNK])))).mappings():
                    out[row["order_id"]] = dict(row)
        return out

    # ------------------------------------------------------------------------------------------------------
    # reading back
    def load_orders(self, order_ids: list[str]) -> list[dict]:
        """Canonical orders (with lines) as stored in the hub, in the order of ``order_ids``."""
        if not order_ids:
            return []
        heads: dict[str, dict] = {}
        with self.engine.connect() as c:
            for i in range(0, len(order_ids), _CHUNK):
                chunk = order_ids[i:i + _CHUNK]
                for row in c.execute(select(t.orders).where(t.orders.c.order_id.in_(chunk))).mappings():
                    heads[row["order_id"]] = dict(row)
        out = []
        for oid in order_ids:
            h = heads.get(oid)
            if h is None:
                continue
            h["lines"] = _loaded_lines(h.get("lines"))
            for k in ("created_at", "paid_at", "updated_at", "shipped_at", "status_at"):
                h[k] = _aware(h.get(k))
            h["hold_reasons"] = h.get("hold_reasons") or []
            out.append(h)
        return out

    def find_order(self, key: str) -> str | None:
        """Resolve a canonical id or a source order id to the canonical id."""
        with self.engine.connect() as c:
            row = c.execute(select(t.orders.c.order_id).where(t.orders.c.order_id == key)).first()
            if row is None:
                row = c.execute(select(t.orders.c.order_id).where(t.orders.c.source_order_id == key)
                                .order_by(t.orders.c.hub_created_at)).first()
        return row[0] if row else None

    def lineage(self, order_id: str) -> dict[str, Any]:
        """The order's whole trail: the order, its lineage events, field changes, holds and target writes."""
        orders = self.load_orders([order_id])
        if not orders:
            return {}
        with self.engine.connect() as c:
            events = [dict(r) for r in c.execute(select(t.lineage).where(t.lineage.c.order_id == order_id)
                                                  .order_by(t.lineage.c.id)).mappings()]
            chg = [dict(r) for r in c.execute(select(t.changes).where(t.changes.c.order_id == order_id)
                                               .order_by(t.changes.c.id)).mappings()]
            hl = [dict(r) for r in c.execute(select(t.holds).where(t.holds.c.order_id == order_id)
                                              .order_by(t.holds.c.id)).mappings()]
            tw = [dict(r) for r in c.execute(select(t.target_writes).where(t.target_writes.c.order_id == order_id)
                                              ).mappings()]
        return {"order": orders[0], "events": events, "changes": chg, "holds": hl, "target_writes": tw}

    def quarantine_list(self, *, state: str | None = "open", source: str | None = None, reason: str | None = None,
                        pipeline: str | None = None, since: datetime | None = None, limit: int = 100) -> list[dict]:
        q = select(t.quarantine).order_by(t.quarantine.c.id.desc()).limit(limit)
        if state:
            q = q.where(t.quarantine.c.state == state)
        if source:
            q = q.where(t.quarantine.c.source_system == source)
        if reason:
            q = q.where(t.quarantine.c.reason_code == reason)
        if pipeline:
            q = q.where(t.quarantine.c.pipeline == pipeline)
        if since:
            q = q.where(t.quarantine.c.created_at >= since)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def resolve_quarantine(self, ids: list[int], state: str, run_id: str | None = None) -> int:
        with self.engine.begin() as c:
            return c.execute(update(t.quarantine).where(and_(t.quarantine.c.id.in_(ids), t.quarantine.c.state == "open"))
                             .values(state=state, resolved_at=_now(), resolved_run_id=run_id)).rowcount

    def held_orders(self, *, limit: int = 1000) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(select(t.orders.c.order_id, t.orders.c.source_system, t.orders.c.source_order_id,
                                    t.orders.c.hold_reasons, t.orders.c.status).where(t.orders.c.held.is_(True))
                             .order_by(t.orders.c.hub_updated_at.desc()).limit(limit)).mappings()
            return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as c:
            out = {name: c.execute(select(func.count()).select_from(tbl)).scalar_one()
                   for name, tbl in (("orders", t.orders), ("lineage", t.lineage), ("changes", t.changes),
                                     ("holds", t.holds), ("quarantine", t.quarantine),
                                     ("target_writes", t.target_writes))}
            out["lines"] = int(c.execute(select(func.coalesce(func.sum(func.json_array_length(t.orders.c.lines)), 0))
                                         ).scalar_one())
            return out

    def one_of(self, col: Any, values: Iterable[Any]) -> Any:
        """``col IN (values)``; on PostgreSQL ``col = ANY(...)`` with the list as one parameter — one text split by
        the server when the values allow it, else an array — so a long list costs neither SQL compilation, nor a
        statement as long as the list, nor psycopg dumping it element by element."""
        vals = sorted(set(values))
        if not vals:
            return false()
        if self.dialect == "postgresql":
            from sqlalchemy import any_, cast
            from sqlalchemy.dialects.postgresql import ARRAY

            joined = _joined(vals)
            if joined is not None:  # one text parameter split by the server: no per-element work in psycopg
                arr = func.string_to_array(bindparam(None, joined, type_=Text), _SEP, type_=ARRAY(Text))
                return col == any_(arr if isinstance(col.type, String) else cast(arr, ARRAY(col.type)))
            return col == any_(bindparam(None, vals, type_=ARRAY(col.type)))
        return col.in_(vals)

    def created_range(self, where: Any) -> tuple[datetime, datetime] | None:
        """The earliest and latest ``created_at`` of the orders ``where`` selects (None: no such order with a
        created time)."""
        with self.engine.connect() as c:
            lo, hi = c.execute(select(func.min(t.orders.c.created_at), func.max(t.orders.c.created_at))
                               .where(where)).one()
        return None if lo is None else (_aware(lo), _aware(hi))

    def iter_order_ids(self, *, where: Any = None, batch: int = 1000) -> Iterator[list[str]]:
        q = select(t.orders.c.order_id).order_by(t.orders.c.order_id)
        if where is not None:
            q = q.where(where)
        with self.engine.connect() as c:
            ids = [r[0] for r in c.execute(q)]
        for i in range(0, len(ids), batch):
            yield ids[i:i + batch]


def _aware(v: datetime | None) -> datetime | None:
    if v is None:
        return None
    return v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)


def _codes(reasons: Any) -> list[str]:
    return sorted(r.get("code", "") for r in reasons or ())


def _raw_json(raw: Any) -> str:
    try:
        text = json.dumps(raw, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(repr(raw), ensure_ascii=True)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (undecodable bytes): a database cannot store them, JSON escapes can
        return json.dumps(raw, ensure_ascii=True, default=str)
    return text


def _storable(v: Any, width: int | None = None) -> str | None:
    """Text a quarantine column can hold: undecodable bytes escaped, cut to the column's width."""
    if v is None:
        return None
    s = str(v)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s[:width] if width else s


RANKS = RANK  # re-export for callers that need the lifecycle order
