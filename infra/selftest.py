"""``orderhub selftest [--full]``: nothing lost, nothing doubled — the reliability suites, with figures.

The driver behind ``tests/reliability`` and the report command. It builds real worlds — an ERP on MariaDB, the
Taobao sandbox read by ``tap-taobao``, a folder read by ``tap-orderfile``; the hub on SQLite or PostgreSQL, the
ERP interface table on PostgreSQL (or MariaDB), the QIMEN WMS sandbox — runs ``orderhub sync`` as a subprocess,
breaks it (SIGKILL at random moments and at the crash points of :mod:`orderhub.infra.faults.crash`, transient
HTTP and database faults, hostile input), lets it finish, and compares every target with the result computed
independently from the source data:

* **lost**: a source order missing from a target it belongs in;
* **doubled**: an order present twice in a target (two rows, two delivery orders, its lines twice, two
  ``created`` events in the lineage);
* **wrong**: present once but different (lines, status, an order that should not be there, a ledger that does
  not match the target).

The sandboxes run in this process, so they outlive every killed sync. Figures are collected in a
:class:`Figures` and printed as one table (:func:`print_figures`).
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import yaml

from orderhub.infra.erp_schema import create_erp_tables
from orderhub.infra.faults.crash import POINTS

BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("ORDERHUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MARIADB_HOST = os.environ.get("ORDERHUB_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("ORDERHUB_TEST_MARIADB_PORT", "3306"))
MARIADB_USER = os.environ.get("ORDERHUB_TEST_MARIADB_USER", "root")
SHANGHAI = timezone(timedelta(hours=8))
QIMEN_KEY, QIMEN_SECRET, QIMEN_CUSTOMER = "testerp_appkey", "qimen-secret-for-selftest", "stub-cust-code"
TAOBAO_KEY, TAOBAO_SECRET = "test-app", "taobao-secret-for-selftest"
#: Canonical statuses a WMS receives (QimenDeliveryWriter.SENDABLE_STATUSES), written out independently here.
SENDABLE = {"confirmed", "allocated"}


# ================================================================================================================
# databases
# ================================================================================================================
def _pg_url(name: str, password: str | None = None) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    if password:
        base = base.replace("@", f":{password}@", 1)
    return f"{base}/{name}"


def create_pg(prefix: str = "oh_rel") -> str:
    """A new empty PostgreSQL database; its SQLAlchemy URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return _pg_url(name)


def drop_pg(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mariadb_connect(db: str | None = None, **kw: Any):  # noqa: ANN201
    import MySQLdb

    args = {"host": MARIADB_HOST, "port": MARIADB_PORT, "user": MARIADB_USER, "charset": "utf8mb4",
            "autocommit": True, **kw}
    if db:
        args["db"] = db
    return MySQLdb.connect(**args)


def create_mariadb(prefix: str = "oh_rel") -> str:
    """A new empty MariaDB database; its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    c = mariadb_connect()
    c.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    c.close()
    return name


def drop_mariadb(name: str) -> None:
    c = mariadb_connect()
    c.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
    c.close()


def mariadb_url(name: str, *, user: str = MARIADB_USER, password: str | None = None, query: str = "") -> str:
    auth = f"{user}:{password}" if password else user
    return f"mysql+mysqldb://{auth}@{MARIADB_HOST}:{MARIADB_PORT}/{name}" + (f"?{query}" if query else "")


def sql_rows(url: str, sql: str, params: dict | None = None) -> list[tuple]:
    """Rows of one query, through a throw-away engine (the checks never share the sync's connections)."""
    import sqlalchemy as sa

    eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql), params or {})]
    finally:
        eng.dispose()


def _dec(v: Any, places: str = "0.01") -> str:
    """A number as comparable text (2 places for money, 4 for quantities), whatever the database returned."""
    if v is None:
        return "-"
    return str(Decimal(str(v)).quantize(Decimal(places)))


def _qty(v: Any) -> str:
    return _dec(v, "0.0001")


# ================================================================================================================
# the lab: sandboxes in this process (they outlive killed syncs), databases and files, all cleaned up
# ================================================================================================================
class Lab:
    """Owns everything a suite creates; :meth:`close` removes it (databases dropped, sandboxes stopped)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="orderhub-selftest-")
        self.root = Path(root or self._tmp.name)  # type: ignore[union-attr]
        self.root.mkdir(parents=True, exist_ok=True)
        self._stack = ExitStack()
        self._pg: list[str] = []
        self._maria: list[str] = []
        self._qimen = None

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def pg(self, prefix: str = "oh_rel") -> str:
        url = create_pg(prefix)
        self._pg.append(url)
        return url

    def mariadb(self, prefix: str = "oh_rel") -> str:
        name = create_mariadb(prefix)
        self._maria.append(name)
        return name

    def serve(self, app: Any) -> Any:
        from orderhub.infra.sandboxes.base import serve_in_thread

        server = serve_in_thread(app)
        self._stack.callback(server.stop)
        loud = server.httpd.handle_error

        def handle_error(request: Any, address: Any) -> None:  # a killed client hangs up mid-answer: expected here
            if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                loud(request, address)

        server.httpd.handle_error = handle_error
        return server

    @property
    def qimen(self) -> Any:
        """The WMS sandbox every scenario of this lab delivers to (reset per trial)."""
        if self._qimen is None:
            from orderhub.infra.sandboxes import qimen

            app = qimen.make_app(app_key=QIMEN_KEY, app_secret=QIMEN_SECRET, customer_id=QIMEN_CUSTOMER)
            self._qimen = self.serve(app)
        return self._qimen

    def close(self) -> None:
        self._stack.close()
        for url in self._pg:
            try:
                drop_pg(url)
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass
        for name in self._maria:
            try:
                drop_mariadb(name)
            except Exception:  # noqa: BLE001
                pass
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ================================================================================================================
# what a target should hold, computed from the source data
# ================================================================================================================
Key = tuple[str, str]  # (shop, source order id)


@dataclass(frozen=True)
class Facts:
    """What identifies an order's content in every target: status and its lines as (sku, qty, amount)."""

    status: str | None
    held: bool
    lines: tuple[tuple[str, str, str], ...]


@dataclass
class Expected:
    hub: dict[Key, Facts]
    quarantined: set[str] = field(default_factory=set)  # source order ids (or markers) that must be quarantined

    @property
    def erp(self) -> dict[Key, Facts]:
        return {k: f for k, f in self.hub.items() if not f.held}

    @property
    def wms(self) -> dict[Key, Facts]:
        return {k: f for k, f in self.hub.items() if not f.held and f.status in SENDABLE}


@dataclass
class Tally:
    """The outcome of comparing the targets with the expected result."""

    lost: int = 0
    doubled: int = 0
    wrong: int = 0
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.lost or self.doubled or self.wrong)

    def add(self, kind: str, text: str, *, first: bool = False) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if first:
            self.problems.insert(0, f"{kind}: {text}")
        elif len(self.problems) < 40:
            self.problems.append(f"{kind}: {text}")

    def __str__(self) -> str:
        return (f"checked {self.checked}: lost {self.lost}, doubled {self.doubled}, wrong {self.wrong}"
                + ("".join(f"\n  {p}" for p in self.problems)))


def compare(target: str, expected: dict[Key, Facts], got: dict[Key, list[Facts]], tally: Tally, *,
            check_status: bool = True) -> None:
    """Every expected order exactly once and equal; nothing else."""
    for key, want in expected.items():
        tally.checked += 1
        have = got.get(key, [])
        if not have:
            tally.add("lost", f"{target}: {key} missing")
            continue
        if len(have) > 1:
            tally.add("doubled", f"{target}: {key} present {len(have)} times")
            continue
        h = have[0]
        if h.lines != want.lines:
            doubled = Counter(h.lines) == Counter({ln: 2 * n for ln, n in Counter(want.lines).items()})
            tally.add("doubled" if doubled else "wrong", f"{target}: {key} lines {h.lines} ≠ {want.lines}")
        elif check_status and (h.status != want.status or h.held != want.held):
            tally.add("wrong", f"{target}: {key} status {h.status}/held={h.held}, expected {want.status}/"
                               f"held={want.held}")
    for key in got.keys() - expected.keys():
        tally.add("wrong", f"{target}: {key} should not be there")


# --- reading the targets back ------------------------------------------------------------------------------------
def read_hub(url: str) -> tuple[dict[Key, list[Facts]], dict[str, Key]]:
    """Hub orders by (shop, source id) with their lines; also order_id → key."""
    heads = sql_rows(url, "SELECT order_id, shop_id, source_order_id, status, held FROM hub_orders")
    lines: dict[str, list[tuple[str, str, str]]] = {}
    for oid, sku, qty, amount in sql_rows(url, "SELECT order_id, source_sku, qty, amount FROM hub_order_lines"):
        lines.setdefault(oid, []).append((str(sku), _qty(qty), _dec(amount)))
    out: dict[Key, list[Facts]] = {}
    ids: dict[str, Key] = {}
    for oid, shop, sid, status, held in heads:
        key = (str(shop), str(sid))
        ids[oid] = key
        out.setdefault(key, []).append(Facts(status, bool(held), tuple(sorted(lines.get(oid, [])))))
    return out, ids


def read_erp_interface(url: str) -> dict[Key, list[Facts]]:
    """The ERP interface table (中间表) by (shop, order no), lines joined by (source_system, source_id)."""
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    try:
        if not sa.inspect(eng).has_table("orderhub_so_interface"):
            return {}  # never written (every run failed before the first delivery)
    finally:
        eng.dispose()
    lines: dict[tuple, list[tuple[str, str, str]]] = {}
    for ss, sid, sku, qty, amount in sql_rows(url, "SELECT source_system, source_id, source_sku, qty, amount "
                                                   "FROM orderhub_so_interface_line"):
        lines.setdefault((ss, sid), []).append((str(sku), _qty(qty), _dec(amount)))
    out: dict[Key, list[Facts]] = {}
    for ss, sid, shop, no, status in sql_rows(url, "SELECT source_system, source_id, shop_id, order_no, "
                                                   "order_status FROM orderhub_so_interface"):
        out.setdefault((str(shop), str(no)), []).append(Facts(status, False, tuple(sorted(lines.get((ss, sid), [])))))
    return out


def read_wms(app: Any) -> dict[Key, list[Facts]]:
    """Delivery orders the WMS sandbox holds, by (shopNick, sourceOrderCode); lines as (itemCode, planQty)."""
    out: dict[Key, list[Facts]] = {}
    with app.lock:
        stored = list(app.delivery_orders.values())
    for d in stored:
        lines = d["orderLines"]
        sid = lines[0].get("sourceOrderCode") if lines else None
        key = (str(d["deliveryOrder"].get("shopNick")), str(sid))
        facts = tuple(sorted((str(x.get("itemCode")), _qty(x.get("planQty")), "-") for x in lines))
        out.setdefault(key, []).append(Facts("confirmed", False, facts))
    return out


def wms_view(expected: dict[Key, Facts]) -> dict[Key, Facts]:
    """What the WMS keeps of an order: SKU and quantity per line (no amounts)."""
    return {k: Facts("confirmed", False, tuple(sorted((s, q, "-") for s, q, _ in f.lines)))
            for k, f in expected.items()}


def check_world(expected: Expected, hub_url: str, erp_url: str | None, wms_app: Any | None,
                *, erp_target: str = "erp-interface", wms_target: str = "wms") -> Tally:
    """Compare hub, ERP interface table and WMS with ``expected``; also the lineage and the delivery ledger."""
    tally = Tally()
    try:
        hub, ids = read_hub(hub_url)
        lineage = sql_rows(hub_url, "SELECT order_id, count(*) FROM hub_lineage WHERE event = 'created' "
                                    "GROUP BY order_id HAVING count(*) > 1")
        quarantine = sql_rows(hub_url, "SELECT source_order_id, raw FROM hub_quarantine")
        ledger = {(t, ids.get(oid)): res for oid, t, res in
                  sql_rows(hub_url, "SELECT order_id, target, result FROM hub_target_writes")}
    except Exception as exc:  # noqa: BLE001 - no usable hub: every order is lost
        tally.add("wrong", f"hub unreadable: {type(exc).__name__}: {str(exc)[:120]}", first=True)
        compare("hub", expected.hub, {}, tally)
        return tally
    compare("hub", expected.hub, hub, tally)
    for oid, n in lineage:
        tally.add("doubled", f"hub lineage: {ids.get(oid, oid)} created {n} times")
    for marker in sorted(expected.quarantined):
        tally.checked += 1
        if not any(sid == marker or (raw and marker in raw) for sid, raw in quarantine):
            tally.add("lost", f"quarantine: {marker} not quarantined")
    if erp_url is not None:
        compare("erp", expected.erp, read_erp_interface(erp_url), tally, check_status=False)
        for key in expected.erp:
            if ledger.get((erp_target, key)) not in ("created", "updated", "unchanged"):
                tally.add("wrong", f"ledger: {erp_target} {key} is {ledger.get((erp_target, key))}")
    if wms_app is not None:
        compare("wms", wms_view(expected.wms), read_wms(wms_app), tally)
        for key in expected.wms:
            if ledger.get((wms_target, key)) not in ("created", "updated", "unchanged"):
                tally.add("wrong", f"ledger: {wms_target} {key} is {ledger.get((wms_target, key))}")
    return tally


# ================================================================================================================
# running orderhub sync
# ================================================================================================================
@dataclass
class Run:
    rc: int | None
    killed: bool
    seconds: float
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def summary(self) -> dict | None:
        for line in reversed(self.stdout.strip().splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
        return None

    @property
    def crashed(self) -> bool:
        """Ended by an unexpected exception (exit 1, a stack trace), not by a clear one-line error (exit 2) or a
        kill."""
        return not self.killed and self.rc not in (0, 2)


def run_sync(pipeline: Path, *, env: dict[str, str] | None = None, kill_after: float | None = None,
             crash_at: str | None = None, timeout: float = 180, log_dir: Path | None = None,
             extra: tuple[str, ...] = ()) -> Run:
    """``orderhub sync PIPELINE --json`` in its own process group; SIGKILL the group after ``kill_after``
    seconds, or let ``ORDERHUB_CRASH_AT=crash_at`` kill it at a crash point. Orphans (a tap) die with it."""
    e = {**os.environ, **(env or {})}
    e.pop("ORDERHUB_CRASH_AT", None)
    if crash_at:
        e["ORDERHUB_CRASH_AT"] = crash_at
    log_dir = log_dir or pipeline.parent
    tag = uuid.uuid4().hex[:8]
    out_p, err_p = log_dir / f"sync-{tag}.out", log_dir / f"sync-{tag}.err"
    t0 = time.perf_counter()
    with open(out_p, "wb") as out, open(err_p, "wb") as err:
        p = subprocess.Popen([str(BIN / "orderhub"), *extra, "sync", str(pipeline), "--json"], stdout=out,
                             stderr=err, env=e, start_new_session=True)
        killed = False
        try:
            p.wait(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            _killpg(p.pid)
            p.wait()
            killed = True
        _killpg(p.pid)  # whatever the run left behind (a tap whose parent was killed at a crash point)
    rc = p.returncode
    if rc == -signal.SIGKILL:
        killed = True
    return Run(rc, killed, time.perf_counter() - t0, out_p.read_text(errors="replace"),
               err_p.read_text(errors="replace"))


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def sync_until_done(pipeline: Path, *, env: dict[str, str] | None = None, max_runs: int = 4,
                    between: Callable[[int, Run], None] | None = None, log_dir: Path | None = None) -> list[Run]:
    """Run the sync until one run completes (a scheduler re-running a failed flow); the runs made."""
    runs: list[Run] = []
    for i in range(max_runs):
        r = run_sync(pipeline, env=env, log_dir=log_dir)
        runs.append(r)
        if r.ok:
            break
        if between is not None:
            between(i, r)
    return runs


# ================================================================================================================
# scenarios: one source, the three targets
# ================================================================================================================
class Scenario:
    """One source feeding hub + ERP interface + WMS. Subclasses build the source and say what it holds."""

    name = "scenario"
    source_system = ""

    def __init__(self, lab: Lab, *, hub: str = "sqlite", erp_target: str = "postgresql", batch_size: int = 25,
                 erp_url_query: str = "", qimen_settings: dict | None = None) -> None:
        self.lab = lab
        self.hub_kind = hub
        self.erp_kind = erp_target
        self.batch_size = batch_size
        self.erp_url_query = erp_url_query
        self.qimen_settings = {"retry_base_seconds": 0.05, "retry_cap_seconds": 0.2, "timeout_seconds": 3.0,
                               **(qimen_settings or {})}
        self.dir = lab.path(f"{self.name}-{uuid.uuid4().hex[:6]}", ".keep").parent
        self.hub_url = ""
        self.erp_url = lab.pg("oh_rel_erpif") if erp_target == "postgresql" else \
            mariadb_url(lab.mariadb("oh_rel_erpif"), query=erp_url_query)
        if erp_target == "postgresql" and erp_url_query:
            self.erp_url += "?" + erp_url_query
        self.env: dict[str, str] = {"ORDERHUB_SELFTEST_QIMEN_SECRET": QIMEN_SECRET}
        self._trial = 0
        self._expected: Expected | None = None

    # -- to implement --
    def source_spec(self) -> dict:
        raise NotImplementedError

    def compute_expected(self) -> Expected:
        raise NotImplementedError

    # -- common --
    @property
    def wms(self) -> Any:
        return self.lab.qimen.app

    @property
    def mapping(self) -> str:
        return self.source_system

    def expected(self) -> Expected:
        if self._expected is None:
            self._expected = self.compute_expected()
        return self._expected

    def spec(self) -> dict:
        return {
            "name": f"rel-{self.name}", "mapping": self.mapping, "rules": "default", "batch_size": self.batch_size,
            "source": self.source_spec(), "hub": {"url": self.hub_url},
            "targets": [
                {"name": "erp-interface", "connector": "erp_sql",
                 "config": {"url": self.erp_url, "mode": "interface", "create_tables": True}},
                {"name": "wms", "connector": "qimen", "config": {
                    "url": self.lab.qimen.url, "app_key": QIMEN_KEY, "customer_id": QIMEN_CUSTOMER,
                    "app_secret": "${env:ORDERHUB_SELFTEST_QIMEN_SECRET}", "owner_code": "SELFTEST",
                    **self.qimen_settings}},
            ],
        }

    def reset(self) -> Path:
        """Empty targets (a fresh hub, an empty interface table, a WMS without orders); the pipeline file."""
        self._trial += 1
        if self.hub_kind == "postgresql":
            if self.hub_url:
                drop_pg(self.hub_url)
                self.lab._pg.remove(self.hub_url)
            self.hub_url = self.lab.pg("oh_rel_hub")
        else:
            self.hub_url = f"sqlite:///{self.dir}/hub-{self._trial}.db"
        self._empty_erp_target()
        self.wms.reset()
        self.wms.faults.__init__()  # no faults unless the trial sets them
        path = self.dir / "pipeline.yaml"
        path.write_text(yaml.safe_dump(self.spec(), allow_unicode=True, sort_keys=False))
        return path

    def _empty_erp_target(self) -> None:
        import sqlalchemy as sa

        eng = sa.create_engine(self.erp_url)
        try:
            with eng.begin() as c:
                have = set(sa.inspect(c).get_table_names())
                for t in ("orderhub_so_interface_line", "orderhub_so_interface", "orderhub_write_log"):
                    if t in have:
                        c.execute(sa.text(f"DELETE FROM {t}"))
        finally:
            eng.dispose()

    def check(self) -> Tally:
        return check_world(self.expected(), self.hub_url, self.erp_url, self.wms)

    def sync(self, path: Path, **kw: Any) -> Run:
        return run_sync(path, env=self.env, log_dir=self.dir, **kw)

    def sync_until_done(self, path: Path, **kw: Any) -> list[Run]:
        return sync_until_done(path, env=self.env, log_dir=self.dir, **kw)


# --- the ERP on MariaDB ---------------------------------------------------------------------------------------------
ERP_STATUS = {"A": "awaiting_confirmation", "B": "confirmed", "C": "shipped", "D": "completed", "Z": "cancelled"}


def erp_order(i: int, t0: datetime) -> tuple[tuple, list[tuple]]:
    """Order ``i`` of the generated ERP: mostly 已审核 (B), some 新建 (A) and 已发货 (C); every 17th has no
    address (the default rules hold it unless it has shipped); unique customers, so no duplicate-submission holds."""
    status = "A" if i % 10 == 3 else "C" if i % 10 == 7 else "B"
    ts = t0 + timedelta(seconds=i)
    lines = []
    for k in range(1 + i % 3):
        qty = 1 + (i + k) % 9
        price = Decimal(f"{1 + (i * 13 + k) % 97}.{(i + k) % 100:02d}")
        lines.append((i * 10 + k, i, k + 1, f"SKU-{(i * 7 + k) % 40:03d}", f"零件 {k}", Decimal(qty), price,
                      (price * qty).quantize(Decimal("0.01")), ts))
    header = (i, f"SO{i:08d}", f"C{i:05d}", f"客户{i}", ts, status, sum(x[7] for x in lines), "CNY",
              "加急" if i % 11 == 0 else "", f"收货人{i}", f"139{i:08d}",
              "" if i % 17 == 0 else f"浙江省杭州市西湖区文三路{i}号", int(i % 13 == 0), ts)
    return header, lines


class ErpScenario(Scenario):
    """``erp_sql`` (the in-process reader) over a MariaDB ERP with ``orders`` generated orders."""

    name = "erp"
    source_system = "erp"

    def __init__(self, lab: Lab, *, orders: int = 300, source_url_query: str = "",
                 duplicates: tuple[tuple[int, int], ...] = (), **kw: Any) -> None:
        super().__init__(lab, **kw)
        self.orders = orders
        self.duplicates = duplicates  # (a, b): order b is a second submission of order a (held by the rules)
        self.db = lab.mariadb("oh_rel_erp")
        self.source_url = mariadb_url(self.db, query=source_url_query)
        self.t0 = datetime.now(SHANGHAI).replace(tzinfo=None, microsecond=0) - timedelta(days=1)
        c = mariadb_connect(self.db)
        cur = c.cursor()
        create_erp_tables(cur)
        self.add(range(1, orders + 1))
        for a, b in duplicates:  # same customer, lines and amount; b created (b - a) seconds later
            cur.execute("UPDATE so_header h JOIN so_header s ON s.id = %s SET h.customer_code = s.customer_code, "
                        "h.total_amount = s.total_amount, h.receiver_address = s.receiver_address, h.status = 'B' "
                        "WHERE h.id = %s", (a, b))
            cur.execute("DELETE FROM so_line WHERE header_id = %s", (b,))
            cur.execute("INSERT INTO so_line SELECT id - %s * 10 + %s * 10 + 5, %s, line_no, sku, sku_name, qty, "
                        "price, amount, updated_at FROM so_line WHERE header_id = %s", (a, b, b, a))
        c.close()

    def add(self, ids: Any) -> None:
        c = mariadb_connect(self.db)
        cur = c.cursor()
        heads, lines = [], []
        for i in ids:
            h, ls = erp_order(i, self.t0)
            heads.append(h)
            lines += ls
        cur.executemany("REPLACE INTO so_header VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", heads)
        cur.executemany("REPLACE INTO so_line VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)", lines)
        c.close()
        self._expected = None

    def touch(self, ids: Any, *, remark: str) -> None:
        """Change orders at the source (their remark), one second apart from now on, in id order."""
        c = mariadb_connect(self.db)
        cur = c.cursor()
        now = datetime.now(SHANGHAI).replace(tzinfo=None)
        for k, i in enumerate(ids):
            cur.execute("UPDATE so_header SET remark = %s, updated_at = %s WHERE id = %s",
                        (remark, now + timedelta(milliseconds=10 * k), i))
        c.close()
        self._expected = None

    def source_spec(self) -> dict:
        return {"connector": "erp_sql", "config": {
            "url": self.source_url, "header_table": "so_header", "line_table": "so_line", "join_key": "header_id",
            "updated_at": "updated_at", "lookback_seconds": 60, "shop": "main"}}

    @property
    def mapping(self) -> str:
        return "erp_sql"

    def compute_expected(self) -> Expected:
        c = mariadb_connect(self.db)
        cur = c.cursor()
        cur.execute("SELECT id, bill_no, status, receiver_address FROM so_header")
        heads = cur.fetchall()
        cur.execute("SELECT header_id, sku, qty, amount FROM so_line")
        lines: dict[int, list] = {}
        for hid, sku, qty, amount in cur.fetchall():
            lines.setdefault(hid, []).append((sku, _qty(qty), _dec(amount)))
        c.close()
        hub = {}
        for hid, bill, status, address in heads:
            st = ERP_STATUS[status]
            held = not address and st in ("awaiting_confirmation", "confirmed")  # shipped: nothing to hold
            held = held or any(hid == b for _, b in self.duplicates)
            if st == "awaiting_confirmation" and not held:
                st = "confirmed"  # auto_confirm of the default rules
            hub[("main", bill)] = Facts(st, held, tuple(sorted(lines.get(hid, []))))
        return Expected(hub)


# --- Taobao sandbox through tap-taobao ------------------------------------------------------------------------------
TAOBAO_STATUS = {"WAIT_BUYER_PAY": "pending_payment", "WAIT_SELLER_SEND_GOODS": "confirmed",
                 "SELLER_CONSIGNED_PART": "partially_shipped", "PAID_FORBID_CONSIGN": "on_hold",
                 "WAIT_BUYER_CONFIRM_GOODS": "shipped", "TRADE_FINISHED": "completed", "TRADE_CLOSED": "closed",
                 "TRADE_CLOSED_BY_TAOBAO": "cancelled"}


class TaobaoScenario(Scenario):
    """``tap-taobao`` (a Singer subprocess) over the TOP sandbox with ``shops`` × ``orders_per_shop`` trades."""

    name = "taobao"
    source_system = "taobao"

    def __init__(self, lab: Lab, *, shops: int = 2, orders_per_shop: int = 80, seed: int = 11,
                 tap_settings: dict | None = None, sandbox_settings: dict | None = None, **kw: Any) -> None:
        kw.setdefault("hub", "postgresql")
        super().__init__(lab, **kw)
        from orderhub.infra.sandboxes import taobao

        self.seed = seed
        self.app = taobao.make_app(app_key=TAOBAO_KEY, app_secret=TAOBAO_SECRET, shops=shops,
                                   orders_per_shop=orders_per_shop, history_hours=3, seed=seed,
                                   buyer_message_rate=0.1, **(sandbox_settings or {}))
        self.server = lab.serve(self.app)
        self.tap_settings = {"qps": 200, "attempts": 5, "timeout": 3, **(tap_settings or {})}
        self.start = datetime.fromtimestamp(self.app.started - 4 * 3600, SHANGHAI).isoformat()
        self.env.update({"ORDERHUB_SELFTEST_TAOBAO_SECRET": TAOBAO_SECRET})
        for s in self.app.shops:
            self.env[f"ORDERHUB_SELFTEST_SESSION_{s.upper()}"] = taobao.session_key(seed, s)

    def source_spec(self) -> dict:
        return {"connector": "singer", "executable": str(BIN / "tap-taobao"), "config": {
            "api_url": self.server.url + "/router/rest", "app_key": TAOBAO_KEY,
            "app_secret": "${env:ORDERHUB_SELFTEST_TAOBAO_SECRET}", "start_date": self.start,
            "shops": [{"shop_id": s, "session": f"${{env:ORDERHUB_SELFTEST_SESSION_{s.upper()}}}"}
                      for s in self.app.shops], **self.tap_settings}}

    def compute_expected(self) -> Expected:
        hub = {}
        with self.app.lock:
            trades = [(self.app.book.shop_of[tid], dict(t)) for tid, t in self.app.book.orders.items()]
        for shop, t in trades:
            lines = tuple(sorted((str(ln.get("outer_sku_id") or ln.get("outer_iid")), _qty(ln["num"]),
                                  _dec(ln.get("divide_order_fee") or ln.get("payment")))
                                 for ln in t["orders"]["order"]))
            hub[(shop, t["tid_str"])] = Facts(TAOBAO_STATUS[t["status"]], False, lines)
        return Expected(hub)


# --- the file channel through tap-orderfile -------------------------------------------------------------------------
FILE_HEADER = ["订单号", "下单日期", "客户名称", "收货人", "手机", "收货地址", "商品编码", "商品名称", "数量", "单价",
               "金额", "备注"]


def file_orders(n_files: int, per_file: int) -> list[tuple[str, list[list[str]], str]]:
    """(file name, rows, encoding): orders of 1-3 rows; each file has one row with a bad quantity (its order
    is quarantined) and the first file one order without an address (held by the rules)."""
    out = []
    for f in range(n_files):
        rows = [FILE_HEADER]
        for k in range(per_file):
            no = f"WX{f:02d}{k:04d}"
            for j in range(1 + (f + k) % 3):
                qty, price = 1 + (k + j) % 7, Decimal(f"{2 + (k * 3 + j) % 50}.50")
                addr = "" if (f, k) == (0, 5) else f"江苏省苏州市工业园区星湖街{k}号"
                rows.append([no, "2026-05-06", f"客户{f}-{k}", f"收货人{k}", f"138{f:02d}{k:06d}", addr,
                             f"JG-{(k + j) % 30:03d}", f"螺栓 {j}", str(qty), f"{price}", f"{price * qty:.2f}",
                             "加急" if k % 9 == 0 else ""])
        rows.append([f"WXBAD{f:02d}", "2026-05-06", "客户X", "收货人X", "13800000000", "江苏省苏州市某路1号",
                     "JG-001", "螺栓", "abc", "1.00", "1.00", ""])
        out.append((f"订单_{f:02d}.csv", rows, "gbk" if f % 2 else "utf-8-sig"))
    return out


class FileScenario(Scenario):
    """``tap-orderfile`` (a Singer subprocess) over a folder of generated CSV files (UTF-8-BOM and GBK)."""

    name = "file"
    source_system = "orderfile"

    def __init__(self, lab: Lab, *, files: int = 3, per_file: int = 40, **kw: Any) -> None:
        kw.setdefault("batch_size", 10)
        super().__init__(lab, **kw)
        import csv

        self.inbox = self.dir / "inbox"
        self.inbox.mkdir()
        self.files = file_orders(files, per_file)
        for name, rows, enc in self.files:
            with open(self.inbox / name, "w", encoding=enc, newline="") as fh:
                csv.writer(fh).writerows(rows)

    def source_spec(self) -> dict:
        return {"connector": "singer", "executable": str(BIN / "tap-orderfile"),
                "config": {"path": str(self.inbox), "shop": "wechat"}}

    def compute_expected(self) -> Expected:
        orders: dict[str, dict] = {}
        bad: set[str] = set()
        for _name, rows, _enc in self.files:
            for r in rows[1:]:
                no = r[0]
                if not r[8].isdigit():
                    bad.add(no)
                    continue
                o = orders.setdefault(no, {"addr": r[5], "lines": []})
                o["lines"].append((r[6], _qty(r[8]), _dec(r[10])))
        hub = {("wechat", no): Facts("awaiting_confirmation" if not o["addr"] else "confirmed", not o["addr"],
                                     tuple(sorted(o["lines"]))) for no, o in orders.items() if no not in bad}
        return Expected(hub, quarantined=bad)


SCENARIOS = {"erp": ErpScenario, "taobao": TaobaoScenario, "file": FileScenario}


# ================================================================================================================
# figures
# ================================================================================================================
@dataclass
class Figures:
    """What the suites measured; :func:`print_figures` shows them as one table."""

    kill_points_tried: int = 0
    kill_points_survived: int = 0
    faults_injected: int = 0
    faults_survived: int = 0
    hostile_tried: int = 0
    hostile_rejected: int = 0      # quarantined with a reason code, held with a reason code, or refused clearly
    hostile_intact: int = 0        # harmless but odd (emoji, injection text): arrived unchanged
    hostile_crashed: int = 0
    orders_checked: int = 0
    orders_lost: int = 0
    orders_doubled: int = 0
    orders_wrong: int = 0
    canaries_planted: int = 0
    canary_leaks: int = 0
    masking_leaks: int = 0
    security_failures: int = 0     # identifier settings accepted, services not on loopback, checks that proved little
    harness_errors: int = 0        # a suite that stopped on an unexpected error
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def count(self, tally: Tally) -> None:
        self.orders_checked += tally.checked
        self.orders_lost += tally.lost
        self.orders_doubled += tally.doubled
        self.orders_wrong += tally.wrong
        self.notes += tally.problems[:5]

    @property
    def ok(self) -> bool:
        return (self.kill_points_survived == self.kill_points_tried and self.faults_survived == self.faults_injected
                and not self.hostile_crashed and self.hostile_rejected + self.hostile_intact == self.hostile_tried
                and not (self.orders_lost or self.orders_doubled or self.orders_wrong)
                and not (self.canary_leaks or self.masking_leaks or self.security_failures or self.harness_errors))

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def figures_rows(f: Figures) -> list[tuple[str, str, str]]:
    """(suite, figure, value) rows of the table, in README order."""
    return [
        ("crash", "kill points tried / survived", f"{f.kill_points_tried} / {f.kill_points_survived}"),
        ("faults", "faults injected / survived", f"{f.faults_injected} / {f.faults_survived}"),
        ("hostile input", "cases tried / quarantined or rejected / accepted intact / crashed",
         f"{f.hostile_tried} / {f.hostile_rejected} / {f.hostile_intact} / {f.hostile_crashed}"),
        ("orders", "checked in targets / lost / doubled / wrong",
         f"{f.orders_checked} / {f.orders_lost} / {f.orders_doubled} / {f.orders_wrong}"),
        ("security", "canaries planted / leaks; unmasked phones or addresses in logs",
         f"{f.canaries_planted} / {f.canary_leaks}; {f.masking_leaks}"),
    ]


def print_figures(f: Figures, *, title: str = "orderhub selftest", file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{title} — {'PASS' if f.ok else 'FAIL'} in {f.seconds:.0f} s")
    t.add_column("suite")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for row in figures_rows(f):
        t.add_row(*row)
    console = Console(file=file or sys.stdout, width=110, highlight=False)
    console.print(t)
    for n in f.notes[:20]:
        console.print(f"  ! {n}")


# ================================================================================================================
# crash suite
# ================================================================================================================
@dataclass
class CrashTrial:
    scenario: str
    plan: list[str]
    landed: int
    runs_to_finish: int
    tally: Tally
    finished: bool

    @property
    def survived(self) -> bool:
        return self.finished and self.tally.exact


def reference(sc: Scenario) -> tuple[Run, Tally]:
    """A fault-free run from empty targets: how long a run takes, and proof that the expectation holds."""
    path = sc.reset()
    r = sc.sync(path)
    return r, sc.check()


def crash_trial(sc: Scenario, plan: list[float | str], *, then_rerun: bool = False) -> CrashTrial:
    """From empty targets: one run per plan entry, each SIGKILLed (a float: after that many seconds; a string:
    at that crash point, ``point:n``), then runs until one completes; compare every target. With ``then_rerun``
    one more run must change nothing (no WMS call, no new row)."""
    path = sc.reset()
    landed = 0
    for k in plan:
        r = sc.sync(path, kill_after=k) if isinstance(k, float) else sc.sync(path, crash_at=k)
        landed += int(r.killed)
    runs = sc.sync_until_done(path)
    tally = sc.check()
    last = runs[-1]
    if not last.ok:
        tally.add("wrong", f"{sc.name}: the sync did not complete after the kills: {last.stderr.strip()[-300:]}")
    if then_rerun and last.ok:
        calls = sc.wms.create_calls
        again = sc.sync(path)
        if sc.wms.create_calls != calls:
            tally.add("doubled", f"{sc.name}: a re-run sent {sc.wms.create_calls - calls} delivery orders again")
        if not again.ok:
            tally.add("wrong", f"{sc.name}: the re-run failed: {again.stderr.strip()[-300:]}")
    plan_text = [f"kill@{k:.2f}s" if isinstance(k, float) else f"crash@{k}" for k in plan]
    return CrashTrial(sc.name, plan_text, landed, len(runs), tally, last.ok)


def crash_plans(ref_seconds: float, batches: int, wms_orders: int, *, random_trials: int, seed: int,
                points: list[str] | None = None, per_point: int = 1) -> list[list[float | str]]:
    """Kill plans: every crash point at its first pass and ``per_point - 1`` later passes, then random
    moments (one to three kills per trial) between the start of the work and the reference run's end."""
    rng = random.Random(seed)
    plans: list[list[float | str]] = []
    passes = {"hub_migration": 1, "source_batch": batches, "hub_transaction": batches, "erp_transaction": batches,
              "wms_call": max(1, wms_orders), "bookmark": batches}
    for point in points or list(POINTS):
        ns = [1] + sorted(rng.sample(range(2, passes[point] + 1), min(per_point - 1, max(0, passes[point] - 1))))
        plans += [[f"{point}:{n}"] for n in ns]
    for _ in range(random_trials):
        kills = rng.choice([1, 1, 2, 3])
        plans.append([round(rng.uniform(0.1, 0.7) * ref_seconds, 2) for _ in range(kills)])  # later runs are faster
    return plans


def crash_suite(lab: Lab, figures: Figures, *, scenarios: tuple[str, ...] = ("erp", "taobao", "file"),
                random_trials: int = 2, per_point: int = 1, seed: int = 7, then_rerun: bool = False,
                log: Callable[[str], None] = lambda s: None, **scenario_kw: Any) -> list[CrashTrial]:
    trials = []
    for name in scenarios:
        sc = SCENARIOS[name](lab, **scenario_kw.get(name, {}))
        ref, tally = reference(sc)
        figures.count(tally)
        if not ref.ok or not tally.exact:
            figures.notes.append(f"crash/{name}: the reference run is not exact: {tally} {ref.stderr[-300:]}")
            continue
        s = ref.summary or {}
        wms_orders = (s.get("targets", {}).get("wms", {}) or {}).get("created", 0)
        for plan in crash_plans(ref.seconds, s.get("batches", 1), wms_orders, random_trials=random_trials,
                                seed=seed, per_point=per_point):
            t = crash_trial(sc, plan, then_rerun=then_rerun)
            trials.append(t)
            figures.kill_points_tried += t.landed
            figures.kill_points_survived += t.landed if t.survived else 0
            figures.count(t.tally)
            log(f"crash {name} {' '.join(t.plan)}: {t.landed} landed, {t.runs_to_finish} run(s) to finish, "
                f"{'exact' if t.survived else t.tally}")
    return trials


# ================================================================================================================
# fault suite
# ================================================================================================================
@dataclass
class FaultTrial:
    name: str
    injected: int
    runs: int
    tally: Tally
    calls: dict[str, Any] = field(default_factory=dict)
    bounds: list[str] = field(default_factory=list)   # retry bounds that were exceeded

    @property
    def survived(self) -> bool:
        return self.tally.exact and not self.bounds


def _finish(sc: Scenario, name: str, runs: list[Run], injected: int, **calls: Any) -> FaultTrial:
    tally = sc.check()
    if not runs[-1].ok:
        tally.add("wrong", f"{name}: no run completed ({len(runs)} runs): {runs[-1].stderr.strip()[-400:]}",
                  first=True)
    if any(r.crashed for r in runs):
        tally.add("wrong", f"{name}: a run crashed: {next(r for r in runs if r.crashed).stderr.strip()[-1500:]}",
                  first=True)
    return FaultTrial(name, injected, len(runs), tally, calls)


def _injected(faults: Any) -> int:
    return sum(faults.injected.values())



def http_fault_trial(sc: TaobaoScenario, *, rate: float, seed: int, baseline: dict[str, int],
                     bans: int = 1) -> FaultTrial:
    """5xx, timeouts, slow and truncated answers (and TOP ``isp.*`` errors and bans) from the TOP sandbox;
    5xx, timeouts, slow and truncated answers from the WMS; each at ``rate``. The runs must end exact and
    within the call budget: successful TOP calls ≤ the fault-free run's × runs + faults; calls during a ban
    ≤ the windows in flight when it started; creates per delivery order ≤ ``retry_attempts`` × runs."""
    from orderhub.infra.sandboxes.base import Faults

    path = sc.reset()
    tb, wms = sc.app, sc.wms
    ok0, isp0 = tb.log.count(code=0), tb.log.count(code=15)
    bans0, during0 = len(tb.limiter.bans), tb.limiter.calls_during_ban
    tap_timeout = float(sc.tap_settings.get("timeout", 3))
    wms_timeout = float(sc.qimen_settings.get("timeout_seconds", 3))
    tb_f = Faults(error_rate=rate, timeout_rate=rate / 3, timeout_seconds=tap_timeout + 0.5, slow_rate=rate,
                  slow_seconds=0.2, malformed_rate=rate, seed=seed)
    wms_f = Faults(error_rate=rate, timeout_rate=rate / 3, timeout_seconds=wms_timeout + 0.5, slow_rate=rate,
                   slow_seconds=0.1, malformed_rate=rate, seed=seed + 1)
    tb.faults, wms.faults, tb.isp_error_rate = tb_f, wms_f, rate / 2
    stop = threading.Event()

    def ban_spells() -> None:  # after 5, 15, … calls a strict limit until the next call starts a TOP ban (code 7)
        n0 = len(tb.log.entries)
        for k in range(bans):
            while len(tb.log.entries) - n0 < 5 + 10 * k:
                if stop.wait(0.02):
                    return
            had = len(tb.limiter.bans)
            tb.limiter.ban_seconds, tb.limiter.qps_limit = 1.0, 1
            end = time.monotonic() + 5
            while len(tb.limiter.bans) == had and time.monotonic() < end and not stop.wait(0.01):
                pass
            tb.limiter.qps_limit = 0

    th = threading.Thread(target=ban_spells, daemon=True)
    th.start()
    try:  # a delivery order that failed every retry fails the run (its bookmark stays): the next run resends it
        runs = sc.sync_until_done(path, max_runs=6)
    finally:
        stop.set()
        th.join()
        tb.faults, wms.faults, tb.isp_error_rate = Faults(), Faults(), 0.0
        tb.limiter.qps_limit = 0
    isp = tb.log.count(code=15) - isp0
    new_bans = len(tb.limiter.bans) - bans0
    during = tb.limiter.calls_during_ban - during0
    ok_calls = tb.log.count(code=0) - ok0
    injected = _injected(tb_f) + _injected(wms_f) + isp + new_bans
    t = _finish(sc, "http", runs, injected, top_ok=ok_calls, top_faults=_injected(tb_f), isp=isp, bans=new_bans,
                calls_during_ban=during, wms_creates=wms.create_calls, wms_faults=_injected(wms_f))
    n = len(runs)
    parallel = int(sc.tap_settings.get("parallel_windows", 4))
    if ok_calls > baseline["top_ok"] * n + _injected(tb_f):
        t.bounds.append(f"TOP calls {ok_calls} > {baseline['top_ok']} × {n} runs + {_injected(tb_f)} faults")
    if during > parallel * max(1, new_bans):
        t.bounds.append(f"{during} calls during {new_bans} bans (> {parallel} in flight per ban)")
    attempts = int(sc.qimen_settings.get("retry_attempts", 4))
    worst = max(wms.create_calls_by_code.values(), default=0)
    if worst > attempts * n:
        t.bounds.append(f"a delivery order was created {worst} times (> {attempts} attempts × {n} runs)")
    if wms.create_calls > baseline["wms_creates"] * n + _injected(wms_f):
        t.bounds.append(f"WMS creates {wms.create_calls} > {baseline['wms_creates']} × {n} + {_injected(wms_f)}")
    return t


def db_drop_trial(sc: ErpScenario, *, seed: int, kills: int = 2) -> FaultTrial:
    """Connections dropped mid-transaction by the server (``pg_terminate_backend`` on the hub and on the ERP
    interface database, ``KILL CONNECTION`` on the ERP source) while the sync runs; re-run until it completes."""
    from orderhub.infra.faults.db import ConnectionKiller

    path = sc.reset()
    killers = [ConnectionKiller(u, rate=0.3, max_kills=kills, seed=seed + i, idle=u == sc.source_url)
               for i, u in enumerate((sc.hub_url, sc.erp_url, sc.source_url)) if not u.startswith("sqlite")]
    with ExitStack() as st:
        for k in killers:
            st.enter_context(k)
        runs = sc.sync_until_done(path, max_runs=2 + kills * len(killers))
    injected = sum(k.injected for k in killers)
    return _finish(sc, "db-drop", runs, injected, kills=[k.injected for k in killers],
                   errors=[e for k in killers for e in k.errors])


def lock_trial(sc: ErpScenario, lock_sql: str, *, hold: float = 1.5, times: int = 2, name: str = "locks") -> FaultTrial:
    """Once the sync's first batch is in the ERP interface table, a side transaction holds ``lock_sql`` on it
    ``times`` times for ``hold`` seconds; the writer's session has a short lock timeout (``erp_url_query``), so it
    gets lock-timeout errors and must retry them. ``injected`` counts the holds that made the writer wait (seen
    waiting, or a lock-timeout error in its log)."""
    from orderhub.infra.faults.db import LockHolder

    path = sc.reset()
    with LockHolder(sc.erp_url, lock_sql, hold=hold, times=times, gap=0.3,
                    start_sql="SELECT count(*) FROM orderhub_write_log") as lk:
        runs = sc.sync_until_done(path, max_runs=4)
    timeouts = sum(len(re.findall(r"lock wait timeout|lock timeout|canceling statement due to lock", r.stderr, re.I))
                   for r in runs)
    return _finish(sc, name, runs, min(lk.held, max(lk.injected, timeouts)), held=lk.held, lock_timeouts=timeouts,
                   errors=lk.errors)


def deadlock_trial(sc: ErpScenario, *, name: str = "deadlock") -> FaultTrial:
    """A real deadlock between the ERP target's batch transaction and a side transaction (see
    :class:`~orderhub.infra.faults.db.Deadlocker`): after a first sync, orders 1-10 change at the source, so
    the next run updates their interface rows in one transaction, in order; the side locks order 4's row,
    waits for the writer to block on it, then asks for order 1's. The sync must end exact."""
    from orderhub.infra.faults.db import Deadlocker
    from orderhub.transforms.model import canonical_order_id

    path = sc.reset()
    spec = yaml.safe_load(path.read_text())  # no short lock timeout here: it would end the wait before the cycle
    url = spec["targets"][0]["config"]["url"] = sc.erp_url.split("?")[0]
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    first = sc.sync(path)
    sc.touch(range(1, 11), remark="改：周五前送到")

    def lock(i: int) -> tuple[str, tuple]:
        return ("UPDATE orderhub_so_interface SET attempts = attempts WHERE source_system = %s AND source_id = %s",
                ("erp", canonical_order_id("erp", "main", f"SO{i:08d}")))

    ballast = [("UPDATE orderhub_so_interface SET last_error = %s WHERE source_system = %s AND source_id = %s",
                ("side", "erp", canonical_order_id("erp", "main", f"SO{i:08d}"))) for i in range(31, 61)]
    with Deadlocker(url, lock(1), lock(4), ballast=ballast) as dl:
        runs = [first, *sc.sync_until_done(path, max_runs=3)]
    seen = dl.injected or any("deadlock" in r.stderr.lower() for r in runs)  # stats may lag on PostgreSQL
    return _finish(sc, name, runs, int(seen), victim=dl.victim, errors=dl.errors)


def outage_trial(sc: Scenario, *, target: str, down_runs: int = 3) -> FaultTrial:
    """A target down for ``down_runs`` scheduled runs ("minutes"; the clock between runs is skipped): the WMS
    answers 503 (outage switch), or the ERP database is unreachable. No order may be lost once it is back, and
    a run against a dead WMS may make at most ``breaker_failure_threshold × retry_attempts`` calls."""
    path = sc.reset()
    wms = sc.wms
    spec = yaml.safe_load(path.read_text())
    good_erp = spec["targets"][0]["config"]["url"]
    calls_per_run: list[int] = []
    if target == "wms":
        wms.outage = True
    else:
        spec["targets"][0]["config"]["url"] = "postgresql+psycopg://postgres@127.0.0.1:1/down"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    state = {"n0": wms.request_count}

    def between(i: int, r: Run) -> None:
        calls_per_run.append(wms.request_count - state["n0"])
        state["n0"] = wms.request_count
        if i + 1 >= down_runs:  # the target is back
            wms.outage = False
            spec["targets"][0]["config"]["url"] = good_erp
            path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))

    try:
        runs = sc.sync_until_done(path, max_runs=down_runs + 2, between=between)
    finally:
        wms.outage = False
    down = min(down_runs, len(runs))
    t = _finish(sc, f"outage-{target}", runs, down, calls_per_run=calls_per_run)
    if runs[0].ok:
        t.bounds.append(f"the first run completed (rc 0) while {target} was down: its bookmark moved on")
    threshold = int(sc.qimen_settings.get("breaker_failure_threshold", 5))
    attempts = int(sc.qimen_settings.get("retry_attempts", 4))
    if target == "wms" and any(c > threshold * attempts for c in calls_per_run):
        t.bounds.append(f"calls to the dead WMS per run {calls_per_run} > {threshold} × {attempts}")
    return t


def fault_suite(lab: Lab, figures: Figures, *, rate: float = 0.08, seed: int = 3, rounds: int = 1,
                which: tuple[str, ...] = ("http", "db-drop", "locks", "deadlock", "outage"),
                log: Callable[[str], None] = lambda s: None) -> list[FaultTrial]:
    trials: list[FaultTrial] = []

    def done(t: FaultTrial) -> None:
        trials.append(t)
        figures.faults_injected += t.injected
        figures.faults_survived += t.injected if t.survived else 0
        figures.count(t.tally)
        figures.notes += [f"{t.name}: {b}" for b in t.bounds]
        log(f"fault {t.name}: {t.injected} injected, {t.runs} run(s), {'exact' if t.tally.exact else t.tally}"
            f"{'; ' + '; '.join(t.bounds) if t.bounds else ''} {t.calls}")

    if "http" in which:
        sc = TaobaoScenario(lab, tap_settings={"timeout": 1.0}, qimen_settings={"timeout_seconds": 1.0})
        ref, tally = reference(sc)
        figures.count(tally)
        base = {"top_ok": sc.app.log.count(code=0), "wms_creates": sc.wms.create_calls}
        for r in range(rounds):
            done(http_fault_trial(sc, rate=rate, seed=seed + r, baseline=base))
    erp = None
    if {"db-drop", "outage"} & set(which):
        erp = ErpScenario(lab, orders=150, hub="postgresql")
        for r in range(rounds if "db-drop" in which else 0):
            done(db_drop_trial(erp, seed=seed + r))
        if "outage" in which:
            done(outage_trial(erp, target="wms"))
            done(outage_trial(erp, target="erp"))
    if "locks" in which:
        pg = ErpScenario(lab, orders=150, erp_url_query="options=-c%20lock_timeout%3D400")
        reference(pg)
        done(lock_trial(pg, "LOCK TABLE orderhub_so_interface IN SHARE ROW EXCLUSIVE MODE", name="locks-pg"))
        my = ErpScenario(lab, orders=150, erp_target="mariadb",
                         erp_url_query="init_command=SET%20innodb_lock_wait_timeout%3D1")
        reference(my)
        done(lock_trial(my, "SELECT id FROM orderhub_so_interface FOR UPDATE", name="locks-mariadb"))
        if "deadlock" in which:
            done(deadlock_trial(pg, name="deadlock-pg"))
            done(deadlock_trial(my, name="deadlock-mariadb"))
    elif "deadlock" in which:
        pg = ErpScenario(lab, orders=150)
        reference(pg)
        done(deadlock_trial(pg, name="deadlock-pg"))
    return trials


# ================================================================================================================
# hostile-input suite
# ================================================================================================================
REPLAY_TAP = '''#!{python}
"""A Singer tap that replays a file of RECORD lines byte for byte (the hostile corpus): one STATE per batch."""
import json, sys
args = sys.argv[1:]
cfg = json.load(open(args[args.index("--config") + 1]))
start = json.load(open(args[args.index("--state") + 1])).get("batch", 0) if "--state" in args else 0
out = sys.stdout.buffer
out.write(b'{{"type":"SCHEMA","stream":"trades","schema":{{"type":"object"}},"key_properties":[]}}\\n')
for i, batch in enumerate(open(cfg["path"], "rb").read().split(b"\\n\\x1e\\n")):
    if i < start:
        continue
    out.write(batch.rstrip(b"\\n") + b"\\n" if batch.strip() else b"")
    out.write(json.dumps({{"type": "STATE", "value": {{"batch": i + 1}}}}).encode() + b"\\n")
    out.flush()
'''
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
ERP_COLUMNS = {"source_order_id": "order_no", "customer_name": "customer_name", "customer_id": "customer_code",
               "receiver_name": "receiver_name", "receiver_phone": "receiver_phone",
               "receiver_province": "receiver_province", "receiver_city": "receiver_city",
               "receiver_district": "receiver_district", "receiver_address": "receiver_address",
               "special_requirements": "remark", "seller_memo": "seller_memo", "order_type": "order_type",
               "total_amount": "total_amount", "lines.source_sku": "source_sku", "lines.sku_name": "sku_name"}
WMS_PATHS = {"customer_name": "buyerNick", "special_requirements": "buyerMessage", "seller_memo": "sellerMessage",
             "receiver_name": "receiverInfo.name", "receiver_province": "receiverInfo.province",
             "receiver_city": "receiverInfo.city", "receiver_district": "receiverInfo.area",
             "receiver_town": "receiverInfo.town", "receiver_address": "receiverInfo.detailAddress",
             "receiver_zip": "receiverInfo.zipCode", "receiver_phone": "receiverInfo.tel",
             "privacy_id": "receiverInfo.oaid", "total_amount": "totalAmount",
             "lines.source_sku": "itemCode", "lines.sku_name": "itemName", "lines.source_line_id": "subSourceOrderCode"}


@dataclass
class Outcome:
    case: Any
    got: str                 # quarantine | hold | refused | intact | dedupe | crashed | lost | wrong
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.got == self.case.expect


class HostileWorld:
    """Hub (PostgreSQL: its column widths are enforced), ERP interface table and WMS for one channel's run."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.lab, self.name = lab, name
        self.dir = lab.path(f"hostile-{name}-{uuid.uuid4().hex[:6]}", ".keep").parent
        self.hub_url = lab.pg("oh_rel_hhub")
        self.erp_url = lab.pg("oh_rel_herp")
        self.env = {"ORDERHUB_SELFTEST_QIMEN_SECRET": QIMEN_SECRET}
        lab.qimen.app.reset()

    def pipeline(self, source: dict, mapping: str, *, batch_size: int = 500, name: str | None = None) -> Path:
        spec = {"name": name or f"hostile-{self.name}", "mapping": mapping, "rules": "default",
                "batch_size": batch_size, "source": source, "hub": {"url": self.hub_url},
                "targets": [{"name": "erp-interface", "connector": "erp_sql",
                             "config": {"url": self.erp_url, "mode": "interface", "create_tables": True}},
                            {"name": "wms", "connector": "qimen", "config": {
                                "url": self.lab.qimen.url, "app_key": QIMEN_KEY, "customer_id": QIMEN_CUSTOMER,
                                "app_secret": "${env:ORDERHUB_SELFTEST_QIMEN_SECRET}", "owner_code": "SELFTEST",
                                "retry_base_seconds": 0.05, "retry_cap_seconds": 0.2}}]}
        path = self.dir / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
        return path

    def sync(self, path: Path, **kw: Any) -> Run:
        return run_sync(path, env=self.env, log_dir=self.dir, **kw)

    # -- reading back --
    def snapshot(self) -> "Snapshot":
        return Snapshot(self)


class Snapshot:
    """Everything the targets hold after a hostile run, indexed for the per-case verdicts."""

    def __init__(self, w: HostileWorld) -> None:
        import sqlalchemy as sa

        self.quarantine = sql_rows(w.hub_url, "SELECT source_order_id, reason_code, raw, message FROM hub_quarantine")
        eng = sa.create_engine(w.hub_url)
        with eng.connect() as c:
            self.orders: dict[str, list[dict]] = {}
            for r in c.execute(sa.text("SELECT * FROM hub_orders")).mappings():
                self.orders.setdefault(str(r["source_order_id"]), []).append(dict(r))
            self.lines: dict[str, list[dict]] = {}
            for r in c.execute(sa.text("SELECT * FROM hub_order_lines ORDER BY order_id, line_no")).mappings():
                self.lines.setdefault(r["order_id"], []).append(dict(r))
            self.ledger = {(r[0], r[1]): (r[2], r[3]) for r in c.execute(sa.text(
                "SELECT order_id, target, result, message FROM hub_target_writes"))}
        eng.dispose()
        self.erp: dict[str, list[dict]] = {}
        self.erp_lines: dict[str, list[dict]] = {}
        eng = sa.create_engine(w.erp_url)
        if sa.inspect(eng).has_table("orderhub_so_interface"):
            with eng.connect() as c:
                for r in c.execute(sa.text("SELECT * FROM orderhub_so_interface")).mappings():
                    self.erp.setdefault(str(r["order_no"]), []).append(dict(r))
                for r in c.execute(sa.text("SELECT * FROM orderhub_so_interface_line ORDER BY line_no")).mappings():
                    self.erp_lines.setdefault(r["source_id"], []).append(dict(r))
        eng.dispose()
        app = w.lab.qimen.app
        with app.lock:
            stored = list(app.delivery_orders.items())
        self.wms: dict[str, list[dict]] = {}
        for code, d in stored:
            sid = d["orderLines"][0].get("sourceOrderCode") if d["orderLines"] else None
            self.wms.setdefault(str(sid), []).append({"code": code, **d})

    def quarantined(self, marker: str) -> list[tuple]:
        """Quarantine entries whose raw record or message carries ``marker`` (a case id, a file name)."""
        return [q for q in self.quarantine if marker in (q[2] or "") or marker in (q[3] or "") or q[0] == marker]


def _hub_value(order: dict, lines: list[dict], f: str) -> Any:
    if f == "lines.count":
        return len(lines)
    if f.startswith("lines."):
        return lines[0].get(f[6:]) if lines else None
    return order.get(f)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, datetime) or isinstance(b, datetime):
        def t(x: Any) -> Any:
            x = datetime.fromisoformat(x) if isinstance(x, str) else x
            return x.replace(tzinfo=timezone.utc) if x is not None and x.tzinfo is None else x
        return t(a) == t(b)
    if isinstance(a, (Decimal, float)) or isinstance(b, (Decimal, float)):
        try:
            return Decimal(str(a)) == Decimal(str(b))
        except Exception:  # noqa: BLE001
            return False
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, int) and not isinstance(b, int):
        return str(a) == str(b)
    return a == b


def _wms_value(d: dict, path: str) -> Any:
    if path in ("itemCode", "itemName", "subSourceOrderCode"):
        return d["orderLines"][0].get(path) if d["orderLines"] else None
    cur: Any = d["deliveryOrder"]
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def judge(case: Any, snap: Snapshot, key: str | None, marker: str, *, alt: str | None = None) -> Outcome:
    """What became of one case, read back from hub, ERP interface table and WMS."""
    orders = snap.orders.get(key, []) if key else []
    q = snap.quarantined(marker) + (snap.quarantined(alt) if alt else [])
    if not orders:
        if q:
            codes = sorted({r[1] for r in q})
            if case.codes and not set(codes) & set(case.codes):
                return Outcome(case, "wrong", f"quarantined with {codes}, expected one of {case.codes}")
            if not all(codes):
                return Outcome(case, "wrong", "quarantined without a reason code")
            return Outcome(case, "quarantine", ",".join(codes))
        return Outcome(case, "lost", "neither an order nor a quarantine entry")
    if len(orders) > 1:
        return Outcome(case, "wrong", f"{len(orders)} hub orders")
    o = orders[0]
    lines = snap.lines.get(o["order_id"], [])
    in_erp, in_wms = snap.erp.get(key, []), snap.wms.get(key, [])
    if o["held"]:
        codes = sorted(r.get("code") for r in (o.get("hold_reasons") or []))
        if in_erp or in_wms:
            return Outcome(case, "wrong", f"held ({codes}) but delivered")
        if case.codes and not set(codes) & set(case.codes):
            return Outcome(case, "wrong", f"held with {codes}, expected one of {case.codes}")
        return Outcome(case, "hold", ",".join(codes))
    wms_res = snap.ledger.get((o["order_id"], "wms"))
    erp_res = snap.ledger.get((o["order_id"], "erp-interface"))
    if case.expect == "refused":
        if (wms_res and wms_res[0] == "failed" and wms_res[1]) or (erp_res and erp_res[0] == "failed" and erp_res[1]):
            return Outcome(case, "refused", (wms_res or erp_res)[1][:120])
        return Outcome(case, "wrong", f"expected a target to refuse it; ledger wms={wms_res} erp={erp_res}")
    if len(in_erp) > 1 or len(in_wms) > 1:
        return Outcome(case, "wrong", f"{len(in_erp)} ERP rows, {len(in_wms)} delivery orders")
    if not in_erp:
        return Outcome(case, "lost", f"not in the ERP interface table (ledger {erp_res})")
    sendable = o["status"] in SENDABLE
    if sendable and not in_wms:
        return Outcome(case, "lost", f"not in the WMS (ledger {wms_res})")
    for f, want in case.check.items():
        have = _hub_value(o, lines, f)
        if not _same(have, want):
            return Outcome(case, "wrong", f"hub {f} = {str(have)[:80]!r}, expected {str(want)[:80]!r}")
        col = ERP_COLUMNS.get(f)
        if col:
            row = in_erp[0] if not f.startswith("lines.") else (snap.erp_lines.get(o["order_id"]) or [{}])[0]
            if not _same(row.get(col), want):
                return Outcome(case, "wrong", f"ERP {col} = {str(row.get(col))[:80]!r}, expected {str(want)[:80]!r}")
        path = WMS_PATHS.get(f)
        if path and in_wms and case.expect != "dedupe":  # a WMS keeps the first delivery order (no updates)
            # XML 1.0 cannot carry some control characters, and a parser reads CR and CRLF as LF (XML §2.11)
            w = _XML_ILLEGAL.sub("", want.replace("\r\n", "\n").replace("\r", "\n")) if isinstance(want, str) \
                else want
            got = _wms_value(in_wms[0], path)
            if not _same(got, w):
                return Outcome(case, "wrong", f"WMS {path} = {str(got)[:80]!r}, expected {str(w)[:80]!r}")
    if any(d["code"] == "EVIL" for v in snap.wms.values() for d in v):
        return Outcome(case, "wrong", "an injected deliveryOrderCode reached the WMS")
    return Outcome(case, "dedupe" if case.expect == "dedupe" else "intact")


def _controls_arrived(snap: Snapshot, keys: list[str]) -> list[str]:
    """Valid orders that did not arrive in hub, ERP and WMS."""
    missing = []
    for k in keys:
        o = snap.orders.get(k, [])
        if len(o) != 1 or o[0]["held"] or len(snap.erp.get(k, [])) != 1 or (
                o[0]["status"] in SENDABLE and len(snap.wms.get(k, [])) != 1):
            missing.append(k)
    return missing


# --- record channel -------------------------------------------------------------------------------------------
def _record_lines(case: Any) -> list[list[bytes]]:
    """The Singer RECORD lines of a case, split where it asks for the next batch."""
    from orderhub.infra.faults.hostile import expand

    parts: list[list[bytes]] = [[]]
    for rec in expand(case.payload):
        if rec == {"$batch": True}:
            parts.append([])
            continue
        body = rec if isinstance(rec, bytes) else json.dumps(rec, ensure_ascii=False, separators=(",", ":"),
                                                              allow_nan=True).encode("utf-8", "surrogatepass")
        parts[-1].append(b'{"type":"RECORD","stream":"trades","record":' + body + b"}")
    return parts


def run_record_cases(lab: Lab, cases: list[Any], *, per_batch: int = 20, controls_per_batch: int = 3,
                     name: str = "records") -> tuple[list[Outcome], list[str], Run, list[Any]]:
    """One sync over ``cases`` (``per_batch`` to a batch, with valid orders in every batch); the outcomes, the
    valid orders that did not arrive, the run, and — when the run failed — the cases of the batch it failed on."""
    from orderhub.infra.faults.hostile import controls

    w = HostileWorld(lab, name)
    tap = w.dir / "tap-replay"
    tap.write_text(REPLAY_TAP.format(python=sys.executable))
    tap.chmod(0o755)
    valid = iter(controls(len(cases) // per_batch * controls_per_batch + 2 * controls_per_batch + 2))
    batches: list[list[bytes]] = []
    members: list[list[Any]] = []
    ok_keys: list[str] = []
    spill: list[bytes] = []
    spilled: list[Any] = []
    for start in range(0, len(cases), per_batch):
        lines, group = spill, spilled
        spill, spilled = [], []
        for c in cases[start:start + per_batch]:
            parts = _record_lines(c)
            lines += parts[0]
            if len(parts) > 1:
                spill += [x for p in parts[1:] for x in p]
                spilled.append(c)
            group.append(c)
        for _ in range(controls_per_batch):
            t = next(valid)
            ok_keys.append(t["tid_str"])
            lines.append(b'{"type":"RECORD","stream":"trades","record":' + json.dumps(t, ensure_ascii=False).encode()
                         + b"}")
        batches.append(lines)
        members.append(group)
    if spill:
        batches.append(spill)
        members.append(spilled)
    data = w.dir / "records.singer"
    data.write_bytes(b"\n\x1e\n".join(b"\n".join(b) for b in batches))
    pipeline = f"hostile-{name}"
    path = w.pipeline({"connector": "singer", "executable": str(tap), "config": {"path": str(data)}}, "taobao",
                      name=pipeline)
    run = w.sync(path)
    snap = w.snapshot()
    out = [judge(c, snap, c.key, f'"{c.id}"', alt=f'\\"{c.id}\\"') if run.ok else
           Outcome(c, "crashed", run.stderr[-300:]) for c in cases]
    failed: list[Any] = []
    if not run.ok:
        state = sql_rows(w.hub_url, "SELECT value FROM hub_state WHERE pipeline = :p AND key = 'source'",
                         {"p": pipeline})
        done = (json.loads(state[0][0]) if state and isinstance(state[0][0], str) else
                (state[0][0] if state else {})) or {}
        k = int(done.get("batch", 0))
        failed = members[k] if k < len(members) else list(cases)
    return out, _controls_arrived(snap, ok_keys), run, failed


def record_suite(lab: Lab, cases: list[Any]) -> tuple[list[Outcome], list[str]]:
    """All record cases in one run. When a run fails, the cases of the batch it failed on are tried one by one
    (with valid orders around them); those that fail alone are crashes, and the rest run again."""
    crashed: list[Outcome] = []
    rest = list(cases)
    for attempt in range(8):
        out, missing, run, suspects = run_record_cases(lab, rest, name=f"records-{attempt}")
        if run.ok:
            return out + crashed, missing
        culprits = []
        for c in suspects:
            alone = run_record_cases(lab, [c], name=f"alone-{c.id.lower()}")[2]
            if not alone.ok:
                culprits.append(c)
                crashed.append(Outcome(c, "crashed", alone.stderr.strip()[-400:]))
        if not culprits:  # the batch fails only as a whole: call every case of it crashed
            crashed += [Outcome(c, "crashed", run.stderr.strip()[-400:]) for c in suspects]
            culprits = suspects
        rest = [c for c in rest if c not in culprits]
    return out + crashed, missing


# --- file channel ---------------------------------------------------------------------------------------------
def _materialize_file(inbox: Path, case: Any) -> None:
    from orderhub.infra.faults.hostile import CSV_HEADER, csv_row, expand

    p = expand(case.payload)
    target = inbox / p["name"]
    if "symlink" in p:
        target.symlink_to(p["symlink"])
    elif p.get("fifo"):
        os.mkfifo(target)
    elif "big_remark" in p:
        target.write_text(CSV_HEADER + csv_row(case.key, remark=p["fill"] * p["big_remark"]), encoding="utf-8")
    elif "data" in p:
        target.write_bytes(p["data"])
    else:
        target.write_bytes(p["text"].encode(p.get("encoding", "utf-8")) + p.get("append", b""))


def file_suite(lab: Lab, cases: list[Any]) -> tuple[list[Outcome], list[str]]:
    from orderhub.infra.faults.hostile import CSV_HEADER, csv_row

    w = HostileWorld(lab, "files")
    inbox = w.dir / "inbox"
    inbox.mkdir()
    outside = w.dir / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(CSV_HEADER + csv_row("SECRET-1"), encoding="utf-8")
    (inbox / "control.csv").write_text(CSV_HEADER + "".join(csv_row(f"CTRL-{i}", customer=f"正常客户{i}")
                                                           for i in range(5)), encoding="utf-8")
    out: list[Outcome] = []
    in_inbox = [c for c in cases if "glob" not in c.payload]
    for c in in_inbox:
        _materialize_file(inbox, c)
    src = {"connector": "singer", "executable": str(BIN / "tap-orderfile"), "config": {"path": str(inbox),
                                                                                     "shop": "wechat"}}
    run = w.sync(w.pipeline(src, "orderfile"))
    snap = w.snapshot()
    for c in in_inbox:
        marker = json.dumps(c.payload["name"], ensure_ascii=False)[1:-1]
        out.append(judge(c, snap, c.key, marker) if run.ok else Outcome(c, "crashed", run.stderr[-300:]))
    if "SECRET-1" in snap.orders:
        out.append(Outcome(in_inbox[0], "wrong", "a file outside the inbox was read"))
    for c in cases:
        if "glob" not in c.payload:
            continue
        bad = {**src, "config": {**src["config"], "glob": c.payload["glob"]}}
        r = w.sync(w.pipeline(bad, "orderfile", name=f"hostile-{c.id.lower()}"))
        clear = r.rc == 2 and "glob" in r.stderr and "Traceback" not in r.stderr
        out.append(Outcome(c, "refused" if clear else ("crashed" if r.crashed else "wrong"),
                           r.stderr.strip()[-200:]))
    return out, _controls_arrived(snap, [f"CTRL-{i}" for i in range(5)])


# --- ERP channel ----------------------------------------------------------------------------------------------
def erp_suite(lab: Lab, cases: list[Any]) -> tuple[list[Outcome], list[str]]:
    from orderhub.infra.faults.hostile import expand

    w = HostileWorld(lab, "erp")
    db = lab.mariadb("oh_rel_herp_src")
    c = mariadb_connect(db)
    cur = c.cursor()
    create_erp_tables(cur)
    now = datetime.now(SHANGHAI).replace(tzinfo=None, microsecond=0) - timedelta(hours=1)
    hid = 0
    rows = [(expand(case.payload["header"]), case.payload["lines"], case) for case in cases]
    rows += [({"bill_no": f"HSOK{i}", "customer_code": f"OK{i}", "customer_name": f"正常{i}", "status": "B",
               "remark": "", "receiver_name": f"收{i}", "receiver_phone": f"136{i:08d}",
               "receiver_address": f"上海市浦东新区张杨路{i}号", "order_date": "2024-05-06 10:00:00"},
              [{"sku": f"SKU-OK{i}", "sku_name": "螺母", "qty": "2", "price": "1.50", "amount": "3.00"}], None)
             for i in range(5)]
    for h, ls, case in rows:
        copies = 2 if case is not None and case.payload.get("twin") else 1
        for k in range(copies):
            hid += 1
            cur.execute("INSERT INTO so_header VALUES (%s,%s,%s,%s,%s,%s,%s,'CNY',%s,%s,%s,%s,0,%s)",
                        (hid, h["bill_no"], h["customer_code"], h["customer_name"], h["order_date"], h["status"],
                         sum(Decimal(x["amount"]) for x in ls) if ls else 0, h["remark"], h["receiver_name"],
                         h["receiver_phone"], h["receiver_address"], now + timedelta(seconds=hid)))
            for j, ln in enumerate(ls if k == copies - 1 else ls + ls):
                cur.execute("INSERT INTO so_line VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                            (hid * 100 + j, hid, j + 1, ln["sku"], ln["sku_name"], ln["qty"], ln["price"],
                             ln["amount"], now + timedelta(seconds=hid)))
    c.close()
    src = {"connector": "erp_sql", "config": {"url": mariadb_url(db), "header_table": "so_header",
                                              "line_table": "so_line", "join_key": "header_id",
                                              "updated_at": "updated_at", "shop": "main"}}
    run = w.sync(w.pipeline(src, "erp_sql"))
    snap = w.snapshot()
    out = [judge(case, snap, case.key, case.payload["header"]["customer_code"]) if run.ok else
           Outcome(case, "crashed", run.stderr[-300:]) for case in cases]
    return out, _controls_arrived(snap, [f"HSOK{i}" for i in range(5)])


# --- Taobao channel -------------------------------------------------------------------------------------------
def taobao_suite(lab: Lab, cases: list[Any]) -> tuple[list[Outcome], list[str]]:
    from orderhub.infra.faults.hostile import expand
    from orderhub.infra.sandboxes import taobao

    w = HostileWorld(lab, "taobao")
    app = taobao.make_app(app_key=TAOBAO_KEY, app_secret=TAOBAO_SECRET, shops=1, orders_per_shop=0, seed=5)
    server = lab.serve(app)
    ok = app.create_orders(5)
    tids = app.create_orders(len(cases))
    with app.lock:
        for tid, case in zip(tids, cases):
            app.book.orders[tid].update(expand(case.payload))
        for tid in ok:
            app.book.orders[tid]["status"] = "WAIT_SELLER_SEND_GOODS"
    time.sleep(1.1)  # the tap reads up to the last complete second
    w.env.update({"ORDERHUB_SELFTEST_TAOBAO_SECRET": TAOBAO_SECRET,
                  "ORDERHUB_SELFTEST_SESSION": taobao.session_key(5, "shop1")})
    src = {"connector": "singer", "executable": str(BIN / "tap-taobao"), "config": {
        "api_url": server.url + "/router/rest", "app_key": TAOBAO_KEY, "lag_seconds": 0,
        "app_secret": "${env:ORDERHUB_SELFTEST_TAOBAO_SECRET}", "qps": 100,
        "start_date": datetime.fromtimestamp(time.time() - 3600, SHANGHAI).isoformat(),
        "shops": [{"shop_id": "shop1", "session": "${env:ORDERHUB_SELFTEST_SESSION}"}]}}
    run = w.sync(w.pipeline(src, "taobao"))
    snap = w.snapshot()
    out = [judge(case, snap, tid, f'"{tid}"') if run.ok else Outcome(case, "crashed", run.stderr[-300:])
           for tid, case in zip(tids, cases)]
    return out, _controls_arrived(snap, [t for t in ok])


def hostile_suite(lab: Lab, figures: Figures, cases: list[Any] | None = None, *,
                  channels: tuple[str, ...] = ("record", "file", "erp", "taobao"),
                  log: Callable[[str], None] = lambda s: None) -> list[Outcome]:
    from orderhub.infra.faults import hostile

    cases = cases if cases is not None else hostile.cases()
    runners = {"record": record_suite, "file": file_suite, "erp": erp_suite, "taobao": taobao_suite}
    outcomes: list[Outcome] = []
    for ch in channels:
        mine = [c for c in cases if c.channel == ch]
        if not mine:
            continue
        res, missing = runners[ch](lab, mine)
        outcomes += res
        for k in missing:
            figures.orders_lost += 1
            figures.notes.append(f"hostile/{ch}: the valid order {k} did not arrive")
        figures.orders_checked += len(res)
        log(f"hostile {ch}: {len(mine)} cases, " + ", ".join(f"{k} {v}" for k, v in
                                                            sorted(Counter(o.got for o in res).items()))
            + (f"; valid orders missing: {missing}" if missing else ""))
    for o in outcomes:
        figures.hostile_tried += 1
        if o.got == "crashed":
            figures.hostile_crashed += 1
        elif not o.ok:
            figures.orders_wrong += 1
            figures.notes.append(f"hostile {o.case.id} ({o.case.category}, expect {o.case.expect}): {o.got} — "
                                 f"{o.detail}")
        elif o.got in ("quarantine", "hold", "refused"):
            figures.hostile_rejected += 1
        else:
            figures.hostile_intact += 1
    return outcomes


# ================================================================================================================
# security suite
# ================================================================================================================
@dataclass
class SecurityReport:
    canaries: dict[str, str] = field(default_factory=dict)          # name → value
    leaks: list[str] = field(default_factory=list)                   # "canary NAME in PLACE"
    unmasked: list[str] = field(default_factory=list)                # "phone/address … in PLACE"
    injection: list[str] = field(default_factory=list)               # identifier settings that were not refused
    exposed: list[str] = field(default_factory=list)                 # services not bound to loopback
    places: dict[str, str] = field(default_factory=dict)             # place → text scanned

    def scan(self) -> None:
        for place, text in self.places.items():
            for name, value in self.canaries.items():
                if value and value in text:
                    self.leaks.append(f"canary {name} in {place}")


def _canary(name: str) -> str:
    return f"CANARY{name.upper().replace('_', '')}{uuid.uuid4().hex[:12]}"


def _hub_text(url: str) -> str:
    """Every value of every text column of every hub table, as one text."""
    import sqlalchemy as sa

    eng = sa.create_engine(url)
    parts = []
    try:
        with eng.connect() as c:
            for table in sa.inspect(c).get_table_names():
                for row in c.execute(sa.text(f'SELECT * FROM "{table}"')):
                    parts.append(" ".join(str(v) for v in row if v is not None))
    finally:
        eng.dispose()
    return "\n".join(parts)


def _artifacts(summary: dict | None) -> str:
    from orderhub.flows.artifacts import render_summary_markdown, summary_table_rows

    if not summary:
        return ""
    return render_summary_markdown(summary) + "\n" + json.dumps(summary_table_rows(summary), ensure_ascii=False)


def _mariadb_user(db: str, password: str) -> str:
    user = f"oh_canary_{uuid.uuid4().hex[:6]}"
    c = mariadb_connect()
    cur = c.cursor()
    cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY %s", (password,))
    cur.execute(f"GRANT ALL ON {db}.* TO '{user}'@'127.0.0.1'")
    cur.execute(f"GRANT ALL ON {db}.* TO '{user}'@'localhost'")
    c.close()
    return user


def _drop_mariadb_user(user: str) -> None:
    c = mariadb_connect()
    for host in ("127.0.0.1", "localhost"):
        c.cursor().execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
    c.close()


PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def secrets_check(lab: Lab, report: SecurityReport) -> None:
    """Canaries in every connector setting (TOP app secret and session, QIMEN secret, database passwords in the
    ERP source, ERP target and hub URLs, a DingTalk webhook token and 加签 secret); good runs and failing runs
    (wrong secret, wrong password, refused session); the canaries must not appear in stdout/stderr, the tap's
    own log, the Prefect artifacts, exception text or any hub table."""
    from orderhub.infra.sandboxes import qimen, taobao

    c = report.canaries
    for k in ("taobao_app_secret", "qimen_app_secret", "erp_db_password", "target_db_password", "hub_db_password",
              "dingtalk_token", "dingtalk_secret", "wrong_qimen_secret", "wrong_session", "wrong_db_password"):
        c[k] = _canary(k)
    seed = 21
    c["taobao_session"] = taobao.session_key(seed, "shop1")
    tb = taobao.make_app(app_key=TAOBAO_KEY, app_secret=c["taobao_app_secret"], shops=1, orders_per_shop=25,
                         history_hours=2, seed=seed)
    tbs = lab.serve(tb)
    wms = lab.serve(qimen.make_app(app_key=QIMEN_KEY, app_secret=c["qimen_app_secret"], customer_id=QIMEN_CUSTOMER))
    hubs = [lab.pg("oh_rel_shub").replace("@", f":{c['hub_db_password']}@", 1) for _ in range(3)]  # trust auth
    hub_url = hubs[0]
    erp_target = lab.pg("oh_rel_serp").replace("@", f":{c['target_db_password']}@", 1)
    erp = ErpScenario(lab, orders=40)
    user = _mariadb_user(erp.db, c["erp_db_password"])
    d = lab.path(f"security-{uuid.uuid4().hex[:6]}", ".keep").parent
    env = {"SEC_TB_SECRET": c["taobao_app_secret"], "SEC_TB_SESSION": c["taobao_session"],
           "SEC_QIMEN_SECRET": c["qimen_app_secret"], "SEC_HUB_URL": hub_url, "SEC_ERP_TARGET": erp_target,
           "SEC_ERP_SOURCE": mariadb_url(erp.db, user=user, password=c["erp_db_password"])}
    wms_cfg = {"url": wms.url, "app_key": QIMEN_KEY, "app_secret": "${env:SEC_QIMEN_SECRET}",
               "customer_id": QIMEN_CUSTOMER, "owner_code": "SEC", "retry_base_seconds": 0.05,
               "retry_cap_seconds": 0.1}
    targets = [{"name": "erp-interface", "connector": "erp_sql",
                "config": {"url": "${env:SEC_ERP_TARGET}", "mode": "interface", "create_tables": True}},
               {"name": "wms", "connector": "qimen", "config": wms_cfg}]
    tap_cfg = {"api_url": tbs.url + "/router/rest", "app_key": TAOBAO_KEY, "app_secret": "${env:SEC_TB_SECRET}",
               "start_date": datetime.fromtimestamp(tb.started - 3 * 3600, SHANGHAI).isoformat(), "qps": 100,
               "shops": [{"shop_id": "shop1", "session": "${env:SEC_TB_SESSION}"}], "attempts": 2}
    pipes = {
        "taobao": {"name": "sec-taobao", "mapping": "taobao", "rules": "default", "batch_size": 10,
                   "source": {"connector": "singer", "executable": str(BIN / "tap-taobao"), "config": tap_cfg},
                   "hub": {"url": "${env:SEC_HUB_URL}"}, "targets": targets},
        "erp": {"name": "sec-erp", "mapping": "erp_sql", "rules": "default", "batch_size": 10,
                "source": {"connector": "erp_sql", "config": {
                    "url": "${env:SEC_ERP_SOURCE}", "header_table": "so_header", "line_table": "so_line",
                    "join_key": "header_id", "updated_at": "updated_at", "shop": "main"}},
                "hub": {"url": "${env:SEC_HUB_URL}"}, "targets": targets},
    }
    runs: dict[str, Run] = {}

    def run(label: str, spec: dict, extra_env: dict | None = None) -> None:
        path = d / f"{label}.yaml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
        r = run_sync(path, env={**env, **(extra_env or {})}, log_dir=d)
        runs[label] = r
        report.places[f"{label}: stdout"] = r.stdout
        report.places[f"{label}: stderr"] = r.stderr
        report.places[f"{label}: artifacts"] = _artifacts(r.summary)

    try:
        run("taobao", pipes["taobao"])
        run("erp", pipes["erp"])
        run("taobao-wrong-qimen-secret", {**pipes["taobao"], "name": "sec-taobao-2"},  # a hub that sent nothing yet
            {"SEC_QIMEN_SECRET": c["wrong_qimen_secret"], "SEC_HUB_URL": hubs[1]})
        run("taobao-refused-session", {**pipes["taobao"], "name": "sec-taobao-3"},
            {"SEC_TB_SESSION": c["wrong_session"], "SEC_HUB_URL": hubs[2]})
        run("erp-wrong-password", {**pipes["erp"], "name": "sec-erp-2"},
            {"SEC_ERP_SOURCE": mariadb_url(erp.db, user=user, password=c["wrong_db_password"])})
        run("erp-debug", {**pipes["erp"], "name": "sec-erp-3"},
            {"SEC_ERP_SOURCE": mariadb_url(erp.db, user=user, password=c["wrong_db_password"])})
        for label, r in runs.items():
            if label in ("taobao", "erp") and not r.ok:
                report.leaks.append(f"(the {label} run failed, so it proved little: {r.stderr.strip()[-200:]})")
            if label not in ("taobao", "erp") and r.rc != 2:
                report.leaks.append(f"(the {label} run should fail with a one-line error; rc {r.rc})")
        # the tap on its own: its log goes to a temporary file in a sync, here we read all of it
        cfg = d / "tap.json"
        cfg.write_text(json.dumps({**tap_cfg, "app_secret": c["taobao_app_secret"],
                                   "shops": [{"shop_id": "shop1", "session": c["taobao_session"]}]}))
        p = subprocess.run([str(BIN / "tap-taobao"), "--config", str(cfg)], capture_output=True, timeout=120)
        report.places["tap-taobao: stderr"] = p.stderr.decode("utf-8", "replace")
        bad = d / "tap-bad.json"
        bad.write_text(json.dumps({**tap_cfg, "app_secret": c["taobao_app_secret"],
                                   "shops": [{"shop_id": "shop1", "session": c["wrong_session"]}]}))
        p = subprocess.run([str(BIN / "tap-taobao"), "--config", str(bad)], capture_output=True, timeout=120)
        report.places["tap-taobao refused session: stderr"] = p.stderr.decode("utf-8", "replace")
        for i, url in enumerate(hubs):
            report.places[f"hub {i} tables"] = _hub_text(url)
            for rid, summary in sql_rows(url, "SELECT run_id, summary FROM hub_runs"):
                s = json.loads(summary) if isinstance(summary, str) else summary
                report.places[f"artifacts of hub run {rid}"] = _artifacts(s)
        report.places["dingtalk alert failure"] = _dingtalk_failure(lab, c["dingtalk_token"], c["dingtalk_secret"])
        marketplace_taps_check(lab, report)
    finally:
        _drop_mariadb_user(user)
    report.scan()


def marketplace_taps_check(lab: Lab, report: SecurityReport) -> None:
    """The other marketplace taps (JD, 1688, Douyin) run on their own against their sandboxes with a canary app
    secret, one valid shop token and one refused canary token: their whole log and output must carry none."""
    from orderhub.infra.sandboxes import alibaba1688, douyin, jd

    d = lab.path(f"taps-{uuid.uuid4().hex[:6]}", ".keep").parent
    now = time.time()
    for name, mod, tap, path in (("jd", jd, "tap-jd", "/routerjson"), ("douyin", douyin, "tap-douyin", ""),
                                 ("alibaba1688", alibaba1688, "tap-alibaba1688", "")):
        secret, wrong = _canary(f"{name}_app_secret"), _canary(f"{name}_wrong_token")
        app = mod.make_app(app_secret=secret, orders_per_shop=5, history_hours=24)
        server = lab.serve(app)
        shops = list(app.shops)
        token = app.tokens[shops[0]] if name == "jd" else app.token_of(shops[0])
        report.canaries.update({f"{name}_app_secret": secret, f"{name}_token": token, f"{name}_wrong_token": wrong})
        key = next(iter(app.apps)) if name == "jd" else app.app_key
        cfg = {"api_url": server.url + path, "app_key": key, "app_secret": secret, "qps": 100,
               "start_date": datetime.fromtimestamp(now - 2 * 86400, SHANGHAI).isoformat(), "lag_seconds": 0,
               "shops": [{"shop_id": shops[0], "access_token": token}, {"shop_id": shops[1], "access_token": wrong}]}
        f = d / f"{name}.json"
        f.write_text(json.dumps(cfg))
        r = subprocess.run([str(BIN / tap), "--config", str(f)], capture_output=True, timeout=120)
        report.places[f"{tap} (one shop refused): stderr"] = r.stderr.decode("utf-8", "replace")
        report.places[f"{tap} (one shop refused): stdout"] = r.stdout.decode("utf-8", "replace")
        if r.returncode == 0 or b'"type":"RECORD"' not in r.stdout.replace(b" ", b""):
            report.leaks.append(f"({tap} should read one shop and fail naming the other; rc {r.returncode})")


def _dingtalk_failure(lab: Lab, token: str, secret: str) -> str:
    """A DingTalk robot whose endpoint refuses the message (HTTP 500, then errcode 310000): the exception text
    and the log lines of each attempt."""
    import logging
    import traceback

    from orderhub.infra.alerts import DingTalkRobot
    from orderhub.infra.sandboxes.base import Response, SandboxApp

    class Refuse(SandboxApp):
        name = "dingtalk-refuses"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def handle(self, req: Any) -> Any:
            self.n += 1
            if self.n % 2:
                return Response(500, {"errcode": -1, "errmsg": "system busy"})
            return Response(200, {"errcode": 310000, "errmsg": "sign not match"})

    server = lab.serve(Refuse())
    robot = DingTalkRobot(webhook_url=f"{server.url}/robot/send?access_token={token}", secret=secret)
    captured: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(self.format(record))

    h = Keep()
    logging.getLogger().addHandler(h)
    try:
        for _ in range(2):
            try:
                robot.notify("订单同步失败", subject="[orderhub] Failed")
            except Exception as exc:  # noqa: BLE001 - its text is what we check
                captured += [str(exc), repr(exc), traceback.format_exc()]
    finally:
        logging.getLogger().removeHandler(h)
    return "\n".join(captured)


def masking_check(lab: Lab, report: SecurityReport) -> None:
    """Receiver phones and addresses (plain text in the ERP and in order files) must be masked in everything a
    run prints: the sync's stdout/stderr (with rows that make it warn: bad phones, a WMS that refuses orders,
    rejected file rows), the tap's own log and the artifacts."""
    from orderhub.connectors.orderfile.samples import write_samples

    erp = ErpScenario(lab, orders=30)
    c = mariadb_connect(erp.db)
    cur = c.cursor()
    cur.execute("UPDATE so_header SET receiver_phone = CONCAT(receiver_phone, '9') WHERE id % 5 = 0")  # bad phones
    cur.execute("UPDATE so_line SET amount = amount * 100 WHERE header_id % 7 = 0")  # held: amount mismatch
    cur.execute("SELECT receiver_phone, receiver_address FROM so_header")
    personal = [x for row in cur.fetchall() for x in row if x]
    c.close()
    d = lab.path(f"masking-{uuid.uuid4().hex[:6]}", ".keep").parent
    inbox = d / "inbox"
    write_samples(inbox)
    (inbox / "bad.csv").write_text(CSV_HEADER_MASK + "M-1,2024-05-06,客户,王五,13812349876,浙江省杭州市西湖区文三路478号,"
                                   "JG-1,螺栓,-3,1.00,-3.00,\n", encoding="utf-8")
    personal += ["13812349876", "浙江省杭州市西湖区文三路478号", "13812345678", "浙江省宁波市鄞州区天童南路588号"]
    wms = lab.serve(__import__("orderhub.infra.sandboxes.qimen", fromlist=["make_app"]).make_app(
        app_key=QIMEN_KEY, app_secret=QIMEN_SECRET, customer_id=QIMEN_CUSTOMER, required="official",
        duplicate_style="failure"))
    for label, source, mapping in (
            ("erp", erp.source_spec(), "erp_sql"),
            ("file", {"connector": "singer", "executable": str(BIN / "tap-orderfile"),
                      "config": {"path": str(inbox), "shop": "wechat"}}, "orderfile")):
        spec = {"name": f"mask-{label}", "mapping": mapping, "rules": "default", "batch_size": 10,
                "source": source, "hub": {"url": f"sqlite:///{d}/hub-{label}.db"},
                "targets": [{"name": "wms", "connector": "qimen", "config": {
                    "url": wms.url, "app_key": QIMEN_KEY, "app_secret": QIMEN_SECRET,  # file: a WMS refusing us
                    "customer_id": QIMEN_CUSTOMER if label == "erp" else "not-this-one",
                    "owner_code": "SEC", "retry_base_seconds": 0.05, "retry_cap_seconds": 0.1}}]}
        path = d / f"{label}.yaml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
        r = run_sync(path, log_dir=d)
        report.places[f"masking {label}: stdout"] = r.stdout
        report.places[f"masking {label}: stderr"] = r.stderr
        report.places[f"masking {label}: artifacts"] = _artifacts(r.summary)
    cfg = d / "orderfile.json"
    cfg.write_text(json.dumps({"path": str(inbox), "shop": "wechat"}))
    p = subprocess.run([str(BIN / "tap-orderfile"), "--config", str(cfg)], capture_output=True, timeout=120)
    report.places["masking tap-orderfile: stderr"] = p.stderr.decode("utf-8", "replace")
    for place, text in report.places.items():
        if not place.startswith("masking"):
            continue
        for value in set(personal):
            if value in text:
                report.unmasked.append(f"{value[:3]}… in {place}")


CSV_HEADER_MASK = "订单号,下单日期,客户名称,收货人,手机,收货地址,商品编码,商品名称,数量,单价,金额,备注\n"

#: Settings naming SQL identifiers, with where they sit in the reader/writer configuration.
READER_IDENTIFIERS = ("header_table", "line_table", "primary_key", "line_primary_key", "join_key", "header_key",
                      "updated_at", "line_updated_at", "header_columns", "line_columns", "filter")
WRITER_IDENTIFIERS = ("schema", "header_table", "line_table", "header_columns", "line_columns", "header_key",
                      "line_parent", "ref_column", "write_log_table", "payload_column")
EVIL = ["so_header; DROP TABLE so_line; --", "so_header\" OR 1=1 --", "x`; DELETE FROM so_header; #",
        "so_header/**/UNION/**/SELECT", "[so_header]; DROP TABLE so_line"]


def identifier_check(lab: Lab, report: SecurityReport) -> int:
    """Every identifier setting of the ERP reader and writer, given SQL in place of a name, is refused with a
    message naming the setting; a sync with such a setting stops before touching the database; a filter value
    with SQL in it is a bound value (matches nothing). Returns the number of settings tried."""
    from orderhub.connectors.common.errors import ConfigError
    from orderhub.connectors.erp_sql.reader import OrderReader
    from orderhub.connectors.erp_sql.writer import OrderWriter

    erp = ErpScenario(lab, orders=10)
    base_r = {"url": erp.source_url, "header_table": "so_header", "line_table": "so_line", "join_key": "header_id",
              "updated_at": "updated_at"}
    base_w = {"url": erp.erp_url, "mode": "tables", "header_table": "so_header", "line_table": "so_line",
              "header_columns": {"bill_no": "source_order_id"}, "line_columns": {"qty": "qty"},
              "header_key": ["bill_no"], "line_parent": {"header_id": "id"}}
    tried = 0
    for key in READER_IDENTIFIERS:
        for evil in EVIL:
            value: Any = {"header_columns": ["id", evil], "line_columns": ["id", evil], "filter": {evil: "B"},
                          "updated_at": [evil]}.get(key, evil)
            tried += 1
            try:
                OrderReader({**base_r, key: value}).check()
                report.injection.append(f"reader {key}={evil!r} was accepted")
            except ConfigError as exc:
                if key.split("_")[0] not in str(exc) and key not in str(exc):
                    report.injection.append(f"reader {key}: the error does not name the setting: {exc}")
            except Exception as exc:  # noqa: BLE001 - any other failure means the text reached the database
                report.injection.append(f"reader {key}={evil!r}: {type(exc).__name__}: {str(exc)[:120]}")
    for key in WRITER_IDENTIFIERS:
        for evil in EVIL:
            value = {"header_columns": {evil: "source_order_id"}, "line_columns": {evil: "qty"},
                     "header_key": [evil], "line_parent": {evil: "id"}}.get(key, evil)
            tried += 1
            try:
                OrderWriter({**base_w, key: value})
                report.injection.append(f"writer {key}={evil!r} was accepted")
            except ConfigError:
                pass
            except Exception as exc:  # noqa: BLE001
                report.injection.append(f"writer {key}={evil!r}: {type(exc).__name__}: {str(exc)[:120]}")
    # a whole sync: refused before any data moves, one line naming the key; the ERP tables are still there
    d = lab.path(f"ident-{uuid.uuid4().hex[:6]}", ".keep").parent
    spec = {"name": "ident", "mapping": "erp_sql", "source": {"connector": "erp_sql", "config": {
        **base_r, "header_table": EVIL[0]}}, "hub": {"url": f"sqlite:///{d}/hub.db"}}
    path = d / "p.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    r = run_sync(path, log_dir=d)
    tried += 1
    if r.rc != 2 or "header_table" not in r.stderr or "Traceback" in r.stderr:
        report.injection.append(f"sync with an evil header_table: rc {r.rc}: {r.stderr.strip()[-200:]}")
    # a filter value is a value: bound, so it matches no status and drops nothing
    spec["source"]["config"] = {**base_r, "filter": {"status": "B' OR '1'='1"}}
    spec["name"] = "ident-2"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    r = run_sync(path, log_dir=d)
    tried += 1
    if not r.ok or (r.summary or {}).get("read") != 0:
        report.injection.append(f"a filter value with SQL in it: rc {r.rc}, read {(r.summary or {}).get('read')}")
    left = sql_rows(erp.source_url, "SELECT count(*) FROM so_line")[0][0]
    if left == 0:
        report.injection.append("so_line was emptied")
    return tried


def loopback_check(report: SecurityReport) -> int:
    """Every sandbox and orderhub service binds 127.0.0.1 unless told otherwise: the frame's default, each
    ``orderhub-sandbox NAME`` started without ``--host`` (and not reachable on this machine's other address),
    the webhook receiver, and the Prefect server (which refuses a non-loopback host)."""
    import inspect
    import socket

    from orderhub.infra import prefect_server, webhook_receiver
    from orderhub.infra.sandboxes import __main__ as sbx
    from orderhub.infra.sandboxes.base import SandboxServer, serve_in_thread

    checked = 0
    for fn in (SandboxServer.__init__, serve_in_thread, webhook_receiver.WebhookReceiver.__init__,
               prefect_server.PrefectServer.__init__):
        checked += 1
        host = inspect.signature(fn).parameters["host"].default
        if host not in ("127.0.0.1", "::1", "localhost"):
            report.exposed.append(f"{fn.__qualname__} binds {host!r} by default")
    checked += 1
    try:
        prefect_server.PrefectServer("/tmp/never-used", host="0.0.0.0")
        report.exposed.append("PrefectServer accepted host 0.0.0.0")
    except ValueError:
        pass
    other = _other_address()
    for name in sorted(sbx.SANDBOXES):
        checked += 1
        p = subprocess.Popen([str(BIN / "orderhub-sandbox"), name, "--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            line = p.stdout.readline() if p.stdout else ""
            m = re.search(r"http://([^:/]+):(\d+)", line)
            if not m or m.group(1) != "127.0.0.1":
                report.exposed.append(f"orderhub-sandbox {name}: {line.strip() or p.stderr.read()[-200:]}")
            elif other:
                s = socket.socket()
                s.settimeout(1)
                if s.connect_ex((other, int(m.group(2)))) == 0:
                    report.exposed.append(f"orderhub-sandbox {name} answers on {other}")
                s.close()
        finally:
            _killpg(p.pid)
            p.wait()
    return checked


def _other_address() -> str | None:
    """This machine's address on its default route (not loopback), if it has one."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


def security_suite(lab: Lab, figures: Figures, *, log: Callable[[str], None] = lambda s: None) -> SecurityReport:
    report = SecurityReport()
    secrets_check(lab, report)
    masking_check(lab, report)
    n_ident = identifier_check(lab, report)
    n_bind = loopback_check(report)
    figures.canaries_planted += len(report.canaries)
    figures.canary_leaks += len([x for x in report.leaks if not x.startswith("(")])
    figures.masking_leaks += len(report.unmasked)
    figures.notes += report.leaks[:10] + report.unmasked[:10] + report.injection[:10] + report.exposed[:10]
    figures.security_failures += len([x for x in report.leaks if x.startswith("(")]) + len(report.injection) + \
        len(report.exposed)
    log(f"security: {len(report.canaries)} canaries in {len(report.places)} places scanned, {len(report.leaks)} "
        f"leak(s); {len(report.unmasked)} unmasked phone/address; {n_ident} identifier settings tried, "
        f"{len(report.injection)} accepted; {n_bind} services checked, {len(report.exposed)} not on loopback")
    return report


# ================================================================================================================
# the report command
# ================================================================================================================
SUITES = ("crash", "faults", "hostile", "security")
BOUNDED = {"crash": {"random_trials": 2, "per_point": 1}, "faults": {"rounds": 1, "rate": 0.08}}
FULL = {"crash": {"random_trials": 12, "per_point": 3, "then_rerun": True}, "faults": {"rounds": 3, "rate": 0.1}}


def run_selftest(*, full: bool = False, suites: tuple[str, ...] = SUITES, seed: int = 7,
                 log: Callable[[str], None] = lambda s: None) -> Figures:
    """Run the suites (bounded: a few minutes; ``full``: the long version) in a fresh lab; the figures."""
    cfg = FULL if full else BOUNDED
    figures = Figures()
    t0 = time.perf_counter()
    runners = {"crash": lambda lab: crash_suite(lab, figures, seed=seed, log=log, **cfg["crash"]),
               "faults": lambda lab: fault_suite(lab, figures, seed=seed, log=log, **cfg["faults"]),
               "hostile": lambda lab: hostile_suite(lab, figures, log=log),
               "security": lambda lab: security_suite(lab, figures, log=log)}
    with Lab() as lab:
        for name in suites:
            try:
                runners[name](lab)
            except Exception as exc:  # noqa: BLE001 - a broken suite is a failed figure, not a lost report
                import traceback

                figures.harness_errors += 1
                figures.notes.append(f"{name} suite stopped: {type(exc).__name__}: {exc}")
                log(traceback.format_exc())
    figures.seconds = time.perf_counter() - t0
    return figures


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m orderhub.infra.selftest", description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="the long version (many more kills and faults)")
    p.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated, from {', '.join(SUITES)}")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    a = p.parse_args(argv)
    suites = tuple(s.strip() for s in a.suites.split(",") if s.strip())
    unknown = set(suites) - set(SUITES)
    if unknown:
        p.error(f"unknown suite(s) {sorted(unknown)}; choose from {', '.join(SUITES)}")
    f = run_selftest(full=a.full, suites=suites,
                     log=(lambda s: None) if a.quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    if a.json:
        print(json.dumps(f.as_dict(), ensure_ascii=False))
    else:
        print_figures(f, title="orderhub selftest" + (" --full" if a.full else ""))
    return 0 if f.ok else 1


if __name__ == "__main__":
    sys.exit(main())
