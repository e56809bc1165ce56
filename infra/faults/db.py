"""Database faults injected from a side connection while a sync runs (PostgreSQL and MariaDB).

* :class:`ConnectionKiller` — drops the sync's connections to one database mid-transaction
  (``pg_terminate_backend`` / ``KILL CONNECTION``), up to ``max_kills`` times.
* :class:`LockHolder` — a side transaction that takes a lock the writer needs and holds it for a while; with a
  short lock timeout on the writer's session (PostgreSQL ``lock_timeout``, InnoDB ``innodb_lock_wait_timeout``)
  the writer gets lock-timeout errors, otherwise it simply waits.
* :class:`Deadlocker` — a side transaction that locks a row the writer will write later in its batch, waits
  until the writer blocks on it, then asks for a row the writer already holds: a real deadlock, which the
  server breaks by aborting one of the two.

Each is a context manager running one thread; ``injected`` counts the faults that really happened (a kill of a
busy connection, a lock someone waited for, a deadlock the server reported).
"""
from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import unquote, urlsplit


def _parts(url: str) -> tuple[str, dict[str, Any]]:
    """(backend, connect kwargs) of a SQLAlchemy URL; the side connection ignores the URL's query options."""
    u = urlsplit(url)
    backend = "postgresql" if u.scheme.startswith("postgresql") else "mariadb"
    kw = {"host": u.hostname or "127.0.0.1", "port": u.port or (5432 if backend == "postgresql" else 3306),
          "user": unquote(u.username or ("postgres" if backend == "postgresql" else "root")),
          "dbname": u.path.lstrip("/")}
    if u.password:
        kw["password"] = unquote(u.password)
    return backend, kw


class _Side:
    """One autocommit side connection to the database of ``url``."""

    def __init__(self, url: str) -> None:
        self.backend, self.kw = _parts(url)
        self.db = self.kw["dbname"]
        if self.backend == "postgresql":
            import psycopg

            self.conn = psycopg.connect(**self.kw, autocommit=True)
        else:
            import MySQLdb

            kw = dict(self.kw)
            kw["db"] = kw.pop("dbname")
            self.conn = MySQLdb.connect(**kw, charset="utf8mb4", autocommit=True)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        rows = list(cur.fetchall()) if cur.description else []
        cur.close()
        return rows

    def execute(self, sql: str, params: tuple = ()) -> None:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        cur.close()

    def busy_sessions(self, *, idle: bool = False) -> list[int]:
        """Other sessions on this database that are running a statement or sit inside a transaction (with
        ``idle``: any other session, e.g. a reader's connection between two batches)."""
        if self.backend == "postgresql":
            states = "('active', 'idle in transaction', 'idle')" if idle else "('active', 'idle in transaction')"
            return [r[0] for r in self.rows(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                f"AND backend_type = 'client backend' AND state IN {states}", (self.db,))]
        return [r[0] for r in self.rows(
            "SELECT p.ID FROM information_schema.PROCESSLIST p LEFT JOIN information_schema.INNODB_TRX t "
            "ON t.trx_mysql_thread_id = p.ID WHERE p.DB = %s AND p.ID <> CONNECTION_ID() "
            "AND (p.COMMAND <> 'Sleep' OR t.trx_id IS NOT NULL OR %s)", (self.db, idle))]

    def kill(self, session: int) -> bool:
        try:
            if self.backend == "postgresql":
                return bool(self.rows("SELECT pg_terminate_backend(%s)", (session,))[0][0])
            self.execute(f"KILL CONNECTION {int(session)}")
            return True
        except Exception:  # noqa: BLE001 - the session ended by itself in between
            return False

    def waiters(self) -> int:
        """Sessions of this database waiting for a lock."""
        if self.backend == "postgresql":
            return self.rows("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                             (self.db,))[0][0]
        # INNODB_TRX shows a wait late (seconds); a write statement running for 0.2 s on these small tables is
        # one waiting for a lock, and PROCESSLIST shows it at once
        return self.rows("SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID() "
                         "AND COMMAND = 'Query' AND TIME_MS > 200 AND (INFO LIKE 'INSERT%%' OR INFO LIKE 'UPDATE%%' "
                         "OR INFO LIKE 'DELETE%%')", (self.db,))[0][0]

    def deadlocks(self) -> int:
        """The server's deadlock counter (per database on PostgreSQL, server-wide on MariaDB)."""
        if self.backend == "postgresql":
            return int(self.rows("SELECT deadlocks FROM pg_stat_database WHERE datname = %s", (self.db,))[0][0])
        return int(self.rows("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")[0][1])

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass


class _Injector:
    def __init__(self) -> None:
        self.injected = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, daemon=True, name=type(self).__name__)

    def _guarded(self) -> None:
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - reported, never raised into the suite's thread
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self) -> "_Injector":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class ConnectionKiller(_Injector):
    """Every ``interval`` seconds, with probability ``rate``, drop one busy session (``idle``: any session) of the
    database of ``url`` (at most ``max_kills``, at least ``gap`` seconds apart)."""

    def __init__(self, url: str, *, rate: float = 0.5, interval: float = 0.05, max_kills: int = 3,
                 gap: float = 0.5, seed: int = 1, idle: bool = False) -> None:
        super().__init__()
        import random

        self.url, self.rate, self.interval, self.max_kills, self.gap = url, rate, interval, max_kills, gap
        self.idle = idle
        self._rng = random.Random(seed)

    def run(self) -> None:
        side = _Side(self.url)
        try:
            last = 0.0
            while not self._stop.wait(self.interval) and self.injected < self.max_kills:
                if time.monotonic() - last < self.gap or self._rng.random() >= self.rate:
                    continue
                busy = side.busy_sessions(idle=self.idle)
                if busy and side.kill(self._rng.choice(busy)):
                    self.injected += 1
                    last = time.monotonic()
        finally:
            side.close()


class LockHolder(_Injector):
    """Once ``start_sql`` (a count) is above zero — e.g. the writer's first batch is in — ``times`` times: begin,
    take ``lock_sql`` (e.g. ``LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE`` or ``SELECT … FOR UPDATE``), hold it
    ``hold`` seconds, roll back, pause ``gap`` seconds. ``injected`` counts the holds another session was seen
    waiting for (MariaDB shows waits late: the caller may also count the writer's lock-timeout errors)."""

    def __init__(self, url: str, lock_sql: str, *, hold: float = 1.0, times: int = 2, gap: float = 0.3,
                 start_sql: str | None = None, max_wait: float = 30.0) -> None:
        super().__init__()
        self.url, self.lock_sql, self.hold, self.times, self.gap = url, lock_sql, hold, times, gap
        self.start_sql, self.max_wait = start_sql, max_wait
        self.held = 0

    def run(self) -> None:
        side, watch = _Side(self.url), _Side(self.url)
        try:
            end = time.monotonic() + self.max_wait
            while self.start_sql and not self._stop.is_set() and time.monotonic() < end:
                try:
                    if watch.rows(self.start_sql)[0][0]:
                        break
                except Exception:  # noqa: BLE001 - the table is not there yet
                    pass
                time.sleep(0.02)
            for _ in range(self.times):
                if self._stop.is_set():
                    return
                side.execute("BEGIN")
                try:
                    side.execute(self.lock_sql)
                except Exception as exc:  # noqa: BLE001 - the table does not exist yet: nothing to hold
                    side.execute("ROLLBACK")
                    self.errors.append(f"lock: {exc}")
                    return
                self.held += 1
                waited = False
                until = time.monotonic() + self.hold
                while time.monotonic() < until and not self._stop.is_set():
                    waited = waited or watch.waiters() > 0
                    time.sleep(0.05)
                side.execute("ROLLBACK")
                self.injected += int(waited)
                if self._stop.wait(self.gap):
                    return
        finally:
            side.close()
            watch.close()


class Deadlocker(_Injector):
    """Make a writer deadlock with a side transaction.

    ``later`` and ``first`` are statements (SQL, parameters) that lock rows the writer will lock in the order
    first, later within one transaction (e.g. ``UPDATE t SET x = x WHERE key = %s``). The side runs ``ballast``
    (statements that change other rows, so that InnoDB — which aborts the transaction that changed fewer rows —
    picks the writer), locks ``later``, waits until someone blocks on it, then asks for ``first``: each now
    waits for the other. ``injected`` is 1 when the server reported the deadlock (its counter moved)."""

    def __init__(self, url: str, first: tuple[str, tuple], later: tuple[str, tuple], *,
                 ballast: list[tuple[str, tuple]] | None = None, wait: float = 30.0, hold_after: float = 0.5) -> None:
        super().__init__()
        self.url, self.first, self.later = url, first, later
        self.ballast = ballast or []
        self.wait, self.hold_after = wait, hold_after
        self.victim: str | None = None

    def run(self) -> None:
        side, watch = _Side(self.url), _Side(self.url)
        try:
            before = watch.deadlocks()
            side.execute("BEGIN")
            for sql, params in self.ballast:
                side.execute(sql, params)
            side.execute(*self.later)
            end = time.monotonic() + self.wait
            while watch.waiters() == 0:
                if time.monotonic() > end or self._stop.wait(0.02):
                    side.execute("ROLLBACK")
                    return
            try:
                side.execute(*self.first)
                self.victim = "writer"
                self._stop.wait(self.hold_after)
            except Exception:  # noqa: BLE001 - the server chose this side as the victim
                self.victim = "side"
            try:
                side.execute("ROLLBACK")
            except Exception:  # noqa: BLE001
                pass
            deadline = time.monotonic() + 3
            while watch.deadlocks() == before and time.monotonic() < deadline:
                time.sleep(0.05)
            self.injected = int(watch.deadlocks() > before)
        finally:
            side.close()
            watch.close()
