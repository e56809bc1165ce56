"""Database access for the SQL ERP connectors: engines, drivers, fast fetching and error classification.

SQLAlchemy builds and compiles every statement (so one statement works on MySQL/MariaDB, SQL Server, Oracle
and PostgreSQL); rows are fetched straight from the DB-API cursor, because SQLAlchemy's ``Row`` objects cost
more per row than the whole rest of the reader. Drivers (reference erp.md §4):

* MySQL/MariaDB: mysqlclient (C, fast) with PyMySQL as fallback when it is not installed;
* SQL Server: pyodbc (FreeTDS here; Microsoft ODBC Driver 18 in production);
* Oracle: python-oracledb in thin mode (no Instant Client);
* PostgreSQL: psycopg 3.

Driver errors become the shared error classes with one line that says what to fix.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import gc
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from orderhub.connectors.common.errors import (
    AuthError,
    ConfigError,
    OrderhubError,
    PermanentError,
    TransientError,
)
from orderhub.connectors.common.secrets import register_secret

log = logging.getLogger("orderhub.erp_sql")
SYSTEM = "erp_sql"

# Largest IN-list we send in one statement: SQL Server allows 2,100 parameters, Oracle 1,000 list items.
IN_LIST_LIMIT = {"mssql": 2000, "oracle": 1000}
DEFAULT_IN_LIST_LIMIT = 10000


class InvalidValue:
    """A column value the driver could not turn into a Python value (MySQL ``0000-00-00``, a bad date in a
    DATETIME column ...). The reader turns every record holding one into a quarantine entry."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"InvalidValue({self.raw!r})"


# --- time zones -----------------------------------------------------------------------------------------------
_combine = _dt.datetime.combine  # combine(naive, naive.time(), tz): the zone attached in C, one shared zone object


def load_timezone(name: str, *, key: str = "timezone") -> _dt.tzinfo:
    """The zone for naive DATETIME columns. A zone with one UTC offset since 1992 (Asia/Shanghai, UTC, ...)
    becomes a fixed-offset ``timezone`` (no per-value offset rules on the hot path)."""
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"unknown time zone {name!r} (use an IANA name such as Asia/Shanghai)", key=key) from None
    offsets = {zone.utcoffset(_dt.datetime(y, m, 15)) for y in range(1992, 2040) for m in (1, 7)}
    if len(offsets) == 1:
        return _dt.timezone(offsets.pop(), name)
    return zone


# --- URLs and engines -------------------------------------------------------------------------------------------
def normalize_url(url: str | URL, *, key: str = "url") -> URL:
    """Parse a SQLAlchemy URL and pick the driver: mysqlclient (else PyMySQL) for ``mysql://``/``mariadb://``,
    pyodbc for ``mssql://``, python-oracledb (thin) for ``oracle://``, psycopg 3 for ``postgresql://``."""
    try:
        u = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - any parse failure is a config problem
        raise ConfigError("is not a valid database URL (e.g. mysql://user:${env:ERP_DB_PASSWORD}@host:3306/erp)",
                          key=key) from None
    if u.password:
        register_secret(str(u.password))
    backend, name = u.get_backend_name(), u.drivername
    if backend in ("mysql", "mariadb") and "+" not in name or name in ("mysql+mysqldb", "mariadb+mysqldb"):
        try:
            import MySQLdb  # noqa: F401
            u = u.set(drivername=f"{backend}+mysqldb")
        except ImportError:  # pragma: no cover - mysqlclient is a dependency; PyMySQL is the fallback
            log.warning("mysqlclient is not installed; falling back to PyMySQL (slower)")
            u = u.set(drivername=f"{backend}+pymysql")
    elif "+" not in name:
        default = {"mssql": "mssql+pyodbc", "oracle": "oracle+oracledb", "postgresql": "postgresql+psycopg"}
        if backend in default:
            u = u.set(drivername=default[backend])
    return u


def safe_url(u: URL) -> str:
    return u.render_as_string(hide_password=True)


@dataclass
class Database:
    """One database: its engine, dialect and the driver-specific fast paths."""

    url: URL
    tz: _dt.tzinfo
    label: str = ""
    shop: str | None = None
    connect_timeout: int = 10
    pooled: bool = False  # the writer keeps one connection open across batches; the reader opens its own

    def __post_init__(self) -> None:
        self.backend = self.url.get_backend_name()
        self.driver = self.url.get_driver_name()
        self.label = self.label or safe_url(self.url)
        self._bad = [False]
        connect_args: dict[str, Any] = {}
        if self.driver == "mysqldb":
            connect_args["conv"] = _mysqldb_conversions(self.tz, self._bad)
            connect_args.setdefault("connect_timeout", self.connect_timeout)
            if "charset" not in self.url.query:
                connect_args["charset"] = "utf8mb4"
        elif self.driver == "pymysql":
            connect_args.setdefault("connect_timeout", self.connect_timeout)
            if "charset" not in self.url.query:
                connect_args["charset"] = "utf8mb4"
        elif self.driver == "psycopg":
            connect_args.setdefault("connect_timeout", self.connect_timeout)
        elif self.driver == "pyodbc":
            connect_args.setdefault("timeout", self.connect_timeout)
        engine_kw: dict[str, Any] = {}
        if self.driver == "pyodbc" and self.backend == "mssql":  # pragma: no cover - needs SQL Server
            engine_kw["fast_executemany"] = True
        try:
            if self.pooled:
                engine_kw.update(pool_size=1, max_overflow=2, pool_pre_ping=True)
            else:
                engine_kw["poolclass"] = NullPool
            self.engine = sa.create_engine(self.url, connect_args=connect_args, **engine_kw)
        except Exception as exc:  # noqa: BLE001 - a missing driver module or a bad URL option
            raise ConfigError(f"cannot use {self.label}: {exc}", key="url") from None
        self.dialect = self.engine.dialect
        self.in_list_limit = IN_LIST_LIMIT.get(self.backend, DEFAULT_IN_LIST_LIMIT)

    # --- connections --------------------------------------------------------------------------------------
    def connect(self) -> Any:
        """A raw DB-API connection (autocommit off). Errors are classified: unreachable → TransientError,
        bad login → AuthError, unknown database → ConfigError."""
        try:
            proxy = self.engine.raw_connection()
        except Exception as exc:  # noqa: BLE001
            raise self.classify(exc, connecting=True) from None
        if self.driver == "pyodbc" and self.backend == "mssql":  # pragma: no cover - needs SQL Server
            proxy.driver_connection.add_output_converter(-155, _mssql_datetimeoffset)
        if self.driver == "oracledb":  # pragma: no cover - needs Oracle
            proxy.driver_connection.outputtypehandler = _oracle_output_type_handler
        return proxy

    def compile(self, stmt: sa.sql.ClauseElement) -> tuple[str, Any]:
        """Compile for this dialect with bound parameters (never literals); IN lists expanded."""
        return compile_for(stmt, self.dialect)

    def cursor(self, conn: Any, *, stream: bool) -> Any:
        """A cursor yielding dicts where the driver can build them in C; ``stream`` asks for a server-side
        (unbuffered) cursor so a result set is never held in client memory at once."""
        raw = conn.driver_connection
        if self.driver == "mysqldb":
            import MySQLdb.cursors as c

            return raw.cursor(c.SSDictCursor if stream else c.DictCursor)
        if self.driver == "pymysql":
            import pymysql.cursors as c

            return raw.cursor(c.SSDictCursor if stream else c.DictCursor)
        if self.driver == "psycopg":
            from psycopg.rows import dict_row

            return raw.cursor(row_factory=dict_row)
        cur = raw.cursor()
        if self.driver == "oracledb":  # pragma: no cover - needs Oracle
            cur.arraysize = 5000
            cur.prefetchrows = 5001
        return cur

    def fetch(self, conn: Any, stmt: sa.sql.ClauseElement, *, chunk: int = 5000,
              stream: bool = True) -> Iterator[list[dict]]:
        """Run ``stmt`` and yield lists of row dicts, ``chunk`` rows at a time. Naive datetimes are made aware in
        the configured zone; values the driver cannot convert come back as :class:`InvalidValue`."""
        sql, params = self.compile(stmt)
        cur = self.cursor(conn, stream=stream)
        try:
            try:
                cur.execute(sql, params)
            except Exception as exc:  # noqa: BLE001
                raise self.classify(exc) from None
            dict_rows = self.driver in ("mysqldb", "pymysql", "psycopg")
            names = None if dict_rows else [d[0] for d in cur.description]
            dt_cols = self._datetime_columns(cur.description)
            while True:
                with gc_paused():
                    try:
                        rows = cur.fetchmany(chunk)
                    except Exception as exc:  # noqa: BLE001
                        raise self.classify(exc) from None
                    if not rows:
                        break
                    if not dict_rows:
                        rows = [dict(zip(names, r)) for r in rows]
                    elif not isinstance(rows, list):
                        rows = list(rows)
                    if self.driver != "mysqldb":
                        self._localize(rows, cur.description, dt_cols)
                yield rows
        finally:
            try:
                cur.close()
            except Exception:  # noqa: BLE001 - a broken connection; the caller sees the real error
                pass

    def fetch_all(self, conn: Any, stmt: sa.sql.ClauseElement) -> list[dict]:
        out: list[dict] = []
        for rows in self.fetch(conn, stmt, chunk=10000):
            out.extend(rows)
        return out

    def scalar(self, conn: Any, stmt: sa.sql.ClauseElement) -> Any:
        rows = self.fetch_all(conn, stmt)
        return next(iter(rows[0].values())) if rows else None

    def take_bad_flag(self) -> bool:
        """True when a value could not be converted since the last call (cheap check per batch)."""
        bad, self._bad[0] = self._bad[0], False
        return bad

    # --- generic-driver time zone fix-up --------------------------------------------------------------------
    def _datetime_columns(self, description: Sequence[Any] | None) -> set[str]:
        if self.driver == "mysqldb" or not description:
            return set()
        dbapi = self.dialect.dbapi
        want = getattr(dbapi, "DATETIME", None)
        out = set()
        for d in description:
            code = d[1]
            try:
                if code is _dt.datetime or (want is not None and code == want):
                    out.add(d[0])
            except Exception:  # noqa: BLE001 - exotic type codes
                pass
        return out

    def _localize(self, rows: list[dict], description: Any, dt_cols: set[str]) -> None:
        first = rows[0]
        cols = dt_cols | {k for k, v in first.items() if type(v) is _dt.datetime}
        if not cols:
            return
        tz = self.tz
        for r in rows:
            for c in cols:
                v = r[c]
                if v is None:
                    continue
                if type(v) is _dt.datetime:
                    if v.tzinfo is None:
                        r[c] = _combine(v, v.time(), tz)
                elif isinstance(v, _dt.date):
                    continue
                else:  # PyMySQL hands back '0000-00-00 00:00:00' as text
                    r[c] = InvalidValue(v)
                    self._bad[0] = True

    # --- errors ---------------------------------------------------------------------------------------------
    def classify(self, exc: BaseException, *, connecting: bool = False, key: str | None = None) -> OrderhubError:
        """Turn a driver/SQLAlchemy error into one of the shared errors with a message saying what to fix."""
        if isinstance(exc, OrderhubError):
            return exc
        orig = getattr(exc, "orig", None) or exc
        code, text = _error_code(orig)
        where = self.label
        kw: dict[str, Any] = {"system": SYSTEM, "shop": self.shop}
        text = " ".join(str(text).split())[:300]
        if self.backend in ("mysql", "mariadb"):
            if code in (2002, 2003, 2005, 2006, 2013, 2055):
                return TransientError(f"cannot reach database {where}: {text} — check host and port in `url` "
                                      f"and that the server is running", code="db_unreachable", **kw)
            if code in (1044, 1045, 1698):
                return AuthError(f"login refused by {where}: {text} — check user and password in `url`", **kw)
            if code == 1049:
                return ConfigError(f"database does not exist on {where}: {text}", key=key or "url")
            if code == 1146:
                return ConfigError(f"table not found: {text}", key=key or "header_table")
            if code == 1054:
                return ConfigError(f"column not found: {text}", key=key)
            if code in (1205, 1213):
                return TransientError(f"{where}: {text}", code="db_lock_timeout", **kw)
        if self.backend == "postgresql":
            state = getattr(orig, "sqlstate", None)
            if state in ("28P01", "28000"):
                return AuthError(f"login refused by {where}: {text} — check user and password in `url`", **kw)
            if state == "3D000":
                return ConfigError(f"database does not exist on {where}: {text}", key=key or "url")
            if state == "42P01":
                return ConfigError(f"table not found: {text}", key=key)
            if state == "42703":
                return ConfigError(f"column not found: {text}", key=key)
            if state in ("40001", "40P01", "55P03"):
                return TransientError(f"{where}: {text}", code="db_lock_timeout", **kw)
        if self.driver == "pyodbc":
            state = code if isinstance(code, str) else ""
            if state.startswith("08") or state == "HYT00":
                return TransientError(f"cannot reach database {where}: {text} — check host and port in `url` "
                                      f"and that the server is running", code="db_unreachable", **kw)
            if state == "28000":
                return AuthError(f"login refused by {where}: {text} — check user and password in `url`", **kw)
            if state == "IM002":
                return ConfigError(f"ODBC driver not found for {where}: {text} — check `driver=` in `url` "
                                   f"against /etc/odbcinst.ini", key=key or "url")
            if state == "42S02":
                return ConfigError(f"table not found: {text}", key=key)
            if state == "42S22":
                return ConfigError(f"column not found: {text}", key=key)
        if self.backend == "oracle":  # pragma: no cover - needs Oracle
            if code in (12541, 12514, 12170, 12543, 3113, 3114, 3135):
                return TransientError(f"cannot reach database {where}: {text}", code="db_unreachable", **kw)
            if code == 1017:
                return AuthError(f"login refused by {where}: {text}", **kw)
            if code == 942:
                return ConfigError(f"table not found: {text}", key=key)
            if code == 904:
                return ConfigError(f"column not found: {text}", key=key)
        if connecting:
            return TransientError(f"cannot connect to {where}: {text}", code="db_unreachable", **kw)
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            return TransientError(f"connection to {where} lost: {text}", code="db_unreachable", **kw)
        name = type(orig).__name__
        if name in ("OperationalError", "InterfaceError"):
            return TransientError(f"{where}: {text}", code="db_error", **kw)
        return PermanentError(f"{where}: {name}: {text}", code="db_error", **kw)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC while a chunk of rows is built: rows hold no cycles, and the collector's passes over
    hundreds of thousands of fresh dicts cost ~15% of the reader's CPU. Restores the previous setting."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _error_code(orig: BaseException) -> tuple[Any, str]:
    args = getattr(orig, "args", ())
    if args and hasattr(args[0], "code") and hasattr(args[0], "message"):  # oracledb _Error
        return args[0].code, args[0].message
    if len(args) >= 2 and isinstance(args[0], (int, str)):
        return args[0], str(args[1])
    return None, str(orig)


def compile_for(stmt: sa.sql.ClauseElement, dialect: sa.engine.Dialect) -> tuple[str, Any]:
    """SQL text and DB-API parameters for ``dialect`` (positional or named, as the driver wants)."""
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    if dialect.positional:
        return str(compiled), tuple(params[name] for name in compiled.positiontup)
    return str(compiled), params


# --- driver-specific converters -------------------------------------------------------------------------------
def _mysqldb_conversions(tz: _dt.tzinfo, bad: list[bool]) -> dict:
    """mysqlclient converters: DATETIME/TIMESTAMP parsed by ``datetime.fromisoformat`` (C) with the zone's
    offset appended; zero dates (``0000-00-00``) become :class:`InvalidValue` instead of ``None`` or a crash."""
    from MySQLdb.constants import FIELD_TYPE
    from MySQLdb.converters import conversions

    fromiso = _dt.datetime.fromisoformat
    date_fromiso = _dt.date.fromisoformat

    def to_datetime(s: str) -> Any:
        # combine() attaches the one zone object in C (replace(tzinfo=) costs 6× more here), and values that
        # share one zone object compare and subtract without offset look-ups downstream
        try:
            x = fromiso(s)
        except ValueError:
            bad[0] = True
            return InvalidValue(s)
        return _combine(x, x.time(), tz)

    def to_date(s: str) -> Any:
        try:
            return date_fromiso(s)
        except ValueError:
            bad[0] = True
            return InvalidValue(s)

    conv = dict(conversions)
    conv[FIELD_TYPE.DATETIME] = to_datetime
    conv[FIELD_TYPE.TIMESTAMP] = to_datetime
    conv[FIELD_TYPE.DATE] = to_date
    conv[FIELD_TYPE.DECIMAL] = decimal.Decimal
    conv[FIELD_TYPE.NEWDECIMAL] = decimal.Decimal
    return conv


def _mssql_datetimeoffset(value: bytes) -> _dt.datetime:  # pragma: no cover - needs SQL Server
    """pyodbc has no DATETIMEOFFSET (ODBC type -155) converter; layout per the SQL Server ODBC docs."""
    import struct

    y, mo, d, h, mi, s, ns, oh, om = struct.unpack("<6hI2h", value)
    return _dt.datetime(y, mo, d, h, mi, s, ns // 1000, _dt.timezone(_dt.timedelta(hours=oh, minutes=om)))


def _oracle_output_type_handler(cursor: Any, metadata: Any) -> Any:  # pragma: no cover - needs Oracle
    """Every NUMBER except NUMBER(p,0) comes back as Decimal, never float (exact money)."""
    import oracledb

    if metadata.type_code is oracledb.DB_TYPE_NUMBER and not (metadata.precision and metadata.scale == 0):
        return cursor.var(decimal.Decimal, arraysize=cursor.arraysize)
    return None


Row = dict[str, Any]
RowsCallback = Callable[[list[Row]], None]
