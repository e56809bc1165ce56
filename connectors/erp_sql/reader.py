"""Fast reader of sales orders (header + lines) from an ERP database — plain Python, no singer-sdk.

``OrderReader(config).iter_batches(state)`` yields ``(batch, new_state)``: ``batch`` is a list of order dicts
(the header row with its line rows nested under ``lines`` and ``_shop`` = the partition, i.e. company book /
schema / shard), ``new_state`` the state to commit once the caller has stored the batch. Records keep the ERP's
own column names; the canonical layer maps them (``transforms/mappings/erp_sql.yaml``).

Incremental reads use a keyset bookmark ``(updated_at, primary key)`` per partition: rows sharing the bookmark's
timestamp are neither skipped nor read twice across batch edges, and a look-back window re-reads recent rows to
catch transactions that committed late with an older timestamp (the hub drops unchanged re-reads by hash) —
the overlap-window pattern of reference erp.md §4 and peers.md §0.2. Each batch is one page: headers
``ORDER BY updated_at, pk LIMIT n`` through a server-side cursor, then their lines by key, in one read
transaction, so memory stays flat whatever the table size.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import difflib
import logging
import operator
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

import sqlalchemy as sa

from orderhub.connectors.common.config import sql_identifier
from orderhub.connectors.common.errors import ConfigError, OrderhubError, RecordError
from orderhub.connectors.common.retry import call_with_retry, retry_policy
from orderhub.connectors.common.secrets import register_secret
from orderhub.connectors.erp_sql.db import SYSTEM, Database, InvalidValue, load_timezone, normalize_url

log = logging.getLogger("orderhub.erp_sql.reader")

READER_KEYS = {
    "url": "SQLAlchemy URL of the ERP database (mysql://, mssql://, oracle://, postgresql://)",
    "url_env": "name of an environment variable holding the URL instead of `url`",
    "header_table": "order header table, e.g. so_header (or schema.table)",
    "line_table": "order line table, e.g. so_line",
    "header_query": "a SELECT returning one row per order, instead of header_table",
    "line_query": "a SELECT returning one row per order line, instead of line_table",
    "header_columns": "header columns to read (default: all)",
    "line_columns": "line columns to read (default: all)",
    "primary_key": "header primary key column (default id)",
    "line_primary_key": "line primary key column (default id)",
    "join_key": "line column that references the header (e.g. header_id)",
    "header_key": "header column the join key references (default: primary_key)",
    "updated_at": "header updated-at column, or a list of columns read as COALESCE(a, b)",
    "line_updated_at": "line updated-at column: also pick up orders whose lines alone changed",
    "timezone": "time zone of naive DATETIME columns (default Asia/Shanghai)",
    "batch_size": "orders per batch (default 5000)",
    "lookback_seconds": "re-read this many seconds before the bookmark to catch late commits (default 300)",
    "mode": "incremental (default) or full",
    "start": "ISO timestamp to start from when there is no bookmark yet",
    "partitions": "list of {name, url|url_env, schema, header_table, line_table, filter, line_filter}",
    "shop": "partition name when there are no partitions (default: the database name)",
    "lines_field": "name of the nested line list (default lines)",
    "filter": "{column: value} equality filter on headers (values are bound)",
    "line_filter": "{column: value} equality filter on lines",
    "connect_timeout": "seconds (default 10)",
    "connect_retries": "attempts to connect before giving up (default 3)",
}
PARTITION_KEYS = {"name", "url", "url_env", "schema", "header_table", "line_table", "filter", "line_filter"}


def unknown_keys(cfg: dict, allowed: set[str] | dict, *, prefix: str = "") -> None:
    """Refuse a setting we do not know, suggesting the closest one (a typo must not be silently ignored)."""
    for k in cfg:
        if k not in allowed:
            near = difflib.get_close_matches(str(k), list(allowed), n=1)
            hint = f" — did you mean {near[0]!r}?" if near else f" (known: {', '.join(sorted(allowed))})"
            raise ConfigError(f"unknown setting{hint}", key=f"{prefix}{k}")


def small_int(cfg: dict, key: str, default: int, lo: int, hi: int) -> int:
    v = cfg.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError(f"must be an integer between {lo} and {hi}", key=key)
    return v


def _ident_list(v: Any, key: str) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise ConfigError("must be a column name or a list of column names", key=key)
    return [sql_identifier(c, key=key, allow_schema=False) for c in v]


def _filter(v: Any, key: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError("must be a mapping {column: value}", key=key)
    return {sql_identifier(k, key=f"{key}.{k}", allow_schema=False): val for k, val in v.items()}


def _query(v: Any, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError("must be a SELECT statement", key=key)
    q = v.strip().rstrip(";").strip()
    if not q.lower().startswith(("select", "with")) or ";" in q:
        raise ConfigError("must be a single SELECT (or WITH … SELECT) statement", key=key)
    return q


def _url(cfg: dict, key: str) -> str | None:
    if cfg.get("url") and cfg.get("url_env"):
        raise ConfigError("give either url or url_env, not both", key=key)
    if cfg.get("url_env"):
        name = cfg["url_env"]
        value = os.environ.get(name)
        if not value:
            raise ConfigError(f"environment variable {name} is not set", key=f"{key}url_env")
        register_secret(value)
        return value
    return cfg.get("url")


@dataclass
class PartitionSpec:
    name: str
    url: str
    schema: str | None
    header_table: str | None
    line_table: str | None
    filter: dict[str, Any]
    line_filter: dict[str, Any]


@dataclass
class ReaderSettings:
    """Validated reader configuration (see :data:`READER_KEYS`)."""

    partitions: list[PartitionSpec]
    header_query: str | None
    line_query: str | None
    header_columns: list[str] | None
    line_columns: list[str] | None
    primary_key: str
    line_primary_key: str
    join_key: str
    header_key: str
    updated_at: list[str] | None
    line_updated_at: list[str] | None
    timezone: _dt.tzinfo
    timezone_name: str
    batch_size: int
    lookback: _dt.timedelta
    mode: str
    start: _dt.datetime | None
    lines_field: str
    connect_timeout: int
    connect_retries: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "ReaderSettings":
        if not isinstance(cfg, dict):
            raise ConfigError("reader configuration must be a mapping")
        unknown_keys(cfg, READER_KEYS)
        tz_name = cfg.get("timezone") or "Asia/Shanghai"
        tz = load_timezone(tz_name)
        header_query = _query(cfg["header_query"], "header_query") if cfg.get("header_query") else None
        line_query = _query(cfg["line_query"], "line_query") if cfg.get("line_query") else None
        top_header = cfg.get("header_table")
        top_line = cfg.get("line_table")
        if header_query and top_header:
            raise ConfigError("give either header_table or header_query, not both", key="header_query")
        if line_query and top_line:
            raise ConfigError("give either line_table or line_query, not both", key="line_query")
        if not cfg.get("join_key"):
            raise ConfigError("is required: the line column that references the order header", key="join_key")
        batch = cfg.get("batch_size", 5000)
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 100_000:
            raise ConfigError("must be an integer between 1 and 100000", key="batch_size")
        lookback = cfg.get("lookback_seconds", 300)
        if not isinstance(lookback, (int, float)) or isinstance(lookback, bool) or lookback < 0:
            raise ConfigError("must be a number of seconds ≥ 0", key="lookback_seconds")
        mode = cfg.get("mode", "incremental")
        if mode not in ("incremental", "full"):
            raise ConfigError("must be 'incremental' or 'full'", key="mode")
        updated_at = _ident_list(cfg["updated_at"], "updated_at") if cfg.get("updated_at") else None
        if mode == "incremental" and not updated_at:
            raise ConfigError("is required for incremental mode (or set mode: full)", key="updated_at")
        start = None
        if cfg.get("start"):
            try:
                start = _dt.datetime.fromisoformat(str(cfg["start"]))
            except ValueError:
                raise ConfigError("must be an ISO timestamp such as 2026-01-01T00:00:00+08:00",
                                  key="start") from None
            if start.tzinfo is None:
                start = start.replace(tzinfo=tz)

        parts_cfg = cfg.get("partitions")
        base_url = _url(cfg, "")
        parts: list[PartitionSpec] = []
        if parts_cfg is None:
            if not base_url:
                raise ConfigError("is required (or url_env)", key="url")
            name = cfg.get("shop") or sa.engine.make_url(base_url).database or "default"
            parts_cfg = [{"name": name}]
        if not isinstance(parts_cfg, list) or not parts_cfg:
            raise ConfigError("must be a non-empty list", key="partitions")
        seen = set()
        for i, p in enumerate(parts_cfg):
            key = f"partitions[{i}]."
            if not isinstance(p, dict):
                raise ConfigError("must be a mapping with at least a name", key=f"partitions[{i}]")
            unknown_keys(p, PARTITION_KEYS, prefix=key)
            name = p.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError("is required", key=f"{key}name")
            if name in seen:
                raise ConfigError(f"duplicate partition name {name!r}", key=f"{key}name")
            seen.add(name)
            url = _url(p, key) or base_url
            if not url:
                raise ConfigError("is required (here or at the top level)", key=f"{key}url")
            htable = p.get("header_table", top_header)
            ltable = p.get("line_table", top_line)
            if not header_query and not htable:
                raise ConfigError("is required (or header_query)", key="header_table")
            if not line_query and not ltable:
                raise ConfigError("is required (or line_query)", key="line_table")
            schema = p.get("schema")
            parts.append(PartitionSpec(
                name=name, url=url,
                schema=sql_identifier(schema, key=f"{key}schema", allow_schema=False) if schema else None,
                header_table=sql_identifier(htable, key="header_table") if htable else None,
                line_table=sql_identifier(ltable, key="line_table") if ltable else None,
                filter={**_filter(cfg.get("filter"), "filter"), **_filter(p.get("filter"), f"{key}filter")},
                line_filter={**_filter(cfg.get("line_filter"), "line_filter"),
                             **_filter(p.get("line_filter"), f"{key}line_filter")},
            ))
        pk = sql_identifier(cfg.get("primary_key", "id"), key="primary_key", allow_schema=False)
        return cls(
            partitions=parts,
            header_query=header_query,
            line_query=line_query,
            header_columns=_ident_list(cfg["header_columns"], "header_columns") if cfg.get("header_columns") else None,
            line_columns=_ident_list(cfg["line_columns"], "line_columns") if cfg.get("line_columns") else None,
            primary_key=pk,
            line_primary_key=sql_identifier(cfg.get("line_primary_key", "id"), key="line_primary_key",
                                            allow_schema=False),
            join_key=sql_identifier(cfg["join_key"], key="join_key", allow_schema=False),
            header_key=sql_identifier(cfg.get("header_key", pk), key="header_key", allow_schema=False),
            updated_at=updated_at,
            line_updated_at=(_ident_list(cfg["line_updated_at"], "line_updated_at")
                             if cfg.get("line_updated_at") else None),
            timezone=tz,
            timezone_name=tz_name,
            batch_size=batch,
            lookback=_dt.timedelta(seconds=lookback),
            mode=mode,
            start=start,
            lines_field=sql_identifier(cfg.get("lines_field", "lines"), key="lines_field", allow_schema=False),
            connect_timeout=small_int(cfg, "connect_timeout", 10, 1, 600),
            connect_retries=small_int(cfg, "connect_retries", 3, 1, 20),
        )


class OrderBatch(list):
    """A batch of order records; ``errors`` holds the records of this batch that were quarantined
    (:class:`RecordError` with ``code``, ``field``, ``record_id`` and the raw record in ``details``)."""

    def __init__(self, records: list[dict], *, partition: str, errors: list[RecordError] | None = None) -> None:
        super().__init__(records)
        self.partition = partition
        self.errors = errors or []
        self.line_count = 0


class _ArrowUnreadable(Exception):
    """connectorx could not convert a value of the page (MySQL zero dates, say): the row reader reads it."""


_ZERO_DATE = "_orderhub_zero_date"   # the columnar reader's flag column: the row holds a zero date


@dataclass
class ArrowPage:
    """A full-pass page as columns (Polars frames in the reader's column order; lines sorted by join key, line
    key): what the columnar engine reads instead of an :class:`OrderBatch`."""

    header: Any
    lines: Any
    partition: str
    last_key: Any


Keyset = tuple[_dt.datetime, Any]
_MIN_TIME = _dt.datetime(1, 1, 1, tzinfo=_dt.timezone.utc)


@dataclass
class _Source:
    """One side (header or line) of one partition: the FROM clause and the columns we select."""

    from_: sa.sql.FromClause
    columns: list[str]
    pk: str
    ts: list[str] | None

    def col(self, name: str) -> sa.ColumnElement:
        return self.from_.c[name]

    def ts_expr(self) -> sa.ColumnElement:
        assert self.ts
        cols = [self.col(c) for c in self.ts]
        return cols[0] if len(cols) == 1 else sa.func.coalesce(*cols)

    def select(self) -> sa.Select:
        return sa.select(*[self.col(c) for c in self.columns])


@dataclass
class _Partition:
    spec: PartitionSpec
    db: Database
    header: _Source | None = None
    line: _Source | None = None
    header_types: dict[str, Any] = field(default_factory=dict)
    line_types: dict[str, Any] = field(default_factory=dict)


class OrderReader:
    """Reads orders with nested lines from one or more partitions of an ERP database (see module doc)."""

    def __init__(self, config: dict[str, Any] | ReaderSettings) -> None:
        self.settings = config if isinstance(config, ReaderSettings) else ReaderSettings.from_config(config)
        s = self.settings
        self._parts: dict[str, _Partition] = {}
        dbs: dict[str, Database] = {}
        for spec in s.partitions:
            db = dbs.get(spec.url)
            if db is None:
                db = Database(normalize_url(spec.url), s.timezone, shop=spec.name, connect_timeout=s.connect_timeout)
                dbs[spec.url] = db
            self._parts[spec.name] = _Partition(spec=spec, db=db)
        self.stats = {"orders": 0, "lines": 0, "quarantined": 0, "batches": 0, "line_ranges": 0}
        self.arrow = False  # full passes as ArrowPage (columnar engine); see columnar_reason()

    # --- public API -----------------------------------------------------------------------------------------
    @property
    def partition_names(self) -> list[str]:
        return list(self._parts)

    def check(self) -> None:
        """Connect to every partition and check that tables and columns exist (one clear error otherwise)."""
        for name in self._parts:
            self._prepare(self._parts[name])

    def column_types(self, partition: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """SQLAlchemy types of the header and line columns (for the tap's schema)."""
        part = self._parts[partition or self.partition_names[0]]
        self._prepare(part)
        return part.header_types, part.line_types

    def iter_batches(self, state: dict | None = None) -> Iterator[tuple[OrderBatch, dict]]:
        """Yield ``(batch, new_state)`` for every partition in turn. ``state`` is what the previous run's last
        committed batch returned (``{"partitions": {name: {...}}}``); commit ``new_state`` only after storing
        ``batch``."""
        state = copy.deepcopy(state) if state else {}
        parts_state = state.setdefault("partitions", {})
        for name in self._parts:
            for batch, pstate in self.iter_partition(name, parts_state.get(name)):
                parts_state[name] = pstate
                yield batch, copy.deepcopy(state)

    def iter_partition(self, name: str, pstate: dict | None = None) -> Iterator[tuple[OrderBatch, dict]]:
        """Yield ``(batch, partition_state)`` for one partition (the tap keeps one bookmark per partition)."""
        part = self._parts[name]
        self._prepare(part)
        pstate = copy.deepcopy(pstate) if pstate else {}
        with self._session(part) as conn:
            if self.settings.mode == "full":
                yield from self._full(part, conn, pstate)
            elif not pstate.get("updated_at") and self.settings.start is None:
                # First run: a primary-key pass is cheaper than walking the updated-at index; its high-water
                # mark becomes the bookmark, then an incremental pass (no look-back: the pass just read those
                # rows; the next run's look-back covers late commits) catches up with changes made meanwhile.
                for batch, pstate in self._full(part, conn, pstate):
                    yield batch, pstate
                yield from self._incremental(part, conn, pstate, lookback=False)
            else:
                pstate.pop("full", None)
                yield from self._incremental(part, conn, pstate)

    def read_all(self, state: dict | None = None) -> tuple[list[dict], dict]:
        """Convenience for small tables and tests: every order and the final state."""
        out: list[dict] = []
        final = state or {}
        for batch, final in self.iter_batches(state):
            out.extend(batch)
        return out, final

    # --- setup ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, part: _Partition) -> Iterator[Any]:
        """A connection for one unit of reading, closed afterwards. Any driver error inside, including the
        ``rollback`` or ``close`` of a connection the server dropped, leaves as a classified
        :class:`OrderhubError` (a lost connection is transient: the run ends with one clear line and the next
        run resumes from its bookmark), never as a raw driver exception."""
        conn = self._connect(part)
        try:
            yield conn
        except part.db.dialect.loaded_dbapi.Error as exc:
            raise part.db.classify(exc) from None
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection; the caller sees the real error
                pass

    def _connect(self, part: _Partition) -> Any:
        policy = retry_policy(attempts=max(1, self.settings.connect_retries), base=0.5, cap=5.0,
                              name=f"connect {part.db.label}")
        return call_with_retry(part.db.connect, policy=policy)

    def _prepare(self, part: _Partition) -> None:
        if part.header is not None:
            return
        s, spec, db = self.settings, part.spec, part.db
        with self._session(part) as conn:
            h_from, h_types = self._describe(part, conn, spec.header_table, s.header_query, "header")
            l_from, l_types = self._describe(part, conn, spec.line_table, s.line_query, "line")
        hkey = "header_query" if s.header_query else "header_table"
        lkey = "line_query" if s.line_query else "line_table"
        h_cols = _columns(h_types, s.header_columns, "header_columns")
        l_cols = _columns(l_types, s.line_columns, "line_columns")
        needed_h = [s.primary_key, s.header_key, *(s.updated_at or []), *spec.filter]
        needed_l = [s.line_primary_key, s.join_key, *(s.line_updated_at or []), *spec.line_filter]
        for c in needed_h:
            _require_col(h_types, c, hkey)
        for c in needed_l:
            _require_col(l_types, c, lkey)
        for c in (s.primary_key, s.header_key, *(s.updated_at or [])):
            if c not in h_cols:
                h_cols.append(c)
        for c in (s.line_primary_key, s.join_key):
            if c not in l_cols:
                l_cols.append(c)
        part.header = _Source(h_from, h_cols, s.primary_key, s.updated_at)
        part.line = _Source(l_from, l_cols, s.line_primary_key, s.line_updated_at)
        part.header_types = {c: h_types[c] for c in h_cols}
        part.line_types = {c: l_types[c] for c in l_cols}
        log.debug("partition %s ready on %s", spec.name, db.label)

    def _describe(self, part: _Partition, conn: Any, table: str | None, query: str | None,
                  side: str) -> tuple[sa.sql.FromClause, dict[str, Any]]:
        db = part.db
        if query is not None:
            probe = sa.text(query).columns().subquery("src")
            stmt = sa.select(sa.literal_column("*")).select_from(probe).where(sa.false())
            sql, params = db.compile(stmt)
            cur = conn.driver_connection.cursor()
            try:
                cur.execute(sql, params)
                description = list(cur.description)
                names = [d[0] for d in description]
                try:
                    cur.fetchall()
                except Exception:  # noqa: BLE001 - some drivers have nothing to fetch
                    pass
            except Exception as exc:  # noqa: BLE001
                raise db.classify(exc, key=f"{side}_query") from None
            finally:
                cur.close()
            conn.rollback()
            types = {n: _type_from_description(d) for n, d in zip(names, description)}
            from_ = sa.text(query).columns(*[sa.column(n) for n in names]).subquery(f"{side[0]}src")
            return from_, types
        assert table is not None
        schema, _, name = table.rpartition(".")
        schema = schema or part.spec.schema
        try:
            cols = sa.inspect(db.engine).get_columns(name, schema=schema)
        except sa.exc.NoSuchTableError:
            where = f"{schema}.{name}" if schema else name
            raise ConfigError(f"table {where!r} does not exist in {db.label}", key=f"{side}_table") from None
        except OrderhubError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise db.classify(exc, connecting=True, key=f"{side}_table") from None
        types = {c["name"]: c["type"] for c in cols}
        return sa.table(name, *[sa.column(n) for n in types], schema=schema), types

    # --- incremental ----------------------------------------------------------------------------------------
    def _incremental(self, part: _Partition, conn: Any, pstate: dict, *, lookback: bool = True
                     ) -> Iterator[tuple[OrderBatch, dict]]:
        s = self.settings
        h, ln = part.header, part.line
        assert h is not None and ln is not None
        naive = pstate.get("naive", True)
        # High-water mark of lines *before* reading headers, so line-only changes during the run are not lost.
        if ln.ts and "line_updated_at" not in pstate:
            hw = self._high_water(part, conn, ln)
            if hw is not None:
                pstate["line_updated_at"], pstate["line_pk"] = hw[0].isoformat(), hw[1]
        start = self._start_keyset(pstate, "updated_at", "pk", lookback=lookback)
        phase1_start = start
        after = start
        while True:
            stmt = self.page_statement(h, part.spec.filter, after, naive)
            headers = part.db.fetch_all(conn, stmt)
            if not headers:
                conn.rollback()
                break
            batch = self._assemble(part, conn, headers)
            conn.rollback()
            nxt = self._last_keyset(headers, h)
            if nxt is None or (after is not None and not _newer(nxt, after)):
                raise OrderhubError(f"partition {part.spec.name}: the updated-at/primary-key bookmark does not "
                                    f"advance (unreadable {'/'.join(h.ts or [])} values?); stopping instead of "
                                    "reading the same page again", code="bookmark_stuck")
            after = nxt
            naive = self._naive_of(part, headers[-1], h)
            if _newer(after, self._bookmark(pstate, "updated_at", "pk")):
                pstate["updated_at"], pstate["pk"] = after[0].isoformat(), after[1]
            pstate["naive"] = naive
            yield batch, copy.deepcopy(pstate)
            if len(headers) < s.batch_size:
                break
        if ln.ts:
            yield from self._line_changes(part, conn, pstate, phase1_start, naive)
        self._warn_null_timestamps(part, conn, h)

    def _line_changes(self, part: _Partition, conn: Any, pstate: dict, phase1_start: Keyset | None,
                      naive: bool) -> Iterator[tuple[OrderBatch, dict]]:
        """Orders whose lines changed while the header kept its timestamp: keyset over the line table's
        (updated_at, pk); orders already read in the header pass of this run are skipped."""
        s = self.settings
        h, ln = part.header, part.line
        assert h is not None and ln is not None
        after = self._start_keyset(pstate, "line_updated_at", "line_pk", use_start=False)
        while True:
            stmt = (sa.select(ln.col(ln.pk), *[ln.col(c) for c in ln.ts or []], ln.col(s.join_key))
                    .where(*self._filters(ln, part.spec.line_filter))
                    .where(*self._after(ln, after, naive))
                    .order_by(ln.ts_expr(), ln.col(ln.pk)).limit(s.batch_size))
            rows = part.db.fetch_all(conn, stmt)
            if not rows:
                conn.rollback()
                break
            keys = list(dict.fromkeys(r[s.join_key] for r in rows))
            headers = []
            for chunk in _chunks(keys, part.db.in_list_limit):
                q = h.select().where(*self._filters(h, part.spec.filter), h.col(s.header_key).in_(chunk))
                headers.extend(part.db.fetch_all(conn, q))
            # Orders newer than where the header pass started were just read with their current lines.
            headers = [r for r in headers
                       if phase1_start is not None and not _newer(self._keyset_or_min(r, h), phase1_start)]
            headers.sort(key=lambda r: self._keyset_or_min(r, h))
            batch = self._assemble(part, conn, headers) if headers else OrderBatch([], partition=part.spec.name)
            conn.rollback()
            after = self._last_keyset(rows, ln) or after
            if _newer(after, self._bookmark(pstate, "line_updated_at", "line_pk")):
                pstate["line_updated_at"], pstate["line_pk"] = after[0].isoformat(), after[1]
            yield batch, copy.deepcopy(pstate)
            if len(rows) < s.batch_size:
                break

    # --- full -----------------------------------------------------------------------------------------------
    def _full(self, part: _Partition, conn: Any, pstate: dict) -> Iterator[tuple[OrderBatch, dict]]:
        """Every order in primary-key order. The high-water mark taken at the start becomes the incremental
        bookmark when the pass completes (rows changed during the pass are newer and read next time); an
        interrupted pass resumes after the last committed key."""
        s = self.settings
        h, ln = part.header, part.line
        assert h is not None and ln is not None
        full = pstate.get("full")
        if not full:
            full = {"after_pk": None}
            if h.ts:
                hw = self._high_water(part, conn, h)
                full["hw"] = [hw[0].isoformat(), hw[1]] if hw else None
            if ln.ts:
                lhw = self._high_water(part, conn, ln)
                full["line_hw"] = [lhw[0].isoformat(), lhw[1]] if lhw else None
            pstate["full"] = full
        while True:
            stmt = h.select().where(*self._filters(h, part.spec.filter))
            if full["after_pk"] is not None:
                stmt = stmt.where(h.col(h.pk) > full["after_pk"])
            stmt = stmt.order_by(h.col(h.pk)).limit(s.batch_size)
            page = self._arrow_page(part, stmt, full["after_pk"]) if self.arrow else None
            if page is not None:  # the same page as Arrow columns, for the columnar engine
                batch = page
                got = len(page.header) > 0
                done = len(page.header) < s.batch_size
                if got:
                    full["after_pk"] = page.last_key
                    pstate["naive"] = True
            else:
                headers = part.db.fetch_all(conn, stmt)
                got = bool(headers)
                done = len(headers) < s.batch_size
                if headers:
                    key_range = (full["after_pk"], headers[-1][h.pk]) if s.header_key == h.pk else None
                    batch = self._assemble(part, conn, headers, key_range)
                    conn.rollback()
                    full["after_pk"] = headers[-1][h.pk]
                    if h.ts:
                        pstate["naive"] = self._naive_of(part, headers[-1], h)
                else:
                    conn.rollback()
                    batch = OrderBatch([], partition=part.spec.name)
            if done:  # pass complete: promote the high-water marks to bookmarks
                pstate.pop("full", None)
                hw = full.get("hw")
                if hw and _newer((_dt.datetime.fromisoformat(hw[0]), hw[1]),
                                 self._bookmark(pstate, "updated_at", "pk")):
                    pstate["updated_at"], pstate["pk"] = hw
                lhw = full.get("line_hw")
                if lhw and _newer((_dt.datetime.fromisoformat(lhw[0]), lhw[1]),
                                  self._bookmark(pstate, "line_updated_at", "line_pk")):
                    pstate["line_updated_at"], pstate["line_pk"] = lhw
            if got or done:
                yield batch, copy.deepcopy(pstate)
            if done:
                break

    # --- the columnar engine's full pass ----------------------------------------------------------------------
    def columnar_reason(self) -> str | None:
        """Why full passes cannot be read as Arrow pages here (None: they can). connectorx reads MySQL/MariaDB; the
        header and line pages must be primary-key ranges with integer keys and no filters or custom queries."""
        s = self.settings
        try:
            import connectorx  # noqa: F401
        except ImportError:
            return "connectorx is not installed (pip install 'orderhub[columnar]')"
        for part in self._parts.values():
            if part.db.backend not in ("mysql", "mariadb"):
                return f"source database {part.db.backend} (the columnar reader covers MySQL/MariaDB)"
            if s.header_query or s.line_query:
                return "custom header/line queries"
            if part.spec.filter or part.spec.line_filter:
                return "partition filters"
            if s.header_key != s.primary_key:
                return "lines joined on a header column that is not its primary key"
            self._prepare(part)
            for key, types in ((s.primary_key, part.header_types), (s.join_key, part.line_types),
                               (s.line_primary_key, part.line_types)):
                if not isinstance(types.get(key), sa.Integer):
                    return f"key column {key} is not an integer"
        return None

    def _arrow_url(self, part: _Partition) -> str:
        u = part.db.url.set(drivername="mysql", query={})
        return u.render_as_string(hide_password=False)

    def _arrow_read(self, part: _Partition, stmt: sa.Select) -> Any:
        import connectorx as cx

        sql = str(stmt.compile(dialect=part.db.dialect, compile_kwargs={"literal_binds": True}))
        policy = retry_policy(attempts=max(1, self.settings.connect_retries), base=0.5, cap=5.0,
                              name=f"read {part.db.label}")
        try:
            return call_with_retry(lambda: cx.read_sql(self._arrow_url(part), sql, return_type="polars"),
                                   policy=policy)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - connectorx errors carry the URL: never show it
            if type(exc).__name__ == "PanicException":  # a value it cannot convert (a zero date, say)
                raise _ArrowUnreadable(str(exc)[:200]) from None
            msg = str(exc).replace(self._arrow_url(part), part.db.label)
            if part.db.url.password:
                msg = msg.replace(str(part.db.url.password), "***")
            raise OrderhubError(f"columnar read from {part.db.label} failed: {msg[:300]}", code="source_failed",
                                retryable=True) from None

    def _arrow_guarded(self, part: _Partition, stmt: sa.Select, src: _Source, types: dict[str, Any]) -> Any:
        """``stmt`` (a select of ``src``'s columns) read as Arrow, with its DATE/DATETIME/TIMESTAMP columns read
        as NULL where MySQL holds a zero or partial-zero date (``0000-00-00``, ``2024-00-15``: connectorx would
        panic on them, printing a Rust backtrace) and a flag column telling which rows held one. A page with such
        a row raises ``_ArrowUnreadable``: the row reader reads it and quarantines those orders."""
        dates = [c for c in src.columns if isinstance(types.get(c), (sa.DateTime, sa.Date))]
        if not dates:
            return self._arrow_read(part, stmt)
        zero = {c: sa.or_(sa.func.month(src.col(c)) == 0, sa.func.dayofmonth(src.col(c)) == 0) for c in dates}
        cols = [sa.case((zero[c], sa.null()), else_=src.col(c)).label(c) if c in zero else src.col(c)
                for c in src.columns]
        frame = self._arrow_read(part, stmt.with_only_columns(*cols, sa.or_(*zero.values()).label(_ZERO_DATE)))
        zero_rows = frame.get_column(_ZERO_DATE).cast(bool).sum()
        if zero_rows:
            raise _ArrowUnreadable(f"{zero_rows} rows with zero dates")
        return frame.drop(_ZERO_DATE)

    def _arrow_page(self, part: _Partition, stmt: sa.Select, after: Any) -> "ArrowPage | None":
        h, ln = part.header, part.line
        assert h is not None and ln is not None
        try:
            header = self._arrow_guarded(part, stmt, h, part.header_types)
            if len(header):
                last = int(header[h.pk][-1])
                lines = self._arrow_lines(part, after, last)
        except _ArrowUnreadable as exc:
            log.info("partition %s: a page after key %s holds values the columnar reader cannot convert (%s); "
                     "the row reader reads it", part.spec.name, after, str(exc).splitlines()[0][:120])
            return None
        if not len(header):
            return ArrowPage(header, header, partition=part.spec.name, last_key=after)
        self.stats["orders"] += len(header)
        self.stats["lines"] += len(lines)
        self.stats["batches"] += 1
        return ArrowPage(header, lines, partition=part.spec.name, last_key=last)

    def _arrow_lines(self, part: _Partition, after: Any, last: int) -> Any:
        """The lines of the orders with header keys in (``after``, ``last``], sorted by join key then line key.

        Lines are usually inserted with their order, so their own keys for a range of orders are dense: then the
        lines are read as that primary-key range, in table order, instead of through the join-key index (one
        primary-key lookup per line; measured on the benchmark's lines: MariaDB CPU 0.73 → 0.40 s, read time a
        third less).
        One index-only aggregate tells which case this page is."""
        s = self.settings
        ln = part.line
        assert ln is not None
        join, pk = ln.col(s.join_key), ln.col(ln.pk)
        where = [join <= last] + ([join > int(after)] if after is not None else [])
        span = self._arrow_read(part, sa.select(sa.func.min(pk).label("lo"), sa.func.max(pk).label("hi"),
                                                sa.func.count().label("n")).where(*where))
        lo, hi, n = span["lo"][0], span["hi"][0], int(span["n"][0] or 0)
        if n and lo is not None and int(hi) - int(lo) + 1 <= 2 * n:
            lines = self._arrow_guarded(part, ln.select().where(pk.between(int(lo), int(hi)), *where).order_by(pk),
                                        ln, part.line_types)
            self.stats["line_ranges"] += 1
            if lines[s.join_key].is_sorted():  # in key order, with the join keys in order too: already sorted
                return lines                    # by (join key, key)
            return lines.sort([s.join_key, ln.pk], maintain_order=True)
        return self._arrow_guarded(part, ln.select().where(*where).order_by(join, pk), ln, part.line_types)

    def fetch_orders(self, partition: str, keys: list[Any]) -> OrderBatch:
        """The orders with these header keys, read and assembled exactly as a row-engine batch (the columnar
        engine hands the orders it does not decide itself back through here)."""
        part = self._parts[partition]
        self._prepare(part)
        h = part.header
        assert h is not None
        with self._session(part) as conn:
            headers: list[dict] = []
            for chunk in _chunks(list(keys), part.db.in_list_limit):
                headers.extend(part.db.fetch_all(conn, h.select().where(h.col(h.pk).in_(chunk))
                                                 .order_by(h.col(h.pk))))
            headers.sort(key=operator.itemgetter(h.pk))
            batch = self._assemble(part, conn, headers) if headers else OrderBatch([], partition=partition)
            conn.rollback()
            return batch

    # --- helpers --------------------------------------------------------------------------------------------
    def _assemble(self, part: _Partition, conn: Any, headers: list[dict],
                  key_range: tuple[Any, Any] | None = None) -> OrderBatch:
        """Nest each order's lines under it (lines by key, IN-lists chunked per dialect) and quarantine
        records holding values the driver could not convert."""
        s = self.settings
        ln = part.line
        assert ln is not None
        lines_field, name, hk = s.lines_field, part.spec.name, s.header_key
        by_key: dict[Any, list] = {}
        for hd in headers:
            lst: list = []
            hd[lines_field] = lst
            hd["_shop"] = name
            by_key[hd[hk]] = lst
        n_lines = 0
        join, lpk = s.join_key, ln.pk
        lfilters = self._filters(ln, part.spec.line_filter)
        if key_range is not None:
            # A primary-key page: its lines are one index range, already in (join key, line pk) order.
            lo, hi = key_range
            where = [ln.col(join) <= sa.bindparam(None, hi)]
            if lo is not None:
                where.append(ln.col(join) > sa.bindparam(None, lo))
            stmts = [ln.select().where(*lfilters, *where).order_by(ln.col(join), ln.col(lpk))]
        else:
            # No ORDER BY: MariaDB turns a long IN list into a derived table and would sort it on disk.
            stmts = [ln.select().where(*lfilters, ln.col(join).in_(chunk))
                     for chunk in _chunks(list(by_key), part.db.in_list_limit)]
        for stmt in stmts:
            for rows in part.db.fetch(conn, stmt, chunk=20000):
                n_lines += len(rows)
                for r in rows:
                    lst = by_key.get(r[join])
                    if lst is not None:
                        lst.append(r)
        if key_range is None:
            key = operator.itemgetter(lpk)
            for lst in by_key.values():
                if len(lst) > 1:
                    lst.sort(key=key)
        errors: list[RecordError] = []
        records = headers
        if part.db.take_bad_flag():
            records, errors = self._quarantine(part, headers)
        batch = OrderBatch(records, partition=name, errors=errors)
        batch.line_count = n_lines
        self.stats["orders"] += len(records)
        self.stats["lines"] += n_lines
        self.stats["quarantined"] += len(errors)
        self.stats["batches"] += 1
        return batch

    def _quarantine(self, part: _Partition, headers: list[dict]) -> tuple[list[dict], list[RecordError]]:
        good, errors = [], []
        lf = self.settings.lines_field
        pk = self.settings.primary_key
        for hd in headers:
            bad_field = None
            for k, v in hd.items():
                if type(v) is InvalidValue:
                    bad_field, raw = k, v.raw
                    break
            if bad_field is None:
                for i, line in enumerate(hd[lf]):
                    for k, v in line.items():
                        if type(v) is InvalidValue:
                            bad_field, raw = f"{lf}[{i}].{k}", v.raw
                            break
                    if bad_field:
                        break
            if bad_field is None:
                good.append(hd)
                continue
            code = "zero_date" if str(raw).startswith("0000-00-00") else "invalid_value"
            rid = f"{part.spec.name}/{hd.get(pk)}"
            errors.append(RecordError(
                f"value {raw!r} cannot be read as a date/time", code=code, field=bad_field, record_id=rid,
                details={"record": _plain(hd), "partition": part.spec.name, "system": SYSTEM}))
        if errors:
            log.warning("partition %s: %d record(s) quarantined (%s)", part.spec.name, len(errors),
                        "; ".join(str(e) for e in errors[:3]))
        return good, errors

    def page_statement(self, h: _Source, flt: dict[str, Any], after: Keyset | None, naive: bool) -> sa.Select:
        """One incremental page: ``WHERE (ts, pk) > after ORDER BY ts, pk LIMIT batch_size`` (see :meth:`_after`);
        LIMIT compiles to ``TOP n`` on SQL Server and ``FETCH FIRST n ROWS ONLY`` on Oracle."""
        return (h.select().where(*self._filters(h, flt)).where(*self._after(h, after, naive))
                .order_by(h.ts_expr(), h.col(h.pk)).limit(self.settings.batch_size))

    def _last_keyset(self, rows: list[dict], src: _Source) -> Keyset | None:
        """The keyset of the last row whose updated-at is readable (a zero date cannot be a bookmark)."""
        for row in reversed(rows):
            try:
                return (self._ts_of(row, src), row[src.pk])
            except RecordError:
                continue
        return None

    def _keyset_or_min(self, row: dict, src: _Source) -> Keyset:
        try:
            return (self._ts_of(row, src), row[src.pk])
        except RecordError:
            return (_MIN_TIME, row[src.pk])

    def _filters(self, src: _Source, flt: dict[str, Any]) -> list[sa.ColumnElement]:
        return [src.col(k) == sa.bindparam(None, v) for k, v in flt.items()]

    def _start_keyset(self, pstate: dict, ts_key: str, pk_key: str, *, use_start: bool = True,
                      lookback: bool = True) -> Keyset | None:
        """Where this run starts: the bookmark minus the look-back window (then every key at that instant)."""
        bm = self._bookmark(pstate, ts_key, pk_key)
        if bm is None:
            if use_start and self.settings.start is not None:
                return (self.settings.start, None)
            return None
        if self.settings.lookback and lookback:
            return (bm[0] - self.settings.lookback, None)
        return bm

    @staticmethod
    def _bookmark(pstate: dict, ts_key: str, pk_key: str) -> Keyset | None:
        if not pstate.get(ts_key):
            return None
        return (_dt.datetime.fromisoformat(pstate[ts_key]), pstate.get(pk_key))

    def _after(self, src: _Source, after: Keyset | None, naive: bool) -> list[sa.ColumnElement]:
        """Keyset predicate ``(ts, pk) > (t, p)`` written so an index on ts is used on every dialect:
        ``ts >= t AND (ts > t OR pk > p)``; with no ``p`` (look-back start) just ``ts >= t``."""
        if after is None:
            return [src.ts_expr().is_not(None)]
        t, p = after
        tb = self._bind_ts(t, naive)
        ts = src.ts_expr()
        if p is None:
            return [ts >= sa.bindparam(None, tb)]
        return [ts >= sa.bindparam(None, tb),
                sa.or_(ts > sa.bindparam(None, tb), src.col(src.pk) > sa.bindparam(None, p))]

    def _bind_ts(self, t: _dt.datetime, naive: bool) -> _dt.datetime:
        if t.tzinfo is None:
            t = t.replace(tzinfo=self.settings.timezone)
        if naive:
            return t.astimezone(self.settings.timezone).replace(tzinfo=None)
        return t

    def _ts_of(self, row: dict, src: _Source) -> _dt.datetime:
        assert src.ts
        for c in src.ts:
            v = row.get(c)
            if v is not None and type(v) is not InvalidValue:
                if isinstance(v, _dt.datetime):
                    return v if v.tzinfo else v.replace(tzinfo=self.settings.timezone)
                if isinstance(v, _dt.date):
                    return _dt.datetime(v.year, v.month, v.day, tzinfo=self.settings.timezone)
                if isinstance(v, str):  # SQLite (and some ODBC drivers) hand DATETIME back as ISO text
                    try:
                        t = _dt.datetime.fromisoformat(v.strip())
                    except ValueError:
                        continue
                    return t if t.tzinfo else t.replace(tzinfo=self.settings.timezone)
        raise RecordError("updated-at is empty or unreadable", code="invalid_value", field=src.ts[0])

    def _naive_of(self, part: _Partition, row: dict, src: _Source) -> bool:
        if part.db.driver == "mysqldb" or part.db.backend in ("mysql", "mariadb"):
            return True
        v = row.get(src.ts[0]) if src.ts else None
        return not isinstance(v, _dt.datetime) or v.tzinfo is part.db.tz

    def _high_water(self, part: _Partition, conn: Any, src: _Source) -> Keyset | None:
        ts = src.ts_expr()
        flt = part.spec.filter if src is part.header else part.spec.line_filter
        stmt = (sa.select(*[src.col(c) for c in src.ts or []], src.col(src.pk))
                .where(*self._filters(src, flt), ts.is_not(None))
                .order_by(ts.desc(), src.col(src.pk).desc()).limit(1))
        rows = part.db.fetch_all(conn, stmt)
        conn.rollback()
        part.db.take_bad_flag()
        return self._last_keyset(rows, src) if rows else None

    def _warn_null_timestamps(self, part: _Partition, conn: Any, h: _Source) -> None:
        if not h.ts or len(h.ts) > 1:  # a COALESCE would scan the table
            return
        stmt = (sa.select(sa.func.count()).select_from(h.from_)
                .where(*self._filters(h, part.spec.filter), h.ts_expr().is_(None)))
        n = part.db.scalar(conn, stmt)
        conn.rollback()
        if n:
            log.warning("partition %s: %d order(s) have no %s and are read only in full mode",
                        part.spec.name, n, "/".join(h.ts))

    def close(self) -> None:
        for part in self._parts.values():
            part.db.engine.dispose()


# --- module helpers ---------------------------------------------------------------------------------------------
def _newer(a: Keyset | None, b: Keyset | None) -> bool:
    if a is None:
        return False
    if b is None:
        return True
    if a[0] != b[0]:
        return a[0] > b[0]
    if b[1] is None:
        return a[1] is not None
    return a[1] is not None and a[1] > b[1]


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _columns(types: dict[str, Any], wanted: list[str] | None, key: str) -> list[str]:
    if not wanted:
        return list(types)
    for c in wanted:
        _require_col(types, c, key)
    return list(wanted)


def _require_col(types: dict[str, Any], col: str, key: str) -> None:
    if col not in types:
        near = difflib.get_close_matches(col, list(types), n=1)
        hint = f" — did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"column {col!r} not found (has: {', '.join(types)}){hint}", key=key)


def _type_from_description(d: Any) -> Any:
    """A SQLAlchemy type for a query column from the DB-API description (PEP 249 type objects)."""
    import decimal

    code, scale = d[1], (d[5] if len(d) > 5 else None)
    if isinstance(code, type):  # pyodbc gives Python types
        return {int: sa.Integer(), decimal.Decimal: sa.Numeric(), float: sa.Float(), bool: sa.Boolean(),
                _dt.datetime: sa.DateTime(), _dt.date: sa.Date()}.get(code, sa.String())
    for mod_name in ("MySQLdb", "pymysql", "oracledb"):
        mod = __import__("sys").modules.get(mod_name)
        if mod is None:
            continue
        try:
            if code == mod.DATETIME:
                return sa.DateTime()
            if code == getattr(mod, "DATE", None):
                return sa.Date()
            if code == mod.NUMBER:
                return sa.Integer() if scale == 0 else sa.Numeric()
        except Exception:  # noqa: BLE001
            continue
    return sa.String()


def _plain(record: dict) -> dict:
    """The record with :class:`InvalidValue` replaced by its raw text (for the quarantine)."""
    out = {}
    for k, v in record.items():
        if type(v) is InvalidValue:
            v = v.raw
        elif isinstance(v, list):
            v = [_plain(x) if isinstance(x, dict) else x for x in v]
        out[k] = v
    return out
