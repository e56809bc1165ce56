"""Write canonical orders into an ERP database: its own order tables, or the interface table (中间表).

``OrderWriter(config).write(orders)`` takes canonical order dicts and returns one result per order,
``{order_id, result, target_ref, message, payload_hash}`` with ``result`` ∈ created / updated / unchanged /
failed / held. Each batch is one transaction holding the header upserts, the replaced lines and the rows of the
write log (``orderhub_write_log``: idempotency key, payload hash, result), so a batch is written completely or
not at all and a re-sent batch finds its orders in the log: same hash → ``unchanged``, nothing written.

Two layouts (reference erp.md §4):

* ``mode: interface`` — the staging tables most Chinese ERPs import from: header rows keyed by
  ``(source_system, source_id)`` with ``payload_hash``, ``status`` (NEW → the ERP's importer sets SENT/OK/FAILED),
  ``attempts``, ``erp_bill_no``, ``last_error``, ``updated_at``; line rows keyed by the same pair and ``line_no``.
  A changed order goes back to ``NEW`` (``erp_bill_no`` is kept); created when missing (``create_tables``).
* ``mode: tables`` — the ERP's own header/line tables with a configurable column mapping, an upsert key
  (e.g. a unique ``ext_order_no``) and the line → header link (e.g. ``header_id`` → the header's auto id).

Upserts per dialect in :mod:`orderhub.connectors.erp_sql.sql`.
"""
from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import msgspec
import sqlalchemy as sa

from orderhub.connectors.common.config import sql_identifier
from orderhub.connectors.common.errors import (
    ConfigError,
    OrderhubError,
    PermanentError,
    RecordError,
    TransientError,
)
from orderhub.connectors.common.retry import call_with_retry, retry_policy
from orderhub.connectors.erp_sql.db import Database, load_timezone, normalize_url
from orderhub.connectors.erp_sql.reader import _chunks, _url, small_int, unknown_keys
from orderhub.connectors.erp_sql.sql import upsert
from orderhub.infra.faults.crash import crash_point
from orderhub.transforms.model import HEADER_FIELDS, LINE_FIELDS

log = logging.getLogger("orderhub.erp_sql.writer")

WRITER_KEYS = {
    "url": "SQLAlchemy URL of the ERP database",
    "url_env": "environment variable holding the URL",
    "mode": "interface (default) or tables",
    "target_name": "name of this target in the write log and the hub lineage (default erp_sql)",
    "schema": "schema of the tables",
    "header_table": "header table (interface default orderhub_so_interface)",
    "line_table": "line table (interface default orderhub_so_interface_line)",
    "header_columns": "{column: canonical field | {field, map, strict, default} | {const}}",
    "line_columns": "{column: canonical line field | {...}}",
    "header_key": "header columns of the unique key used for the upsert",
    "line_parent": "{line column: header column} linking a line to its header",
    "ref_column": "header column reported as target_ref (e.g. the ERP's auto id or bill number)",
    "idempotency_key": "canonical field that identifies an order across runs (default order_id)",
    "write_log_table": "default orderhub_write_log",
    "create_tables": "create missing interface/log tables (default true in interface mode)",
    "timezone": "time zone of naive DATETIME columns (default Asia/Shanghai)",
    "skip_held": "do not write orders held by the rules (default true)",
    "payload_column": "interface mode: column holding the whole order as JSON (default payload; null = none)",
    "batch_size": "orders per transaction (default 500)",
    "connect_timeout": "seconds (default 10)",
    "retry_attempts": "attempts per batch on transient errors (default 3)",
}

# Interface layout (中间表): the default mapping of canonical fields to columns.
INTERFACE_HEADER = {
    "order_no": "source_order_id", "shop_id": "shop_id", "channel": "channel", "order_status": "status",
    "source_status": "source_status", "order_type": "order_type", "order_time": "created_at", "paid_time": "paid_at",
    "customer_code": "customer_id", "customer_name": "customer_name", "receiver_name": "receiver_name",
    "receiver_mobile": "receiver_mobile", "receiver_phone": "receiver_phone",
    "receiver_province": "receiver_province", "receiver_city": "receiver_city",
    "receiver_district": "receiver_district", "receiver_address": "receiver_address", "currency": "currency",
    "total_amount": "total_amount", "goods_amount": "goods_amount", "shipping_fee": "shipping_fee",
    "discount_amount": "discount_amount", "paid_amount": "paid_amount", "remark": "special_requirements",
    "seller_memo": "seller_memo", "is_urgent": "is_urgent", "warehouse_code": "warehouse_code",
    "priority": "priority",
}
INTERFACE_LINES = {
    "line_no": "line_no", "sku": "canonical_sku", "source_sku": "source_sku", "sku_name": "sku_name", "qty": "qty",
    "unit_price": "unit_price", "amount": "amount", "is_gift": "is_gift", "line_status": "line_status",
}
INTERFACE_STATUSES = ("NEW", "SENT", "OK", "FAILED")
_MANAGED = ("source_system", "source_id", "payload_hash", "status", "attempts", "erp_bill_no", "last_error",
            "updated_at")
_WIDE = {"receiver_address": 500, "special_requirements": 1000, "seller_memo": 1000, "sku_name": 255}


def _field_type(field: str) -> sa.types.TypeEngine:
    """Column type for a canonical field when orderhub creates the table."""
    if field in ("qty", "unit_price"):
        return sa.Numeric(18, 4)
    if field.endswith("_amount") or field in ("shipping_fee", "amount"):
        return sa.Numeric(18, 2)
    if field.endswith("_at"):
        return sa.DateTime()
    if field.startswith(("is_", "has_", "needs_")):
        return sa.Boolean()
    if field == "line_no":
        return sa.Integer()
    return sa.String(_WIDE.get(field, 128))


@dataclass
class ColumnSpec:
    column: str
    field: str | None = None
    const: Any = None
    table: dict | None = None
    strict: bool = False
    default: Any = None

    def value(self, src: dict) -> Any:
        if self.field is None:
            return self.const
        v = src.get(self.field)
        if self.table is not None and v is not None:
            key = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
            if key in self.table:
                v = self.table[key]
            elif self.strict:
                raise RecordError(f"value {v!r} has no entry in the map of column {self.column}",
                                  code="unmapped_value", field=self.field)
        return self.default if v is None else v


def _column_specs(cfg: Any, allowed: dict, key: str) -> list[ColumnSpec]:
    if not isinstance(cfg, dict) or not cfg:
        raise ConfigError("must be a table {column: canonical field}", key=key)
    out = []
    for col, spec in cfg.items():
        k = f"{key}.{col}"
        sql_identifier(col, key=k, allow_schema=False)
        if isinstance(spec, str):
            spec = {"field": spec}
        if not isinstance(spec, dict):
            raise ConfigError("must be a canonical field name or {field: …, map: …} / {const: …}", key=k)
        unknown_keys(spec, {"field", "const", "map", "strict", "default"}, prefix=f"{k}.")
        if "const" in spec:
            out.append(ColumnSpec(col, const=spec["const"]))
            continue
        f = spec.get("field")
        if f not in allowed:
            import difflib

            near = difflib.get_close_matches(str(f), list(allowed), n=1)
            hint = f" — did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{f!r} is not a canonical field{hint}", key=k)
        table = spec.get("map")
        if table is not None and not isinstance(table, dict):
            raise ConfigError("map must be a table {canonical value: ERP value}", key=f"{k}.map")
        out.append(ColumnSpec(col, field=f, table={str(a).lower() if isinstance(a, bool) else str(a): b
                                                      for a, b in (table or {}).items()} if table else None,
                              strict=bool(spec.get("strict")), default=spec.get("default")))
    return out


@dataclass
class WriterSettings:
    url: str
    mode: str
    target_name: str
    schema: str | None
    header_table: str
    line_table: str
    header_columns: list[ColumnSpec]
    line_columns: list[ColumnSpec]
    header_key: list[str]
    line_parent: dict[str, str]
    ref_column: str | None
    idempotency_key: str
    write_log_table: str
    create_tables: bool
    timezone: _dt.tzinfo
    skip_held: bool
    payload_column: str | None
    batch_size: int
    connect_timeout: int
    retry_attempts: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "WriterSettings":
        if not isinstance(cfg, dict):
            raise ConfigError("writer configuration must be a mapping")
        unknown_keys(cfg, WRITER_KEYS)
        url = _url(cfg, "")
        if not url:
            raise ConfigError("is required (or url_env)", key="url")
        mode = cfg.get("mode", "interface")
        if mode not in ("interface", "tables"):
            raise ConfigError("must be 'interface' or 'tables'", key="mode")
        iface = mode == "interface"
        header_table = cfg.get("header_table") or ("orderhub_so_interface" if iface else None)
        line_table = cfg.get("line_table") or ("orderhub_so_interface_line" if iface else None)
        if not header_table:
            raise ConfigError("is required in tables mode", key="header_table")
        if not line_table:
            raise ConfigError("is required in tables mode", key="line_table")
        hcols = _column_specs(cfg.get("header_columns") or (INTERFACE_HEADER if iface else None),
                              HEADER_FIELDS, "header_columns")
        lcols = _column_specs(cfg.get("line_columns") or (INTERFACE_LINES if iface else None),
                              LINE_FIELDS, "line_columns")
        if iface:
            clash = [c.column for c in hcols if c.column in _MANAGED]
            if clash:
                raise ConfigError(f"column(s) {clash} are managed by the interface layout", key="header_columns")
            key = ["source_system", "source_id"]
            parent = {"source_system": "source_system", "source_id": "source_id"}
        else:
            key = cfg.get("header_key")
            if isinstance(key, str):
                key = [key]
            if not key:
                raise ConfigError("is required in tables mode: the unique column(s) of the header upsert",
                                  key="header_key")
            parent = cfg.get("line_parent")
            if not isinstance(parent, dict) or not parent:
                raise ConfigError("is required in tables mode, e.g. {header_id: id}", key="line_parent")
        key = [sql_identifier(k, key="header_key", allow_schema=False) for k in key]
        parent = {sql_identifier(a, key="line_parent", allow_schema=False):
                  sql_identifier(b, key="line_parent", allow_schema=False) for a, b in parent.items()}
        ref = cfg.get("ref_column", "id" if iface else key[0])
        batch = cfg.get("batch_size", 500)
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 50_000:
            raise ConfigError("must be an integer between 1 and 50000", key="batch_size")
        idem = cfg.get("idempotency_key", "order_id")
        if idem not in HEADER_FIELDS:
            raise ConfigError(f"{idem!r} is not a canonical field", key="idempotency_key")
        payload = cfg.get("payload_column", "payload" if iface else None)
        schema = cfg.get("schema")
        return cls(
            url=url, mode=mode,
            target_name=str(cfg.get("target_name") or "erp_sql"),
            schema=sql_identifier(schema, key="schema", allow_schema=False) if schema else None,
            header_table=sql_identifier(header_table, key="header_table", allow_schema=False),
            line_table=sql_identifier(line_table, key="line_table", allow_schema=False),
            header_columns=hcols, line_columns=lcols, header_key=key, line_parent=parent,
            ref_column=sql_identifier(ref, key="ref_column", allow_schema=False) if ref else None,
            idempotency_key=idem,
            write_log_table=sql_identifier(cfg.get("write_log_table", "orderhub_write_log"), key="write_log_table",
                                           allow_schema=False),
            create_tables=bool(cfg.get("create_tables", iface)),
            timezone=load_timezone(cfg.get("timezone") or "Asia/Shanghai"),
            skip_held=bool(cfg.get("skip_held", True)),
            payload_column=sql_identifier(payload, key="payload_column", allow_schema=False) if payload else None,
            batch_size=batch,
            connect_timeout=small_int(cfg, "connect_timeout", 10, 1, 600),
            retry_attempts=small_int(cfg, "retry_attempts", 3, 1, 20),
        )


_enc = msgspec.json.Encoder(decimal_format="string")


class _Prepared:
    __slots__ = ("order_id", "key", "header", "lines", "hash", "idem")

    def __init__(self, order_id: str, idem: str, header: dict, lines: list[dict], digest: str) -> None:
        self.order_id, self.idem, self.header, self.lines, self.hash = order_id, idem, header, lines, digest
        self.key: tuple = ()


class OrderWriter:
    """Upserts canonical orders into ERP tables in one transaction per batch (see module doc)."""

    def __init__(self, config: dict[str, Any] | WriterSettings, *, run_id: str | None = None) -> None:
        self.settings = config if isinstance(config, WriterSettings) else WriterSettings.from_config(config)
        s = self.settings
        self.run_id = run_id or uuid.uuid4().hex
        self.db = Database(normalize_url(s.url), s.timezone, connect_timeout=s.connect_timeout, pooled=True)
        self._ready = False
        self.counts = {"created": 0, "updated": 0, "unchanged": 0, "failed": 0, "held": 0}

    # --- setup ----------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        if self._ready:
            return
        s = self.settings
        md = sa.MetaData(schema=s.schema)
        try:
            insp = sa.inspect(self.db.engine)
            have = set(insp.get_table_names(schema=s.schema))
        except OrderhubError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self.db.classify(exc, connecting=True) from None
        self.log_table = self._log_table_def(md)
        wanted = [self.log_table]
        if s.mode == "interface":
            self._interface_defs(md)
            wanted += [md.tables[self._qual(s.header_table)], md.tables[self._qual(s.line_table)]]
        missing = [t for t in wanted if t.name not in have]
        if missing:
            if not (s.create_tables or missing == [self.log_table]):
                raise ConfigError(f"table(s) {[t.name for t in missing]} do not exist in {self.db.label} "
                                  f"(set create_tables: true to create them)", key="header_table")
            try:
                with self.db.engine.begin() as c:
                    for t in missing:
                        t.create(c, checkfirst=True)
            except Exception as exc:  # noqa: BLE001
                raise self.db.classify(exc) from None
            log.info("created %s in %s", ", ".join(t.name for t in missing), self.db.label)
        rmd = sa.MetaData(schema=s.schema)
        try:
            self.header = sa.Table(s.header_table, rmd, autoload_with=self.db.engine)
            self.lines = sa.Table(s.line_table, rmd, autoload_with=self.db.engine)
            self.log_table = sa.Table(s.write_log_table, rmd, autoload_with=self.db.engine)
        except sa.exc.NoSuchTableError as exc:
            raise ConfigError(f"table {exc.args[0]!r} does not exist in {self.db.label}", key="header_table") from None
        except Exception as exc:  # noqa: BLE001
            raise self.db.classify(exc) from None
        self._check_columns()
        self._check_unique(insp)
        self._h_coerce = {c.column: _coercer(self.header.c[c.column], s.timezone) for c in s.header_columns}
        self._l_coerce = {c.column: _coercer(self.lines.c[c.column], s.timezone) for c in s.line_columns}
        if s.payload_column:
            self._payload_coerce = _coercer(self.header.c[s.payload_column], s.timezone)
        mapped_h = {c.column for c in s.header_columns} | set(s.header_key)
        if s.mode == "interface":
            mapped_h |= set(_MANAGED)
        # Header columns we only learn after the upsert (an auto id the lines point to, the ERP's ref).
        self._fetch_back = [c for c in dict.fromkeys([*s.line_parent.values(), *([s.ref_column] if s.ref_column
                                                                                  else [])])
                            if c not in mapped_h]
        dialect = self.db.dialect.name
        hcols = self._header_columns()
        self._h_upsert = upsert(dialect, self.header, hcols, s.header_key,
                                [c for c in hcols if c not in ("erp_bill_no",)])
        self._log_upsert = upsert(dialect, self.log_table, _LOG_COLS, ["target", "idempotency_key"], _LOG_COLS)
        self._ready = True

    def _qual(self, name: str) -> str:
        return f"{self.settings.schema}.{name}" if self.settings.schema else name

    def _log_table_def(self, md: sa.MetaData) -> sa.Table:
        return sa.Table(
            self.settings.write_log_table, md,
            sa.Column("target", sa.String(64), primary_key=True),
            sa.Column("idempotency_key", sa.String(128), primary_key=True),
            sa.Column("order_id", sa.String(64)),
            sa.Column("payload_hash", sa.String(64)),
            sa.Column("result", sa.String(16)),
            sa.Column("target_ref", sa.String(128)),
            sa.Column("run_id", sa.String(64)),
            sa.Column("written_at", sa.DateTime()),
        )

    def _interface_defs(self, md: sa.MetaData) -> None:
        s = self.settings
        hcols = [sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True),
                 sa.Column("source_system", sa.String(32), nullable=False),
                 sa.Column("source_id", sa.String(128), nullable=False)]
        hcols += [sa.Column(c.column, _field_type(c.field) if c.field else sa.String(128)) for c in s.header_columns]
        hcols += [sa.Column("payload_hash", sa.String(64)),
                  sa.Column("status", sa.String(8), nullable=False, server_default="NEW"),
                  sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
                  sa.Column("erp_bill_no", sa.String(64)),
                  sa.Column("last_error", sa.String(1000)),
                  sa.Column("updated_at", sa.DateTime())]
        if s.payload_column:
            hcols.append(sa.Column(s.payload_column, sa.Text()))
        sa.Table(s.header_table, md, *hcols,
                 sa.UniqueConstraint("source_system", "source_id", name=f"uq_{s.header_table}_src"[:60]),
                 sa.Index(f"ix_{s.header_table}_status"[:60], "status"))
        lcols = [sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True),
                 sa.Column("source_system", sa.String(32), nullable=False),
                 sa.Column("source_id", sa.String(128), nullable=False)]
        lcols += [sa.Column(c.column, _field_type(c.field) if c.field else sa.String(128)) for c in s.line_columns
                  if c.column not in ("source_system", "source_id")]
        sa.Table(s.line_table, md, *lcols,
                 sa.Index(f"ix_{s.line_table}_src"[:60], "source_system", "source_id"))

    def _check_columns(self) -> None:
        s = self.settings
        for table, cols, key in ((self.header, [c.column for c in s.header_columns] + s.header_key, "header_columns"),
                                 (self.lines, [c.column for c in s.line_columns] + list(s.line_parent),
                                  "line_columns")):
            for c in cols:
                if c not in table.c:
                    raise ConfigError(f"column {c!r} not in table {table.name} (has: {', '.join(table.c.keys())})",
                                      key=key)
        for c in [*s.line_parent.values(), *([s.ref_column] if s.ref_column else []),
                  *([s.payload_column] if s.payload_column else [])]:
            if c not in self.header.c:
                raise ConfigError(f"column {c!r} not in table {self.header.name}", key="line_parent")

    def _check_unique(self, insp: Any) -> None:
        """An upsert key without a unique index would insert duplicates (MySQL) or fail (ON CONFLICT)."""
        s = self.settings
        want = set(s.header_key)
        try:
            insp = sa.inspect(self.db.engine)
            sets = [set(insp.get_pk_constraint(s.header_table, schema=s.schema).get("constrained_columns") or [])]
            sets += [set(u["column_names"]) for u in insp.get_unique_constraints(s.header_table, schema=s.schema)]
            sets += [set(i["column_names"]) for i in insp.get_indexes(s.header_table, schema=s.schema)
                     if i.get("unique")]
        except NotImplementedError:  # pragma: no cover - dialect without this reflection
            return
        if want not in sets:
            raise ConfigError(f"no unique index or primary key on {s.header_table}({', '.join(s.header_key)}); "
                              f"create one so a re-sent order updates instead of duplicating", key="header_key")

    def _header_columns(self) -> list[str]:
        s = self.settings
        cols = [c.column for c in s.header_columns]
        if s.mode == "interface":
            cols = ["source_system", "source_id", *cols, "payload_hash", "status", "attempts", "last_error",
                    "updated_at"]
            if s.payload_column:
                cols.append(s.payload_column)
        for k in s.header_key:
            if k not in cols:
                cols.append(k)
        return cols

    # --- writing --------------------------------------------------------------------------------------------
    def write(self, orders: Iterable[dict]) -> list[dict]:
        """Write canonical orders; one result dict per order, in input order."""
        self._setup()
        orders = list(orders)
        results: list[dict] = []
        n = self.settings.batch_size
        for i in range(0, len(orders), n):
            results.extend(self._write_batch(orders[i:i + n]))
        for r in results:
            self.counts[r["result"]] = self.counts.get(r["result"], 0) + 1
        return results

    def _write_batch(self, orders: list[dict]) -> list[dict]:
        s = self.settings
        out: dict[int, dict] = {}
        prepared: list[tuple[int, _Prepared]] = []
        seen: dict[str, int] = {}
        for i, o in enumerate(orders):
            oid = str(o.get("order_id") or "")
            try:
                if s.skip_held and o.get("held"):
                    codes = ", ".join(str(h.get("code")) for h in o.get("hold_reasons") or ()) or "held"
                    out[i] = _result(oid, "held", None, f"held by rules ({codes}); not written")
                    continue
                p = self._prepare(o)
            except RecordError as exc:
                out[i] = _result(oid, "failed", None, str(exc))
                continue
            if p.idem in seen:  # the same order twice in one batch: the later version wins
                out[seen[p.idem]] = _result(oid, "unchanged", None, "superseded by a later copy in the batch")
                prepared = [(j, q) for j, q in prepared if q.idem != p.idem]
            seen[p.idem] = i
            prepared.append((i, p))
        if prepared:
            policy = retry_policy(attempts=max(1, s.retry_attempts), base=0.5, cap=10.0, name="erp_sql write")
            try:
                res = call_with_retry(self._transaction, [p for _, p in prepared], policy=policy)
                for (i, _), r in zip(prepared, res):
                    out[i] = r
            except TransientError:
                raise
            except PermanentError as exc:
                if len(prepared) == 1:
                    i, p = prepared[0]
                    out[i] = _result(p.order_id, "failed", None, str(exc), p.hash)
                else:  # isolate the bad order(s): one transaction per order
                    log.warning("batch of %d failed (%s); writing orders one by one", len(prepared), exc)
                    for i, p in prepared:
                        try:
                            out[i] = call_with_retry(self._transaction, [p], policy=policy)[0]
                        except TransientError:
                            raise
                        except PermanentError as one:
                            out[i] = _result(p.order_id, "failed", None, str(one), p.hash)
        return [out[i] for i in range(len(orders))]

    def _prepare(self, o: dict) -> _Prepared:
        s = self.settings
        oid = o.get("order_id")
        idem = o.get(s.idempotency_key)
        if not idem:
            raise RecordError("is missing; cannot write without an idempotency key", code="missing_id",
                              field=s.idempotency_key, record_id=str(oid or ""))
        rid = str(oid or idem)
        header = {}
        for c in s.header_columns:
            header[c.column] = self._coerce(self._h_coerce[c.column], c, o, rid, "")
        lines = []
        for n, ln in enumerate(o.get("lines") or ()):
            row = {}
            for c in s.line_columns:
                row[c.column] = self._coerce(self._l_coerce[c.column], c, ln, rid, f"lines[{n}].")
            lines.append(row)
        digest = hashlib.sha256(_enc.encode([header, lines])).hexdigest()
        if s.mode == "interface":
            source_system = str(o.get("source_system") or "")
            header["source_system"], header["source_id"] = source_system, str(idem)
            header.update(payload_hash=digest, status="NEW", attempts=0, last_error=None,
                          updated_at=_dt.datetime.now(s.timezone).replace(tzinfo=None)
                          if not getattr(self.header.c["updated_at"].type, "timezone", False)
                          else _dt.datetime.now(s.timezone))
            if s.payload_column:
                header[s.payload_column] = self._payload_coerce(_payload(o))
            for row in lines:
                row["source_system"], row["source_id"] = source_system, str(idem)
        p = _Prepared(str(oid or idem), str(idem), header, lines, digest)
        p.key = tuple(header.get(k) for k in s.header_key)
        if any(v is None for v in p.key):
            raise RecordError(f"upsert key {s.header_key} has an empty value", code="missing_id",
                              field=",".join(s.header_key), record_id=rid)
        return p

    @staticmethod
    def _coerce(fn: Callable[[Any], Any], c: ColumnSpec, src: dict, rid: str, where: str) -> Any:
        try:
            return fn(c.value(src))
        except RecordError as exc:
            raise RecordError(exc.message.split(": ", 1)[-1], code=exc.code, field=f"{where}{c.field}",
                              record_id=rid) from None
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise RecordError(f"cannot be written to column {c.column}: {exc}", code="invalid_value",
                              field=f"{where}{c.field}", record_id=rid) from None

    def _transaction(self, batch: list[_Prepared]) -> list[dict]:
        """One transaction: read the write log, upsert changed headers, replace their lines, log the writes."""
        s = self.settings
        lt = self.log_table
        try:
            with self.db.engine.begin() as c:
                logged: dict[str, tuple[str, str]] = {}
                keys = [p.idem for p in batch]
                for chunk in _chunks(keys, self.db.in_list_limit):
                    rows = c.execute(sa.select(lt.c.idempotency_key, lt.c.payload_hash, lt.c.target_ref)
                                     .where(lt.c.target == s.target_name, lt.c.idempotency_key.in_(chunk)))
                    for k, h, ref in rows:
                        logged[k] = (h, ref)
                changed = [p for p in batch if logged.get(p.idem, (None,))[0] != p.hash]
                refs: dict[tuple, dict] = {}
                if changed:
                    c.execute(self._h_upsert, [p.header for p in changed])
                    if self._fetch_back:
                        refs = self._fetch_refs(c, changed)
                    self._replace_lines(c, changed, refs)
                now = _dt.datetime.now(s.timezone).replace(tzinfo=None)
                results, log_rows = [], []
                for p in batch:
                    old = logged.get(p.idem)
                    if old is not None and old[0] == p.hash:
                        results.append(_result(p.order_id, "unchanged", old[1], None, p.hash))
                        continue
                    got = refs.get(p.key, {})
                    ref = got.get(s.ref_column) if s.ref_column in got else p.header.get(s.ref_column or "")
                    ref = None if ref is None else str(ref)
                    result = "updated" if old is not None else "created"
                    results.append(_result(p.order_id, result, ref, None, p.hash))
                    log_rows.append({"target": s.target_name, "idempotency_key": p.idem, "order_id": p.order_id,
                                     "payload_hash": p.hash, "result": result, "target_ref": ref,
                                     "run_id": self.run_id, "written_at": now})
                if log_rows:
                    c.execute(self._log_upsert, log_rows)
                crash_point("erp_transaction")
            return results
        except sa.exc.SQLAlchemyError as exc:  # database errors only; a bug or a kill propagates as is
            raise self.db.classify(exc) from None

    def _fetch_refs(self, c: sa.Connection, changed: list[_Prepared]) -> dict[tuple, dict]:
        s = self.settings
        h = self.header
        cols = [h.c[k] for k in s.header_key] + [h.c[x] for x in self._fetch_back]
        out: dict[tuple, dict] = {}
        nk = len(s.header_key)
        step = max(1, self.db.in_list_limit // (nk * 2)) if nk > 1 else self.db.in_list_limit
        for chunk in _chunks(changed, step):
            if nk == 1:
                cond = h.c[s.header_key[0]].in_([p.key[0] for p in chunk])
            else:
                cond = sa.or_(*[sa.and_(*[h.c[k] == v for k, v in zip(s.header_key, p.key)]) for p in chunk])
            for row in c.execute(sa.select(*cols).where(cond)):
                vals = tuple(row)
                out[vals[:nk]] = dict(zip(self._fetch_back, vals[nk:]))
        return out

    def _replace_lines(self, c: sa.Connection, changed: list[_Prepared], refs: dict[tuple, dict]) -> None:
        """Lines of a changed order are replaced as a whole (a line dropped at the source disappears here)."""
        s = self.settings
        lt = self.lines
        parent_cols = list(s.line_parent)
        parents = []
        rows = []
        for p in changed:
            got = refs.get(p.key, {})
            pv = {lc: got[hc] if hc in got else p.header.get(hc) for lc, hc in s.line_parent.items()}
            if any(v is None for v in pv.values()):
                raise PermanentError(f"order {p.order_id}: header column(s) {list(s.line_parent.values())} "
                                     f"empty after upsert; cannot link its lines", code="db_error")
            parents.append(pv)
            for ln in p.lines:
                rows.append({**ln, **pv})
        if len(parent_cols) == 1:
            col = parent_cols[0]
            for chunk in _chunks([pv[col] for pv in parents], self.db.in_list_limit):
                c.execute(sa.delete(lt).where(lt.c[col].in_(chunk)))
        else:
            stmt = sa.delete(lt).where(*[lt.c[col] == sa.bindparam(f"p_{col}") for col in parent_cols])
            c.execute(stmt, [{f"p_{k}": v for k, v in pv.items()} for pv in parents])
        if rows:
            c.execute(sa.insert(lt), rows)

    # --- reading back (reconciliation, tests) -----------------------------------------------------------------
    def read_back(self, order_ids: list[str] | None = None) -> dict[str, dict]:
        """What the write log says for these orders (``{idempotency_key: row}``)."""
        self._setup()
        lt = self.log_table
        stmt = sa.select(lt).where(lt.c.target == self.settings.target_name)
        if order_ids:
            stmt = stmt.where(lt.c.idempotency_key.in_(order_ids))
        with self.db.engine.connect() as c:
            return {r.idempotency_key: dict(r._mapping) for r in c.execute(stmt)}

    def close(self) -> None:
        self.db.engine.dispose()


_LOG_COLS = ["target", "idempotency_key", "order_id", "payload_hash", "result", "target_ref", "run_id", "written_at"]


def _result(order_id: str, result: str, ref: str | None, message: str | None, digest: str | None = None) -> dict:
    return {"order_id": order_id, "result": result, "target_ref": ref, "message": message, "payload_hash": digest}


def _payload(o: dict) -> str:
    return _enc.encode({k: v for k, v in o.items() if not k.startswith("_")}).decode()


def _coercer(col: sa.Column, tz: _dt.tzinfo) -> Callable[[Any], Any]:
    """A converter from a canonical value to what the column takes, chosen once per column from its type."""
    t = col.type
    name = col.name
    if isinstance(t, sa.DateTime):
        aware = bool(getattr(t, "timezone", False))

        def to_dt(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, str):
                v = _dt.datetime.fromisoformat(v)
            if isinstance(v, _dt.datetime):
                if v.tzinfo is None:
                    v = v.replace(tzinfo=tz)
                return v if aware else v.astimezone(tz).replace(tzinfo=None)
            if isinstance(v, _dt.date):
                return _dt.datetime(v.year, v.month, v.day)
            raise ValueError(f"expected a time, got {type(v).__name__}")
        return to_dt
    if isinstance(t, sa.Date):
        def to_date(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, str):
                v = _dt.datetime.fromisoformat(v)
            if isinstance(v, _dt.datetime):
                return (v.astimezone(tz) if v.tzinfo else v).date()
            if isinstance(v, _dt.date):
                return v
            raise ValueError(f"expected a date, got {type(v).__name__}")
        return to_date
    if isinstance(t, sa.Boolean):
        return lambda v: None if v is None else bool(v)
    if isinstance(t, sa.Integer):
        def to_int(v: Any) -> Any:
            if v is None or isinstance(v, int):
                return None if v is None else int(v)
            d = decimal.Decimal(str(v))
            if d != d.to_integral_value():
                raise ValueError(f"{v} is not a whole number")
            return int(d)
        return to_int
    if isinstance(t, (sa.Numeric, sa.Float)):
        scale = getattr(t, "scale", None)

        def to_dec(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, bool):
                return int(v)
            d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
            if scale is not None and d.as_tuple().exponent < -scale and d != d.quantize(decimal.Decimal(1).scaleb(-scale)):
                raise ValueError(f"{d} has more than {scale} decimal places (column {name})")
            return d
        return to_dec
    if isinstance(t, (sa.String, sa.Text)):
        length = getattr(t, "length", None)

        def to_str(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, (dict, list)):
                v = json.dumps(v, ensure_ascii=False, default=str)
            elif isinstance(v, bool):
                v = "1" if v else "0"
            elif not isinstance(v, str):
                v = v.isoformat() if isinstance(v, (_dt.date, _dt.datetime)) else str(v)
            if length and len(v) > length:
                raise ValueError(f"is {len(v)} characters; column {name} takes {length}")
            return v
        return to_str
    return lambda v: v
