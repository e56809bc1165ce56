"""Pipelines as configuration, and the engine that runs one: source → canonical layer → hub → targets.

A pipeline file (YAML) names a source connector and its config, the mapping, rule set and SKU dictionary, the hub
and the targets. Secrets come from ``${env:NAME}`` or ``${secret:BLOCK}`` (Prefect Secret blocks). A bad file fails
in :func:`load_pipeline` — before any data moves — with a message naming the key::

    name: erp-main
    source:
      connector: erp_sql                 # in-process fast reader; or `singer` with `executable: tap-taobao`
      config: {url: "${env:ERP_URL}", header_table: so_header, line_table: so_line, join_key: header_id}
    mapping: erp_sql
    rules: default
    skus: infra/demo_data/skus.yaml
    hub: {url: "${env:ORDERHUB_HUB_URL}"}
    targets:
      - {name: erp-interface, connector: erp_sql, config: {url: "${env:ERP_URL}", mode: interface}}
      - {name: wms, connector: qimen, config: {...}, stock: true}

Per batch, :class:`Pipeline` canonicalizes, writes the hub (orders, lineage, holds, quarantine), delivers the
orders that are new or changed and not held to every target, records each target write, and only then commits the
source bookmark. A run killed anywhere resumes from the last committed bookmark; the hub recognises unchanged
records and the delivery ledger re-sends only what a target has not confirmed, and every target is idempotent,
so a re-run ends exact: nothing lost, nothing doubled.
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import threading
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from orderhub.connectors.common.config import load_yaml
from orderhub.connectors.common.errors import ConfigError, OrderhubError, RecordError, TransientError
from orderhub.connectors.common.privacy import mask_text
from orderhub.flows.columnar_step import ColumnarResult, release_memory
from orderhub.infra.faults.crash import crash_point
from orderhub.transforms import Canonicalizer, RuleContext, RuleSet, SkuDictionary, load_mapping
from orderhub.transforms.canonical import BatchResult, QuarantineEntry

log = logging.getLogger("orderhub.pipeline")
_GC_LOCK = threading.Lock()
_GC_USERS = [0]
_GC_SAVED: list[int] = []
SOURCES = ("erp_sql", "singer")
TARGETS = ("erp_sql", "qimen")
TOP_KEYS = {"name", "description", "source", "mapping", "rules", "skus", "hub", "targets", "batch_size",
            "schedule", "partner", "customer_levels", "credit", "engine"}
ENGINES = ("auto", "row", "columnar")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


@dataclass
class TargetSpec:
    name: str
    connector: str
    config: dict[str, Any]
    stock: bool = False          # read a stock snapshot from this target (WMS) for the inventory rule
    warehouses: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    name: str
    source_connector: str
    source_config: dict[str, Any]
    mapping: str
    rules: str | None = None
    skus: str | None = None
    hub_url: str | None = None
    targets: list[TargetSpec] = field(default_factory=list)
    batch_size: int = 5000
    partner: str | None = None
    customer_levels: dict[str, str] = field(default_factory=dict)
    credit: dict[str, Any] | None = None
    engine: str = "auto"
    base_dir: Path = Path(".")
    raw: dict = field(default_factory=dict, repr=False)


def _path(base: Path, v: str | None) -> str | None:
    if v is None or "/" not in v and "\\" not in v and not v.endswith((".yaml", ".yml")):
        return v  # a built-in name
    p = Path(v)
    return str(p if p.is_absolute() else (base / p))


def parse_pipeline(spec: Any, *, base_dir: Path = Path("."), where: str = "pipeline") -> PipelineConfig:
    """Validate a pipeline given as a dict. Every error names the key."""
    if not isinstance(spec, dict):
        raise ConfigError("a pipeline file must be a YAML table", key=where)
    unknown = set(spec) - TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}", key=where)
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError("is required: lower-case letters, digits, - _ . (it names bookmarks and deployments)",
                          key="name")
    src = spec.get("source")
    if not isinstance(src, dict):
        raise ConfigError("is required: {connector: erp_sql|singer, config: {...}}", key="source")
    conn = src.get("connector")
    if conn not in SOURCES:
        raise ConfigError(f"must be one of {', '.join(SOURCES)}, got {conn!r}", key="source.connector")
    scfg = src.get("config") or {}
    if not isinstance(scfg, dict):
        raise ConfigError("must be a table", key="source.config")
    if conn == "singer" and not src.get("executable"):
        raise ConfigError("is required for a Singer source (e.g. tap-taobao)", key="source.executable")
    if conn == "singer":
        scfg = {"__executable__": src["executable"], **scfg}
    if not isinstance(spec.get("mapping"), str):
        raise ConfigError("is required: a mapping name (erp_sql, taobao, …) or a YAML path", key="mapping")
    targets = []
    for i, tg in enumerate(spec.get("targets") or []):
        key = f"targets[{i}]"
        if not isinstance(tg, dict):
            raise ConfigError("must be a table", key=key)
        if tg.get("connector") not in TARGETS:
            raise ConfigError(f"must be one of {', '.join(TARGETS)}", key=f"{key}.connector")
        tname = tg.get("name") or tg["connector"]
        if not _NAME.match(str(tname)):
            raise ConfigError("must be lower-case letters, digits, - _ .", key=f"{key}.name")
        extra = set(tg) - {"name", "connector", "config", "stock", "warehouses"}
        if extra:
            raise ConfigError(f"unknown key(s) {sorted(extra)}", key=key)
        targets.append(TargetSpec(str(tname), tg["connector"], dict(tg.get("config") or {}), bool(tg.get("stock")),
                                  list(tg.get("warehouses") or [])))
    if len({t.name for t in targets}) != len(targets):
        raise ConfigError("target names must be unique", key="targets")
    bs = spec.get("batch_size", 5000)
    if not isinstance(bs, int) or not 1 <= bs <= 100_000:
        raise ConfigError("must be an integer between 1 and 100000", key="batch_size")
    engine = spec.get("engine", "auto")
    if engine not in ENGINES:
        raise ConfigError(f"must be one of {', '.join(ENGINES)}, got {engine!r}", key="engine")
    hub = spec.get("hub") or {}
    if not isinstance(hub, dict):
        raise ConfigError("must be a table {url: ...}", key="hub")
    cfg = PipelineConfig(name=name, source_connector=conn, source_config=scfg,
                         mapping=_path(base_dir, spec["mapping"]), rules=_path(base_dir, spec.get("rules")),
                         skus=_path(base_dir, spec.get("skus")), hub_url=hub.get("url"), targets=targets,
                         batch_size=bs, partner=spec.get("partner"),
                         customer_levels={str(k): str(v) for k, v in (spec.get("customer_levels") or {}).items()},
                         credit=spec.get("credit"), engine=engine, base_dir=base_dir, raw=spec)
    # compile what can be compiled now, so a bad mapping or rule set fails before any data moves
    try:
        load_mapping(cfg.mapping)
    except ConfigError as exc:
        raise ConfigError(exc.message, key="mapping") from None
    if cfg.rules:
        try:
            RuleSet.load(cfg.rules)
        except ConfigError as exc:
            raise ConfigError(exc.message, key="rules") from None
    if cfg.skus:
        SkuDictionary.load(cfg.skus)
    return cfg


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline file (``${env:…}``/``${secret:…}`` resolved). A bare name (``demo-erp``)
    means ``schedules/pipelines/<name>.yaml``."""
    p = Path(path)
    if not p.suffix and "/" not in str(path):
        from orderhub.schedules import PIPELINES

        p = PIPELINES / f"{path}.yaml"
    return parse_pipeline(load_yaml(p), base_dir=p.resolve().parent, where=str(p))


# ----------------------------------------------------------------------------------------------------------------
# sources
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class SourceBatch:
    records: list[dict]
    state: dict[str, Any] | None          # bookmark to commit once this batch is delivered
    errors: list[RecordError] = field(default_factory=list)   # records the source itself quarantined
    page: Any = None                      # a columnar page (ArrowPage) instead of records
    pending: list[str] = field(default_factory=list)  # its order ids, until the hub has committed them
    ahead: Any = None                     # the page canonicalized ahead (columnar_step.Ahead)


class PendingOrders:
    """Order ids of batches prepared but not yet committed to the hub, for the columnar engine's "is this order
    new?". A page's hub lookup starts on the canonical thread, before the pages ahead of it are all prepared:
    :meth:`token` marks that moment, and :meth:`since` then gives the ids of every batch still uncommitted or
    committed after it. With the lookup (which sees every batch committed before it started) that covers every
    batch prepared before the page."""

    def __init__(self) -> None:
        self._ids: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._seq = 0                                   # commits seen while a token was out
        self._log: collections.deque[tuple[int, list[str]]] = collections.deque()
        self._tokens: collections.Counter[int] = collections.Counter()

    def __len__(self) -> int:
        with self._lock:
            return sum(self._ids.values())

    def hold(self, ids: list[str]) -> None:
        with self._lock:
            self._ids.update(ids)

    def release(self, ids: list[str]) -> None:
        """The batch with these ids is committed."""
        with self._lock:
            self._ids.subtract(ids)
            for i in ids:
                if self._ids[i] <= 0:
                    del self._ids[i]
            if self._tokens:
                self._seq += 1
                self._log.append((self._seq, ids))

    def token(self) -> int:
        """Taken just before a hub lookup starts; hand it back to :meth:`since` (once)."""
        with self._lock:
            self._tokens[self._seq] += 1
            return self._seq

    def since(self, token: int, ids: Iterable[str]) -> set[str]:
        """Of ``ids``, those of a batch not yet committed or committed after ``token`` was taken (the token ends)."""
        with self._lock:
            self._tokens[token] -= 1
            if self._tokens[token] <= 0:
                del self._tokens[token]
            later = [batch for seq, batch in self._log if seq > token]
            floor = min(self._tokens) if self._tokens else self._seq
            while self._log and self._log[0][0] <= floor:   # no token out needs these any more
                self._log.popleft()
            held = {i for i in ids if i in self._ids} if self._ids else set()
        if later:
            committed = set().union(*later)
            held |= {i for i in ids if i in committed}
        return held


class ErpSqlSource:
    """The in-process fast reader of ``connectors/erp_sql`` (no Singer serialisation on the hot path)."""

    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        from orderhub.connectors.erp_sql.reader import OrderReader

        cfg = dict(config)
        cfg.setdefault("batch_size", batch_size)
        self.reader = OrderReader(cfg)

    def check(self) -> None:
        self.reader.check()

    def batches(self, state: dict[str, Any]) -> Iterator[SourceBatch]:
        from orderhub.connectors.erp_sql.reader import ArrowPage

        for batch, new_state in self.reader.iter_batches(state.get("source") or {}):
            if isinstance(batch, ArrowPage):
                yield SourceBatch([], {"source": new_state}, page=batch)
                continue
            yield SourceBatch(list(batch), {"source": new_state}, list(getattr(batch, "errors", [])))


class SingerSource:
    """Any Singer tap as a subprocess: RECORD messages become source records, and each STATE message becomes the
    bookmark of the batch that ends there (a bookmark is committed only after everything before it is stored)."""

    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        import shutil

        exe = config.pop("__executable__")
        # a tap installed with orderhub lives beside this interpreter even when that folder is not on PATH
        beside = Path(sys.executable).parent / exe
        self.executable = shutil.which(exe) or (str(beside) if beside.exists() else exe)
        self.config = config
        self.batch_size = batch_size

    def check(self) -> None:
        import shutil

        if shutil.which(self.executable) is None and not Path(self.executable).exists():
            raise ConfigError(f"tap executable {self.executable!r} not found on PATH", key="source.executable")

    def batches(self, state: dict[str, Any]) -> Iterator[SourceBatch]:
        with tempfile.TemporaryDirectory(prefix="orderhub-tap-") as tmp:
            cfg_path = Path(tmp) / "config.json"
            cfg_path.write_text(json.dumps(self.config, default=str))
            cfg_path.chmod(0o600)
            cmd = [self.executable, "--config", str(cfg_path)]
            if state.get("source"):
                st_path = Path(tmp) / "state.json"
                st_path.write_text(json.dumps(state["source"]))
                cmd += ["--state", str(st_path)]
            err_path = Path(tmp) / "stderr.log"
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
                records: list[dict] = []
                errors: list[RecordError] = []
                last_state: dict | None = None
                assert proc.stdout is not None
                for n, raw in enumerate(proc.stdout, 1):
                    if not raw.strip():
                        continue
                    try:
                        msg = json.loads(raw, parse_float=__import__("decimal").Decimal)
                        kind = msg.get("type")
                    except (ValueError, AttributeError) as exc:  # not UTF-8, not JSON, not an object
                        errors.append(_bad_line(self.executable, n, raw, exc))
                        continue
                    if kind == "RECORD" and str(msg.get("stream", "")).endswith("_rejects"):
                        errors.append(_reject(msg["record"]))  # the tap already quarantined it, with its reason
                    elif kind == "RECORD":
                        records.append(msg["record"])
                        if len(records) >= self.batch_size:
                            yield SourceBatch(records, None, errors)
                            records, errors = [], []
                    elif kind == "STATE":
                        last_state = msg["value"]
                        yield SourceBatch(records, {"source": last_state}, errors)
                        records, errors = [], []
                rc = proc.wait()
            if records or errors:
                yield SourceBatch(records, {"source": last_state} if last_state is not None else None, errors)
            if rc != 0:
                tail = err_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise OrderhubError(f"tap {self.executable} exited with {rc}: " + mask_text(" | ".join(tail)),
                                    code="tap_failed", retryable=True)


def _bad_line(tap: str, n: int, raw: bytes, exc: Exception) -> RecordError:
    """A line of a tap's output that is no Singer message (invalid UTF-8, broken JSON): quarantined, not fatal."""
    why = "is not UTF-8" if isinstance(exc, UnicodeDecodeError) else "is not a JSON object"
    err = RecordError(f"line {n} of {Path(tap).name}'s output {why}", code="bad_message")
    err.details["record"] = raw.decode("utf-8", "backslashreplace").rstrip("\n")
    return err


def _reject(rec: dict) -> RecordError:
    """A record of a tap's ``*_rejects`` stream (orderfile, erp_sql) as a quarantine entry with its own reason."""
    where = ", ".join(f"{k} {rec[k]}" for k in ("file", "row") if rec.get(k) is not None)
    msg = str(rec.get("message") or rec.get("reason") or "rejected by the source")
    err = RecordError(f"{msg}" + (f" ({where})" if where else ""), code=str(rec.get("reason_code") or "rejected"),
                      field=rec.get("field"), record_id=str(rec.get("order_no") or rec.get("record_id") or
                                                            rec.get("source_order_id") or "") or None)
    err.details["record"] = rec.get("raw") or rec  # a whole-file reject has no row: keep the reject itself
    return err


def make_source(cfg: PipelineConfig) -> Any:
    conf = dict(cfg.source_config)
    if cfg.source_connector == "erp_sql":
        return ErpSqlSource(conf, cfg.batch_size)
    return SingerSource(conf, cfg.batch_size)


# ----------------------------------------------------------------------------------------------------------------
# targets
# ----------------------------------------------------------------------------------------------------------------
class Target:
    """An in-process target: ``write(orders) -> list of {order_id, result, target_ref, message}``."""

    def __init__(self, spec: TargetSpec) -> None:
        self.spec = spec
        self.name = spec.name
        if spec.connector == "erp_sql":
            from orderhub.connectors.erp_sql.writer import OrderWriter

            self.impl = OrderWriter(spec.config)
            self._write = self.impl.write
        else:
            from orderhub.connectors.qimen.writer import QimenDeliveryWriter

            conf = {k: v for k, v in spec.config.items() if k != "hub_url"}
            self.impl = QimenDeliveryWriter.from_config(conf)
            self._write = self.impl.send

    def write(self, orders: list[dict]) -> list[dict]:
        return self._write(orders)

    def stock(self, warehouses: list[str], skus: list[str]) -> dict:
        from orderhub.connectors.qimen.stock import stock_snapshot

        return stock_snapshot(self.impl.client, warehouses, skus)

    def close(self) -> None:
        close = getattr(self.impl, "close", None)
        if close:
            close()


# ----------------------------------------------------------------------------------------------------------------
# the engine
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class RunSummary:
    """What a run did; published as the Prefect summary artifact and printed by ``orderhub sync``."""

    pipeline: str
    run_id: str
    read: int = 0
    quarantined: int = 0
    hub: dict[str, int] = field(default_factory=lambda: {"created": 0, "updated": 0, "unchanged": 0, "stale": 0})
    held: dict[str, int] = field(default_factory=dict)
    held_orders: int = 0
    targets: dict[str, dict[str, int]] = field(default_factory=dict)
    held_list: list[dict] = field(default_factory=list)
    quarantined_list: list[dict] = field(default_factory=list)
    batches: int = 0
    duration_s: float = 0.0
    status: str = "running"
    engine: dict[str, int] = field(default_factory=dict)  # orders decided per engine (row, columnar)

    def as_dict(self) -> dict[str, Any]:
        return {"pipeline": self.pipeline, "run_id": self.run_id, "read": self.read, "quarantined": self.quarantined,
                "hub": dict(self.hub), "held": dict(self.held), "held_orders": self.held_orders,
                "targets": {k: dict(v) for k, v in self.targets.items()}, "held_list": self.held_list[:200],
                "quarantined_records": self.quarantined_list[:200], "batches": self.batches, "engine": dict(self.engine),
                "duration_s": round(self.duration_s, 3), "status": self.status}


@dataclass
class BatchOutcome:
    result: BatchResult
    deliver: list[dict]
    state: dict[str, Any] | None


#: How long :meth:`Pipeline.may_recall` trusts its reading of the earlier orders' created-time range (seconds).
SPAN_TTL_S = 60.0


class Pipeline:
    """Runs one pipeline. The Prefect flows call the steps (:meth:`batches`, :meth:`process`, :meth:`deliver`,
    :meth:`commit`) as tasks; :meth:`run` is the same loop in one call (``orderhub sync``)."""

    def __init__(self, cfg: PipelineConfig, *, run_id: str | None = None, hub: Any = None,
                 until: datetime | None = None) -> None:
        from orderhub.connectors.hub.store import HubStore

        self.cfg = cfg
        self.run_id = run_id or f"{cfg.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.hub = hub or HubStore(cfg.hub_url or os.environ.get("ORDERHUB_HUB_URL"))
        self.mapping = load_mapping(cfg.mapping)
        self.rules = RuleSet.load(cfg.rules) if cfg.rules else None
        self.skus = SkuDictionary.load(cfg.skus) if cfg.skus else None
        credit = None
        if cfg.credit is not None:
            from decimal import Decimal

            credit = {str(k): Decimal(str(v)) for k, v in cfg.credit.items()}
        self.context = RuleContext(credit=credit, customer_levels=dict(cfg.customer_levels))
        self.canonicalizer = Canonicalizer(self.mapping, skus=self.skus, rules=None, context=self.context)
        self.source = make_source(cfg)
        self._targets: list[Target] | None = None
        self.summary = RunSummary(cfg.name, self.run_id)
        self._started = datetime.now(timezone.utc)  # hub rows this object writes are stamped at or after this
        self.until = until          # backfill partitions: orders modified after this belong to the next one
        self.reached_until = False
        self.columnar: Any = None   # the columnar engine's plan once it runs this pipeline's full passes
        self.engine_note: str | None = None  # why the columnar engine was asked for and declined
        self._engine_checked = False
        # order ids of batches prepared but not yet committed (the columnar engine's "is it new?" must see them:
        # the next page is prepared while the writer thread still stores the last one)
        self._pending = PendingOrders()
        self._span: tuple[datetime, datetime] | None = None  # see may_recall
        self._span_read: float | None = None

    @property
    def targets(self) -> list[Target]:
        if self._targets is None:
            self._targets = [Target(t) for t in self.cfg.targets]
        return self._targets

    def state(self) -> dict[str, Any]:
        return self.hub.get_state(self.cfg.name)

    def _setup_engine(self) -> None:
        """``engine: auto`` (the default) or ``columnar``: compile the mapping and rules for the columnar engine;
        if it declines, the row engine runs the pipeline — said once in the log (a warning when ``columnar`` was
        asked for by name)."""
        if self._engine_checked or self.cfg.engine == "row":
            return
        self._engine_checked = True
        from orderhub.flows.columnar_step import setup

        self.columnar, self.engine_note = setup(self)
        if self.engine_note:
            (log.warning if self.cfg.engine == "columnar" else log.info)(
                "pipeline %s: the columnar engine does not run it (%s); using the row engine", self.cfg.name,
                self.engine_note)

    def batches(self) -> Iterator[SourceBatch]:
        """Source batches from the committed bookmark; a backfill partition stops once it passed ``until``."""
        self._setup_engine()
        for sb in self.source.batches(self.state()):
            crash_point("source_batch")
            yield sb
            if self.reached_until:
                return

    # -- one batch ---------------------------------------------------------------------------------------------
    def prepare(self, sb: SourceBatch, *, now: datetime | None = None) -> tuple[BatchResult, SourceBatch]:
        """Canonicalize and decide one batch (pure CPU, no hub access; a columnar page asks the hub which of its
        orders exist)."""
        if sb.page is not None:
            from orderhub.flows.columnar_step import prepare

            result = prepare(self, sb, now=now)
            sb.page = None  # the page's columns are not needed any more (memory)
        else:
            result = self._prepare_rows(sb, now=now)
        self._hold_pending(result, sb)
        return result, sb

    def pending_token(self) -> int:
        """See :class:`PendingOrders`: taken before a page's hub lookup starts."""
        return self._pending.token()

    def pending_since(self, token: int, ids: Iterable[str]) -> set[str]:
        """Of ``ids``, those of a batch prepared before and not committed before ``token`` was taken."""
        return self._pending.since(token, ids)

    def _hold_pending(self, result: BatchResult, sb: SourceBatch) -> None:
        if self.columnar is None:  # only the columnar engine asks (the row engine's store reads the hub itself)
            return
        sb.pending = [o["order_id"] for o in result.orders] + list(getattr(result, "columnar_ids", ()))
        self._pending.hold(sb.pending)

    def _release_pending(self, sb: SourceBatch) -> None:
        if sb.pending:
            self._pending.release(sb.pending)

    def _prepare_rows(self, sb: SourceBatch, *, now: datetime | None = None) -> BatchResult:
        result = self.canonicalizer.run(sb.records, now=now)
        if self.until is not None:
            keep = [o for o in result.orders if o.get("updated_at") is None or o["updated_at"] <= self.until]
            if len(keep) < len(result.orders):
                self.reached_until = True
                result.orders = keep
        result.quarantined.extend(QuarantineEntry.of_source(e, self.mapping) for e in sb.errors)
        if self.rules is not None:
            self._stock_for(result.orders)
            self._recall_submissions(result.orders)
            self.rules.decide_batch(result.orders, self.context, skus=self.canonicalizer.skus,
                                    test_filter=self.canonicalizer.test_filter,
                                    duplicates=self.canonicalizer.duplicates)
        return result

    def encode(self, result: BatchResult) -> None:
        """A columnar page's hub rows (stamped with this run) encoded as COPY streams, ahead of :meth:`store`:
        :meth:`run` does it on an encoder thread for the batch after the one the writer thread stores, so that
        storing is only PostgreSQL's work. Idempotent; nothing to do for the row engine's batches."""
        batch = getattr(result, "columnar", None)
        if batch is None or result.hub_rows is not None:
            return
        rows = batch.rows(self.run_id)
        rows.encode()
        result.hub_rows = rows
        result.columnar = None  # its frame is in the COPY streams now (memory)

    def store(self, result: BatchResult, sb: SourceBatch) -> BatchOutcome:
        """Write a prepared batch to the hub (without the bookmark) and count it in the summary."""
        self.encode(result)
        rows = getattr(result, "hub_rows", None)  # a columnar page: its orders as COPY streams
        stats = self.hub.apply_batch(result, run_id=self.run_id, pipeline=self.cfg.name, columnar=rows)
        self._release_pending(sb)  # committed: the hub answers for these ids now
        if rows is not None:
            release_memory()
        s = self.summary
        s.batches += 1
        s.read += result.read if isinstance(result, ColumnarResult) else len(sb.records) + len(sb.errors)
        s.engine["row"] = s.engine.get("row", 0) + len(result.orders)
        if rows is not None:
            s.engine["columnar"] = s.engine.get("columnar", 0) + rows.count
        s.quarantined += stats.quarantined
        for k in ("created", "updated", "unchanged", "stale"):
            s.hub[k] += getattr(stats, k)
        for code, n in stats.hold_reasons.items():
            s.held[code] = s.held.get(code, 0) + n
        s.held_orders += stats.held
        for o in getattr(result, "held_columnar", ()):
            if len(s.held_list) < 200:
                s.held_list.append(o)
        for o in result.orders:
            if o.get("held") and len(s.held_list) < 200:
                s.held_list.append({"order_id": o["order_id"], "source_order_id": o["source_order_id"],
                                    "reasons": [r["code"] for r in o["hold_reasons"]],
                                    "message": "; ".join(r["message"] for r in o["hold_reasons"])})
        for q in result.quarantined:
            if len(s.quarantined_list) < 200:
                s.quarantined_list.append({"source_order_id": q.source_order_id, "reason_code": q.reason_code,
                                           "field": q.field, "message": mask_text(q.message)})
        deliver = [o for o in result.orders if not o.get("held")] if self.cfg.targets else []
        if self.cfg.targets and rows is not None:
            deliver += [{"order_id": i} for i in result.deliver_ids]
        return BatchOutcome(result, deliver, sb.state)

    def process(self, sb: SourceBatch, *, now: datetime | None = None) -> BatchOutcome:
        """Canonicalize, decide and store one batch in the hub (without the bookmark)."""
        return self.store(*self.prepare(sb, now=now))

    def _recall_submissions(self, orders: list[dict]) -> None:
        """Show the duplicate-submission rule the earlier submissions that earlier runs stored (same source,
        customer, created within its window): its memory is per run, so a restart after a crash, or the next
        scheduled run, would otherwise let a second submission (重复下单) through to the targets."""
        times = [o["created_at"] for o in orders if o.get("created_at") is not None]
        custs = {o["customer_id"] for o in orders if o.get("customer_id")}
        mobiles = {o["receiver_mobile"] for o in orders if not o.get("customer_id") and o.get("receiver_mobile")}
        if times:
            self.recall(min(times), max(times), custs, mobiles, {o.get("total_amount") for o in orders},
                        {o["order_id"] for o in orders})

    def _earlier(self) -> Any:
        """This source's hub orders that earlier runs stored: orders this Pipeline stored itself already went
        through the duplicate detector (a failed attempt with the same run id wrote before this object started,
        so its orders count as earlier)."""
        from sqlalchemy import and_, not_

        from orderhub.connectors.hub.schema import orders as ho

        return and_(ho.c.source_system == self.mapping.source,
                    not_(and_(ho.c.last_run_id == self.run_id, ho.c.hub_updated_at >= self._started)))

    def may_recall(self, first: datetime, last: datetime) -> bool:
        """Whether a batch created between ``first`` and ``last`` can have an earlier run's order within the
        duplicate window — asked before :meth:`recall` builds its query. The created-time range of the earlier
        orders is read once and again after :data:`SPAN_TTL_S` seconds (one index-range aggregate), so that a first
        sync into a hub without this source's orders asks nothing per batch. Orders another pipeline of the same
        source stores meanwhile are seen from the next reading on."""
        window = getattr(self.rules, "dup_window", None)
        if window is None:
            return False
        now = time.monotonic()
        if self._span_read is None or now - self._span_read > SPAN_TTL_S:
            self._span = self.hub.created_range(self._earlier())
            self._span_read = now
        if self._span is None:
            return False
        lo, hi = self._span
        return lo <= _aware(last) + window and hi >= _aware(first) - window

    def recall(self, first: datetime, last: datetime, custs: set, mobiles: set, amounts: set, mine: set) -> None:
        """:meth:`_recall_submissions` for a batch given as its created-time range, customers, mobiles (of orders
        without a customer), totals and order ids."""
        window = getattr(self.rules, "dup_window", None)
        if window is None or not (custs or mobiles) or not self.may_recall(first, last):
            return
        from sqlalchemy import and_, or_

        from orderhub.connectors.hub.schema import orders as ho

        utc = timezone.utc
        one_of = self.hub.one_of
        who = or_(one_of(ho.c.customer_id, custs),
                  and_(ho.c.customer_id.is_(None), one_of(ho.c.receiver_mobile, mobiles)))
        same_total = one_of(ho.c.total_amount, [a for a in amounts if a is not None])  # part of the fingerprint
        if None in amounts:
            same_total = or_(same_total, ho.c.total_amount.is_(None))
        where = and_(self._earlier(), ho.c.created_at >= (first - window).astimezone(utc),
                     ho.c.created_at <= (last + window).astimezone(utc), who, same_total)
        earlier = [i for chunk in self.hub.iter_order_ids(where=where) for i in chunk if i not in mine]
        for o in self.hub.load_orders(earlier):
            self.canonicalizer.duplicates.check(o)  # remembers it (an answer about a stored order is not needed)

    def _stock_for(self, orders: list[dict]) -> None:
        stock_targets = [t for t in self.targets if t.spec.stock]
        if not stock_targets or not orders:
            return
        skus = sorted({ln.get("canonical_sku") for o in orders for ln in o["lines"] if ln.get("canonical_sku")})
        snap: dict = {}
        for t in stock_targets:
            whs = t.spec.warehouses or sorted({o.get("warehouse_hint") for o in orders if o.get("warehouse_hint")} |
                                             ({self.rules.default_warehouse} if self.rules and
                                              self.rules.default_warehouse else set()) |
                                             {r.warehouse for r in (self.rules.routes if self.rules else [])})
            snap.update(t.stock(whs, skus))
        self.context.stock = snap

    def deliver(self, outcome: BatchOutcome) -> dict[str, dict[str, int]]:
        """Send the batch's deliverable orders to every target that has not confirmed their current revision."""
        per: dict[str, dict[str, int]] = {}
        if not outcome.deliver:
            return per
        unsent: dict[str, int] = {}
        ids = [o["order_id"] for o in outcome.deliver]
        revisions = {o["order_id"]: o for o in self.hub.load_orders(ids)}
        for t in self.targets:
            ledger = self.hub.delivered(t.name, ids)
            todo = []
            for o in outcome.deliver:
                row, cur = ledger.get(o["order_id"]), revisions.get(o["order_id"])
                if cur is None:
                    continue
                if row is None or row["result"] in ("failed", "held") or (
                        cur.get("hub_updated_at") and _aware(row["at"]) < _aware(cur["hub_updated_at"])):
                    todo.append(cur)
            counts = per.setdefault(t.name, {})
            if not todo:
                continue
            results = t.write(todo)
            self.hub.record_target_writes(self.run_id, t.name, results)
            for r in results:
                counts[r["result"]] = counts.get(r["result"], 0) + 1
            tc = self.summary.targets.setdefault(t.name, {})
            for k, v in counts.items():
                tc[k] = tc.get(k, 0) + v
            n = sum(1 for r in results if r.get("retryable"))
            if n:
                unsent[t.name] = n
        if unsent:  # the target was down, not the orders wrong: keep the bookmark, the next run sends them
            raise TransientError("not delivered because the target is unavailable: " + ", ".join(
                f"{k} {v} order(s)" for k, v in unsent.items()) + "; the source bookmark stays, the next run "
                "sends them again", code="target_unavailable")
        return per

    def commit(self, outcome: BatchOutcome) -> None:
        """Commit the source bookmark of a delivered batch."""
        crash_point("bookmark")
        if outcome.state:
            self.hub.set_state(self.cfg.name, outcome.state, run_id=self.run_id)

    # -- the whole run -----------------------------------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def gc_tuned() -> Iterator[None]:
        """A batch allocates a few hundred thousand small objects that live until it is stored: with the default
        thresholds the cyclic collector runs thousands of times per run, each time walking every live batch.
        During a run, objects from start-up are frozen (never scanned again) and young collections run 100×
        less often (measured: a fifth of a 200k-order sync's time). Nested and concurrent runs share one
        setting; the last one out restores it."""
        import gc

        with _GC_LOCK:
            if _GC_USERS[0] == 0:
                _GC_SAVED[:] = gc.get_threshold()
                gc.freeze()
                gc.set_threshold(70_000, _GC_SAVED[1], _GC_SAVED[2])
            _GC_USERS[0] += 1
        try:
            yield
        finally:
            with _GC_LOCK:
                _GC_USERS[0] -= 1
                if _GC_USERS[0] == 0:
                    gc.set_threshold(*_GC_SAVED)
                    gc.unfreeze()

    def _read_ahead(self, stop: threading.Event) -> Iterator[SourceBatch]:
        """The source's batches read on a reader thread, each columnar page then canonicalized on a second thread
        (:func:`~orderhub.flows.columnar_step.canonicalize_ahead`: connectorx, Polars and the compiled hashing
        release the GIL), while this one runs the stateful rules on the page before. Each stage is one page ahead
        of the next, no more."""
        from orderhub.flows.columnar_step import canonicalize_ahead

        def canonicalized(pages: Iterator[SourceBatch]) -> Iterator[SourceBatch]:
            try:
                for sb in pages:
                    if sb.page is not None and self.columnar is not None:
                        canonicalize_ahead(self, sb)
                    yield sb
            finally:
                pages.close()

        def drop(sb: SourceBatch) -> None:  # canonicalized but never prepared (the run stopped)
            if sb.ahead is not None:
                sb.ahead.discard(self)
                sb.ahead = None

        name = self.cfg.name
        pages = _threaded(self.batches, stop, f"orderhub-reader-{name}")
        return _threaded(lambda: canonicalized(pages), stop, f"orderhub-canonical-{name}", drop=drop)

    def run(self, *, progress: Callable[[RunSummary], None] | None = None) -> RunSummary:
        """The whole run. Batches are prepared (canonicalized and decided) on this thread — a columnar page is read
        and canonicalized ahead on threads of their own (:meth:`_read_ahead`), so this one runs only its stateful
        rules; the hub write, the deliveries and the bookmark of each batch happen, in order, on one writer thread,
        so database work overlaps the next batch's CPU work, and a columnar page's COPY streams are encoded in
        between, on an encoder thread, so that the writer only sends them. A failure anywhere stops all and fails
        the run; committed bookmarks always match what the hub and the targets hold."""
        t0 = time.perf_counter()
        self.hub.start_run(self.run_id, self.cfg.name)
        work: queue.Queue = queue.Queue(maxsize=1)
        ready: queue.Queue = queue.Queue(maxsize=1)
        failure: list[BaseException] = []
        stop = threading.Event()

        def encoder() -> None:
            while True:
                item = work.get()
                if item is not None and not stop.is_set():
                    try:
                        self.encode(item[0])
                    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                        failure.append(exc)
                        stop.set()
                if item is None or not stop.is_set():
                    ready.put(item)   # the writer takes every item until None
                if item is None:
                    return

        def writer() -> None:
            while True:
                item = ready.get()
                if item is None:
                    return
                if stop.is_set():
                    continue
                try:
                    out = self.store(*item)
                    self.deliver(out)
                    self.commit(out)
                    if progress:
                        progress(self.summary)
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    failure.append(exc)
                    stop.set()

        th = threading.Thread(target=writer, name=f"orderhub-writer-{self.cfg.name}", daemon=True)
        enc = threading.Thread(target=encoder, name=f"orderhub-encoder-{self.cfg.name}", daemon=True)
        with self.gc_tuned():
            th.start()
            enc.start()
            try:
                self._setup_engine()
                for sb in (self._read_ahead(stop) if self.columnar is not None else self.batches()):
                    if stop.is_set():
                        break
                    prepared = self.prepare(sb)
                    while not stop.is_set():
                        try:
                            work.put(prepared, timeout=0.2)
                            break
                        except queue.Full:
                            continue
            except BaseException as exc:
                failure.insert(0, exc)
                stop.set()
            finally:
                work.put(None)
                enc.join()
                th.join()
                for t in self._targets or []:
                    t.close()
        self.summary.duration_s = time.perf_counter() - t0
        if failure:
            self.summary.status = "failed"
            self.hub.finish_run(self.run_id, "failed", self.summary.as_dict())
            raise failure[0]
        self.summary.status = "completed"
        self.hub.finish_run(self.run_id, "completed", self.summary.as_dict())
        return self.summary


def _threaded(make: Callable[[], Iterator[Any]], stop: threading.Event, name: str, *,
              drop: Callable[[Any], None] | None = None) -> Iterator[Any]:
    """The items of ``make()``, produced on a thread of their own, one item ahead of the consumer. An error there
    is raised again here; ``stop`` (or closing this generator) ends the thread, and ``drop`` gets each item
    produced but never consumed."""
    items: queue.Queue = queue.Queue(maxsize=1)
    halt = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not (halt.is_set() or stop.is_set()):
            try:
                items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = make()
        try:
            for item in it:
                if not put(item):
                    if drop is not None:
                        drop(item)
                    return
            put(end)
        except BaseException as exc:  # noqa: BLE001 - raised again on the consuming thread
            put(exc)
        finally:
            it.close()

    th = threading.Thread(target=produce, name=name, daemon=True)
    th.start()
    try:
        while True:
            try:
                item = items.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set() or (not th.is_alive() and items.empty()):  # a dead producer put all it had
                    return
                continue
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        halt.set()
        th.join()
        while drop is not None and not items.empty():
            item = items.get_nowait()
            if item is not end and not isinstance(item, BaseException):
                drop(item)


def _aware(v: Any) -> Any:
    if isinstance(v, datetime) and v.tzinfo is None:
        return v.replace(tzinfo=timezone.utc)
    return v
