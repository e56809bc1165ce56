"""One columnar page through the pipeline: the engine decides the clean new orders, the row engine the rest.

:func:`prepare` is :meth:`Pipeline.prepare` for a page the reader returned as Arrow columns
(:class:`~orderhub.connectors.erp_sql.reader.ArrowPage`):

1. :func:`orderhub.transforms.columnar.canonicalize` maps, checks and decides the page as columns, and the hub is
   asked which of its orders exist (:func:`canonicalize_ahead`: no state of the run, so ``orderhub sync`` runs it
   a page ahead, on a thread of its own);
2. orders already in the hub, or appearing twice in the page, join the rows the engine left to the row engine;
3. those rows are read again through the row reader and canonicalized by the row engine, record by record (their
   quarantine entries are the row engine's own);
4. the stateful rules — duplicate submissions (after recalling earlier runs' orders), merge hints — run over every
   order of the page in read order, on the row engine's memories: a row-engine order through
   :meth:`RuleSet.decide`, a columnar one through the same two steps on its fingerprint and receiver;
5. auto-confirmation and the stored lines follow from the final hold.

The result is a :class:`~orderhub.transforms.canonical.BatchResult` (the row engine's orders and quarantine) that
also carries the columnar orders; :meth:`Pipeline.encode` turns them into COPY streams, which
:meth:`HubStore.apply_batch` sends in the batch's one transaction.
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from orderhub.connectors.common.errors import RecordError
from orderhub.transforms.canonical import BatchResult, QuarantineEntry, canonicalize as row_canonicalize
from orderhub.transforms.status import AWAITING_CONFIRMATION, CONFIRMED


#: Polars' allocator (its own jemalloc, configured from this variable when Polars is first imported): one arena
#: instead of one per core, freed pages returned after 200 ms by a background thread instead of after 10 s. Pages
#: of 5,000 orders allocate and free tens of MB each; measured on the benchmark: 30 MB less peak RSS, no slower.
#: A value the user set is kept.
POLARS_MALLOC_CONF = "narenas:1,background_thread:true,dirty_decay_ms:200,muzzy_decay_ms:0"


def _allocator_defaults() -> None:
    if "polars" not in sys.modules:
        os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_MALLOC_CONF)


def release_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing). Called after
    each columnar batch is stored: the Arrow and COPY buffers of a page are freed in the writer thread, and glibc
    keeps a thread's freed blocks in that thread's arena (measured: 40 MB of the benchmark's peak RSS)."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


def setup(pipe: Any) -> tuple[Any, str | None]:
    """The columnar plan for this pipeline, or why not (the row engine then runs it)."""
    _allocator_defaults()  # before anything imports Polars
    from orderhub.flows.pipeline import ErpSqlSource
    from orderhub.transforms import columnar

    if not isinstance(pipe.source, ErpSqlSource):
        return None, "the source is not erp_sql"
    if pipe.until is not None:
        return None, "backfill partitions"
    if pipe.hub.dialect != "postgresql":
        return None, "the hub is not on PostgreSQL"
    reader = pipe.source.reader
    try:
        why = reader.columnar_reason()
        if why:
            return None, why
        s = reader.settings
        name = reader.partition_names[0]
        htypes, ltypes = reader.column_types(name)
        plan = columnar.plan(
            pipe.mapping, pipe.rules, skus=pipe.skus, test_filter=pipe.canonicalizer.test_filter,
            customer_levels=pipe.context.customer_levels, credit=pipe.context.credit is not None,
            stock=any(t.stock for t in pipe.cfg.targets), header_types=htypes, line_types=ltypes,
            zone=s.timezone, lines_field=s.lines_field, header_key=s.header_key, join_key=s.join_key)
        for other in reader.partition_names[1:]:  # every partition must have the same columns
            if _shape(reader.column_types(other)) != _shape((htypes, ltypes)):
                return None, f"partition {other} has other columns than {name}"
    except columnar.Declined as exc:
        return None, str(exc)
    reader.arrow = True
    return plan, None


def _shape(types: tuple[dict, dict]) -> tuple:
    return tuple(tuple((k, repr(v)) for k, v in side.items()) for side in types)


@dataclass
class ColumnarBatch:
    """What :func:`prepare` hands to :meth:`Pipeline.store` for the columnar orders."""

    plan: Any
    frame: Any            # decided rows with status, held, hold_reasons, merge_hint
    shop: str
    now: datetime
    holds: list[tuple[str, str, str]]   # (order_id, code, message)

    def rows(self, run_id: str) -> Any:
        import polars as pl

        from orderhub.connectors.hub.store import ColumnarRows
        from orderhub.transforms import columnar

        now = datetime.now(timezone.utc)
        orders, lineage = columnar.hub_frames(self.plan, self.frame, run_id=run_id, now=now, shop=self.shop)
        rv = self.plan.rules.label if self.plan.rules is not None else None
        holds, lin = [], []
        if not self.holds:  # the common page
            return ColumnarRows(orders, lineage, holds, lin)
        held = orders.filter(pl.col("order_id").is_in([h[0] for h in self.holds]))
        by_id = dict(zip(held["order_id"].to_list(), zip(held["source_order_id"].to_list(),
                                                          held["raw_hash"].to_list())))
        for oid, code, msg in self.holds:
            sid, h = by_id[oid]
            holds.append({"order_id": oid, "reason_code": code, "message": msg, "ruleset_version": rv,
                          "run_id": run_id, "created_at": now})
            lin.append({"order_id": oid, "run_id": run_id, "event": "held", "source_system": self.plan.mapping.source,
                        "source_order_id": sid, "raw_hash": h, "mapping_version": self.plan.mapping.label,
                        "ruleset_version": rv, "target": None, "result": None, "target_ref": None,
                        "message": f"{code}: {msg}", "at": now})
        return ColumnarRows(orders, lineage, holds, lin)


@dataclass
class ColumnarResult(BatchResult):
    """A :class:`BatchResult` (the row engine's share) plus the columnar orders."""

    columnar: Any = None
    read: int = 0
    held_columnar: list[dict] = field(default_factory=list)
    deliver_ids: list[str] = field(default_factory=list)
    columnar_ids: list[str] = field(default_factory=list)   # the orders the columnar engine decided
    hub_rows: Any = None       # the columnar orders as encoded COPY streams (Pipeline.encode)


def _lookups() -> concurrent.futures.ThreadPoolExecutor:
    """One helper thread for the hub lookups that overlap a page's canonicalization."""
    global _LOOKUPS
    if _LOOKUPS is None:
        _LOOKUPS = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="orderhub-hub-lookup")
    return _LOOKUPS


_LOOKUPS: concurrent.futures.ThreadPoolExecutor | None = None


@dataclass
class Ahead:
    """A page canonicalized before :func:`prepare` takes it (on the canonical thread, while the run's thread
    prepares the page before): its order ids, the canonical frame, and the hub lookup started for it."""

    ids: list[str | None]
    frame: Any
    lookup: concurrent.futures.Future | None
    token: int                 # Pipeline.pending_token() taken before the lookup started
    now: datetime

    def discard(self, pipe: Any) -> None:
        pipe.pending_since(self.token, ())


def canonicalize_ahead(pipe: Any, sb: Any, *, now: datetime | None = None) -> None:
    """The stateless part of :func:`prepare` for a columnar page, into ``sb.ahead``: order ids, the hub lookup of
    which of them exist (on a helper thread: the database work overlaps the canonicalization), and
    :func:`orderhub.transforms.columnar.canonicalize`. It reads no state of the run, so the canonical thread runs
    it a page ahead (Pipeline._read_ahead)."""
    import polars as pl

    from orderhub.transforms import columnar

    page = sb.page
    if not len(page.header):
        return
    now = now or datetime.now(timezone.utc)
    ids = columnar.order_ids(pipe.columnar, page.header, pipe.mapping.source, page.partition)
    lookup = [i for i in ids if i is not None]
    token = pipe.pending_token()   # before the lookup: a batch committed after it is in pending_since
    try:
        existing = _lookups().submit(pipe.hub.existing_ids, lookup) if lookup else None
        f = columnar.canonicalize(pipe.columnar, page.header, page.lines, shop=page.partition, now=now)
        f = f.with_columns(order_id=pl.Series(ids, dtype=pl.String))
        f = f.with_columns(_ok=pl.col("_ok") & pl.col("order_id").is_not_null() & ~pl.col("order_id").is_duplicated())
    except BaseException:
        pipe.pending_since(token, ())
        raise
    sb.ahead = Ahead(ids, f, existing, token, now)


def prepare(pipe: Any, sb: Any, *, now: datetime | None = None) -> ColumnarResult:
    import polars as pl

    page = sb.page
    mapping, rules = pipe.mapping, pipe.rules
    reader = pipe.source.reader
    pk = reader.settings.primary_key
    out = ColumnarResult(read=len(page.header))
    ahead, sb.ahead = sb.ahead, None
    if ahead is not None and now is not None and ahead.now != now:  # a caller's own clock: canonicalize again
        ahead.discard(pipe)
        ahead = None
    if ahead is None:
        canonicalize_ahead(pipe, sb, now=now)
        ahead, sb.ahead = sb.ahead, None
    if ahead is None:  # an empty page
        return out
    now = ahead.now
    f = ahead.frame
    # already in the hub (the lookup), or in a batch prepared before this one that the hub had not committed
    # when the lookup started
    known = pipe.pending_since(ahead.token, [i for i in ahead.ids if i is not None])
    if ahead.lookup is not None:
        known |= ahead.lookup.result()
    if known:
        f = f.with_columns(_ok=pl.col("_ok") & ~pl.col("order_id").is_in(list(known)))
    # the row engine's share, read again as records and canonicalized one by one (read order kept)
    keys = f.filter(~pl.col("_ok"))[pk].to_list()
    row_orders: dict[Any, dict] = {}
    if keys:
        batch = reader.fetch_orders(page.partition, keys)
        skus = pipe.canonicalizer.skus
        for rec in batch:
            try:
                row_orders[rec[pk]] = row_canonicalize(rec, mapping, skus=skus, now=now)
            except RecordError as exc:
                out.quarantined.append(QuarantineEntry.of_record(rec, exc, mapping))
        out.quarantined.extend(QuarantineEntry.of_source(e, mapping) for e in batch.errors)
    ok = f["_ok"].to_list()
    pks = f[pk].to_list()
    out.orders = [row_orders[k] for k, good in zip(pks, ok) if not good and k in row_orders]
    n = len(ok)
    held = [False] * n
    hints: list[str | None] = [None] * n
    holds: list[tuple[str, str, str]] = []
    if rules is not None:
        _stateful(pipe, f, ok, pks, row_orders, held, hints, holds)
    f = f.with_columns(held=pl.Series(held, dtype=pl.Boolean), merge_hint=pl.Series(hints, dtype=pl.String))
    f = f.filter(pl.col("_ok"))
    reasons = {oid: json.dumps([{"code": code, "message": msg}], ensure_ascii=False) for oid, code, msg in holds}
    status = pl.col("status")
    if rules is not None and rules.auto_confirm:
        status = pl.when(~pl.col("held") & (status == AWAITING_CONFIRMATION)).then(pl.lit(CONFIRMED)).otherwise(status)
    f = f.with_columns(status=status, hold_reasons=pl.col("order_id").replace_strict(reasons, default=None,
                                                                                      return_dtype=pl.String))
    out.columnar = ColumnarBatch(pipe.columnar, f, page.partition, now, holds)
    out.columnar_ids = f["order_id"].to_list()
    if holds:
        held_rows = f.filter(pl.col("held"))
        by_sid = dict(zip(held_rows["order_id"].to_list(), held_rows["c_source_order_id"].to_list()))
        out.held_columnar = [{"order_id": oid, "source_order_id": by_sid[oid], "reasons": [code], "message": msg}
                             for oid, code, msg in holds]
        held_ids = set(by_sid)
        out.deliver_ids = [i for i in out.columnar_ids if i not in held_ids]
    else:
        out.deliver_ids = list(out.columnar_ids)
    return out


def _stateful(pipe: Any, f: Any, ok: list[bool], pks: list[Any], row_orders: dict, held: list[bool],
              hints: list[str | None], holds: list) -> None:
    """Duplicate submissions and merge hints for the whole page in read order, on the row engine's memories."""
    import polars as pl

    rules, ctx, canon = pipe.rules, pipe.context, pipe.canonicalizer
    # earlier runs' submissions first (Pipeline._recall_submissions over the page's orders)
    mine = f.filter(pl.col("_ok"))
    times = [t for t in (mine["c_created_at"].min(), mine["c_created_at"].max()) if t is not None] \
        if "c_created_at" in mine.columns and len(mine) else []
    row = list(row_orders.values())
    times += [o["created_at"] for o in row if o.get("created_at") is not None]
    if times and pipe.may_recall(min(times), max(times)):
        cust = mine["c_customer_id"].to_list() if "c_customer_id" in mine.columns else [None] * len(mine)
        mob = mine["c_receiver_mobile"].to_list() if "c_receiver_mobile" in mine.columns else [None] * len(mine)
        tot = mine["c_total_amount"].unique().to_list()
        custs = {x for x in cust if x} | {o["customer_id"] for o in row if o.get("customer_id")}
        mobiles = {m for c_, m in zip(cust, mob) if not c_ and m} | {
            o["receiver_mobile"] for o in row if not o.get("customer_id") and o.get("receiver_mobile")}
        amounts = set(tot) | {o.get("total_amount") for o in row}
        pipe.recall(min(times), max(times), custs, mobiles, amounts,
                    set(mine["order_id"].to_list()) | {o["order_id"] for o in row})
    dd = canon.duplicates if rules.dup_window is not None else None
    if dd is not None:
        dd.window = rules.dup_window
    tf = rules.test_filter or canon.test_filter
    skus = canon.skus
    hold_rows = f.with_row_index("_i").filter(pl.col("_ok") & pl.col("_holdable"))
    get = lambda c: hold_rows[c].to_list() if c in hold_rows.columns else [None] * len(hold_rows)  # noqa: E731
    todo = dict(zip(get("_i"), zip(get("_dupkey"), get("c_created_at"), get("order_id"), get("c_source_order_id"),
                                   get("c_receiver_name"), get("c_receiver_mobile"), get("c_receiver_address"))))
    minutes = int(dd.window.total_seconds() // 60) if dd is not None else 0
    merge = rules.merge_min
    # a fingerprint or receiver the memory has not seen yet can only be remembered: no duplicate, and no merge
    # hint unless one order suffices — what check_key and merge_hint answer then, without their calls and scans
    # (most orders of a bulk sync)
    dgroups, dadd, dwindow = (dd.memory.groups, dd.memory.add, dd.window) if dd is not None else (None, None, None)
    rgroups, radd, mwindow = ctx.receivers.groups, ctx.receivers.add, rules.merge_window
    for i, (good, key) in enumerate(zip(ok, pks)):
        if not good:
            o = row_orders.get(key)
            if o is not None:
                rules.decide(o, ctx, skus=skus, test_filter=tf, duplicates=dd)
            continue
        t = todo.get(i)
        if t is None:
            continue  # not holdable: no state to keep
        fp, at, oid, sid, name, mob, addr = t
        if dd is not None:
            if fp not in dgroups:
                dadd(fp, (at, oid, sid), dwindow)
            else:
                dup = dd.check_key(fp, at, oid, sid)
                if dup is not None:
                    held[i] = True
                    holds.append((oid, "duplicate_submission",
                                  f"same customer, lines and amount as order {dup} within {minutes} min"))
        if merge:
            receiver = (name, mob, addr)
            if merge > 1 and receiver not in rgroups and (name or mob or addr):
                radd(receiver, (at, oid), mwindow)
            else:
                hints[i] = rules.merge_hint(ctx, receiver, at, oid)
