"""Prefect flows of orderhub — thin orchestration over :mod:`orderhub.flows.pipeline`.

* ``orderhub-sync`` (:func:`sync`): one pipeline run, one task per batch and stage (canonicalize, store, deliver,
  commit bookmark); the bookmark of a batch is committed only after every target confirmed it. A batch's hub
  write, deliveries and bookmark run while the next batch is read and canonicalized.
* ``orderhub-backfill`` (:func:`backfill`): a date range split into partitions, each a separate bookmark
  namespace, run concurrently under the partner's global concurrency limit.
* ``orderhub-replay`` (:func:`replay_flow`): held and quarantined orders after a fix, each written exactly once.

Each run publishes a summary artifact and a table of held/quarantined orders (:mod:`orderhub.flows.artifacts`).
Retries: connectors retry transient faults themselves (tenacity, one policy); these tasks add Prefect retries
with jitter for a whole stage. A stage that still fails fails the run — nothing after it moves and the bookmark
stays where the data is — and the failed-run automation alerts ops (``infra/alerts.py``).
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, Iterator

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.runtime import flow_run

from orderhub.connectors.common.secrets import install_log_redaction
from orderhub.flows.pipeline import Pipeline, SourceBatch, load_pipeline

install_log_redaction()
SHANGHAI = "Asia/Shanghai"


class Handle:
    """Carries a batch between tasks without Prefect walking through thousands of records for futures."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<{type(self.value).__name__}>"


TASK = dict(cache_policy=NO_CACHE, persist_result=False, retry_jitter_factor=0.5)


@task(name="canonicalize", retries=2, retry_delay_seconds=[2, 10], **TASK)
def prepare_batch(p: Handle, batch: Handle) -> Handle:
    """Canonical layer and rules of one batch (CPU; reads the hub only to recall earlier submissions)."""
    return Handle(p.value.prepare(batch.value))


@task(name="store", retries=2, retry_delay_seconds=[2, 10], **TASK)
def store_batch(p: Handle, prepared: Handle) -> Handle:
    """Hub write of one canonicalized batch (idempotent: a retry finds the orders unchanged)."""
    return Handle(p.value.store(*prepared.value))


@task(name="deliver", retries=3, retry_delay_seconds=[5, 30, 120], **TASK)
def deliver_batch(p: Handle, out: Handle) -> dict:
    """Send the batch's new/changed, not-held orders to every target (idempotent; the ledger skips confirmed)."""
    return p.value.deliver(out.value)


@task(name="commit-bookmark", retries=2, retry_delay_seconds=[1, 5], **TASK)
def commit_batch(p: Handle, out: Handle) -> None:
    p.value.commit(out.value)


def _partner_slot(partner: str | None):  # noqa: ANN202
    if not partner:
        return contextlib.nullcontext()
    from orderhub.infra.concurrency import partner_slot

    return partner_slot(partner)


def _batches(p: Pipeline) -> Iterator[SourceBatch]:
    """The source's batches, each fetch holding one slot of the partner's global concurrency limit."""
    it = iter(p.batches())
    while True:
        with _partner_slot(p.cfg.partner):
            try:
                sb = next(it)
            except StopIteration:
                return
        yield sb


def _run_id(prefix: str) -> str | None:
    rid = flow_run.get_id()
    return f"{prefix}-{str(rid)[:8]}" if rid else None


def _publish(summary: dict) -> None:
    try:
        from orderhub.flows.artifacts import publish_run_summary

        publish_run_summary(summary)
    except Exception as exc:  # noqa: BLE001 - an artifact must never fail a sync
        get_run_logger().warning("could not publish the run summary artifact: %s", exc)


def run_pipeline(p: Pipeline, *, overlap: bool = False) -> dict:
    """One run as tasks per batch. With ``overlap`` the hub write, deliveries and bookmark of a batch run on the
    task runner's thread while this thread reads and canonicalizes the next one (as ``orderhub sync`` does): one
    batch in flight, stored and committed in order; a batch that fails stops the run before the next is stored."""
    log = get_run_logger()
    p.hub.start_run(p.run_id, p.cfg.name)
    h = Handle(p)
    pending: tuple = ()  # the previous batch's store, deliver and commit futures, when overlapping

    def finish(futures: tuple) -> None:
        for f in futures:  # in order: a failed store raises its own error (its dependants never ran)
            f.result()

    def progress() -> None:
        s = p.summary
        log.info("%s: %d read, hub %s, %d held, %d quarantined", p.cfg.name, s.read, s.hub, s.held_orders,
                 s.quarantined)

    try:
        with p.gc_tuned():
            for sb in _batches(p):
                prepared = prepare_batch(h, Handle(sb))
                if not overlap:
                    out: Handle = store_batch(h, prepared)
                    deliver_batch(h, out)
                    commit_batch(h, out)
                    progress()
                    continue
                if pending:
                    finish(pending)  # raises if the previous batch failed: nothing after it is stored
                    progress()
                stored = store_batch.submit(h, prepared)
                delivered = deliver_batch.submit(h, stored)
                pending = (stored, delivered, commit_batch.submit(h, stored, wait_for=[delivered]))
            if pending:
                finish(pending)
                pending = ()
                progress()
    except BaseException:
        for f in pending:  # let the batch in flight finish (or fail) before the run is marked failed
            with contextlib.suppress(BaseException):
                f.wait(timeout=600)
        p.summary.status = "failed"
        p.hub.finish_run(p.run_id, "failed", p.summary.as_dict())
        _publish(p.summary.as_dict())
        raise
    finally:
        for t in p._targets or []:
            t.close()
    p.summary.status = "completed"
    p.hub.finish_run(p.run_id, "completed", p.summary.as_dict())
    summary = p.summary.as_dict()
    _publish(summary)
    log.info("%s completed: read %d, created %d, updated %d, unchanged %d, held %d, quarantined %d, targets %s",
             p.cfg.name, summary["read"], summary["hub"]["created"], summary["hub"]["updated"],
             summary["hub"]["unchanged"], summary["held_orders"], summary["quarantined"], summary["targets"])
    return summary


@flow(name="orderhub-sync", log_prints=False)
def sync(pipeline: str) -> dict:
    """Run one pipeline (path of its YAML file) end to end."""
    cfg = load_pipeline(pipeline)
    return run_pipeline(Pipeline(cfg, run_id=_run_id(cfg.name)), overlap=True)


@task(name="backfill-partition", retries=1, retry_delay_seconds=[30], **TASK)
def backfill_partition(pipeline: str, start: str, end: str, start_key: str) -> dict:
    cfg = load_pipeline(pipeline)
    part = f"{cfg.name}.backfill.{start[:10]}"
    cfg = replace(cfg, name=part, source_config={**cfg.source_config, start_key: start})
    p = Pipeline(cfg, run_id=f"{part}-{(flow_run.get_id() or 'local')!s:.8}",
                 until=datetime.fromisoformat(end))
    return run_pipeline(p)


@flow(name="orderhub-backfill", log_prints=False)
def backfill(pipeline: str, start: date, end: date, partition_days: int = 1, start_key: str | None = None) -> list:
    """Re-read ``[start, end)`` in partitions of ``partition_days`` days (Asia/Shanghai), each with its own
    bookmark namespace (``<pipeline>.backfill.<day>``) so the scheduled sync's bookmark is never touched.
    Partitions run concurrently; the partner's global concurrency limit caps calls in flight."""
    from zoneinfo import ZoneInfo

    cfg = load_pipeline(pipeline)
    key = start_key or ("start" if cfg.source_connector == "erp_sql" else "start_date")
    tz = ZoneInfo(SHANGHAI)
    futures = []
    day = start
    while day < end:
        nxt = min(day + timedelta(days=partition_days), end)
        a = datetime(day.year, day.month, day.day, tzinfo=tz).isoformat()
        b = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).isoformat()
        futures.append(backfill_partition.submit(pipeline, a, b, key))
        day = nxt
    return [f.result() for f in futures]


@flow(name="orderhub-replay", log_prints=False)
def replay_flow(pipeline: str, what: str = "both") -> dict:
    """Replay held and/or quarantined orders of a pipeline after a fix; each is written exactly once."""
    from orderhub.flows.replay import replay

    cfg = load_pipeline(pipeline)
    summary = replay(cfg, what=what, run_id=_run_id(f"{cfg.name}-replay")).as_dict()
    _publish(summary)
    return summary


@flow(name="orderhub-watch", log_prints=False)
def watch(pipeline: str, every_seconds: float = 2.0, max_minutes: float = 55.0) -> dict:
    """Near real time: one long-running flow run that polls the pipeline's source every ``every_seconds`` and
    carries whatever changed straight through to the targets, for ``max_minutes`` (the deployment's schedule
    starts the next watch). No process start per poll, so a new order reaches the ERP within seconds."""
    import time

    cfg = load_pipeline(pipeline)
    p = Pipeline(cfg, run_id=_run_id(f"{cfg.name}-watch"))
    log = get_run_logger()
    p.hub.start_run(p.run_id, cfg.name)
    deadline = time.monotonic() + max_minutes * 60
    polls = 0
    try:
        while time.monotonic() < deadline:
            polls += 1
            before = p.summary.hub["created"] + p.summary.hub["updated"]
            for sb in _batches(p):
                out = p.process(sb)
                p.deliver(out)
                p.commit(out)
            moved = p.summary.hub["created"] + p.summary.hub["updated"] - before
            if moved:
                log.info("%s: %d orders created/updated this poll; totals %s, targets %s", cfg.name, moved,
                         p.summary.hub, p.summary.targets)
            time.sleep(every_seconds)
    except BaseException:
        p.summary.status = "failed"
        p.hub.finish_run(p.run_id, "failed", p.summary.as_dict())
        _publish(p.summary.as_dict())
        raise
    p.summary.status = "completed"
    p.hub.finish_run(p.run_id, "completed", {**p.summary.as_dict(), "polls": polls})
    summary = p.summary.as_dict()
    _publish(summary)
    return summary
