"""Replay held and quarantined orders after a fix (a corrected mapping, a new rule set, credit released).

Quarantined raw records go through the pipeline's current mapping and rules again; held orders are re-decided
from their stored canonical form. Whatever now passes is written to the hub and delivered to the targets —
exactly once, because the delivery ledger and the targets' idempotency keys make a second replay a no-op.
Records that still fail stay quarantined (their ``seen_count`` grows); a replayed quarantine entry is marked
``replayed``.
"""
from __future__ import annotations

import json
import time
from decimal import Decimal

from orderhub.flows.pipeline import BatchOutcome, Pipeline, PipelineConfig, RunSummary, SourceBatch


def replay(cfg: PipelineConfig, *, what: str = "both", run_id: str | None = None, hub=None) -> RunSummary:  # noqa: ANN001
    p = Pipeline(cfg, run_id=run_id, hub=hub)
    t0 = time.perf_counter()
    p.hub.start_run(p.run_id, cfg.name)
    try:
        if what in ("quarantined", "both"):
            entries = [q for q in p.hub.quarantine_list(state="open", source=p.mapping.source, limit=100_000)]
            for i in range(0, len(entries), cfg.batch_size):
                chunk = entries[i:i + cfg.batch_size]
                records = [json.loads(q["raw"], parse_float=Decimal) for q in chunk]
                out = p.process(SourceBatch(records, None))
                p.deliver(out)
                still = {q.source_order_id for q in out.result.quarantined}
                done = [q["id"] for q in chunk if q["source_order_id"] not in still]
                if done:
                    p.hub.resolve_quarantine(done, "replayed", p.run_id)
        if what in ("held", "both") and p.rules is not None:
            held = [r["order_id"] for r in p.hub.held_orders(limit=100_000)]
            for i in range(0, len(held), cfg.batch_size):
                orders = p.hub.load_orders(held[i:i + cfg.batch_size])
                p.rules.decide_batch(orders, p.context, skus=p.canonicalizer.skus)
                from orderhub.transforms.canonical import BatchResult

                res = BatchResult(orders=orders)
                stats = p.hub.apply_batch(res, run_id=p.run_id, pipeline=cfg.name)
                p.summary.hub["updated"] += stats.updated
                p.summary.hub["unchanged"] += stats.unchanged
                p.summary.read += len(orders)
                p.deliver(BatchOutcome(res, [o for o in orders if not o.get("held")], None))
    except BaseException:
        p.summary.status = "failed"
        p.hub.finish_run(p.run_id, "failed", p.summary.as_dict())
        raise
    p.summary.status = "completed"
    p.summary.duration_s = time.perf_counter() - t0
    p.hub.finish_run(p.run_id, "completed", p.summary.as_dict())
    return p.summary

