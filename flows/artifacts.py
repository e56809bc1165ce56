"""What a run shows in the Prefect UI: a summary (markdown artifact) and a table of held/quarantined orders.

:func:`publish_run_summary` takes the summary of one run — the dict of ``RunSummary.as_dict()``
(flows/pipeline.py) — and publishes two **keyed** artifacts, so the Artifacts page keeps one versioned entry per
pipeline (keys: lowercase letters, digits and dashes; prefect.md §7):

* ``sync-summary-<pipeline>`` (markdown): orders read, quarantined, created/updated/unchanged in the hub,
  held with reasons, and created/updated/unchanged/held/failed per target;
* ``sync-held-quarantined-<pipeline>`` (table): one row per held order or quarantined record — kind, order id,
  source id, reason code(s), field, message. Messages go through ``redact`` (secrets) and ``mask_text``
  (phone numbers); receiver fields, if a row carries them, are masked too.

The summary dict (missing keys count as 0 / empty)::

    {
      "pipeline": "taobao-shop-a",          # required
      "run_id": "…", "status": "completed", "duration_s": 12.3, "batches": 3,
      "read": 120,                          # records read from the source
      "quarantined": 2,                     # records that could not become orders
      "hub": {"created": 100, "updated": 10, "unchanged": 8, "stale": 0},
      "held": {"credit_limit": 3, "out_of_stock": 1},   # reason code → orders (an order counts once per reason)
      "held_orders": 4,                     # orders held (int); a list here is read as held_list
      "targets": {"erp": {"created": 90, "updated": 10, "unchanged": 0, "held": 0, "failed": 1}},
      "held_list": [{"order_id", "source_order_id", "reasons": ["credit_limit"] | [{"code", "message"}],
                     "message"}],
      "quarantined_records": [{"source_order_id" | "record_id", "reason_code", "field", "message"}],
    }
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from orderhub.connectors.common.privacy import mask_address, mask_name, mask_phone, mask_text
from orderhub.connectors.common.secrets import redact

TARGET_COLUMNS = ("created", "updated", "unchanged", "held", "failed")
TABLE_COLUMNS = ("kind", "order_id", "source_id", "reason_code", "field", "message")
MAX_TABLE_ROWS = 500
_MASKERS = {"receiver_mobile": mask_phone, "receiver_phone": mask_phone, "receiver_address": mask_address,
            "receiver_name": mask_name, "customer_name": mask_name}


def artifact_slug(pipeline: str) -> str:
    """``Taobao_Shop A`` → ``taobao-shop-a`` (artifact keys allow lowercase letters, digits and dashes only)."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(pipeline).lower()).strip("-")
    return slug or "pipeline"


def summary_key(pipeline: str) -> str:
    return f"sync-summary-{artifact_slug(pipeline)}"


def table_key(pipeline: str) -> str:
    return f"sync-held-quarantined-{artifact_slug(pipeline)}"


def _as_dict(summary: Any) -> dict[str, Any]:
    if hasattr(summary, "as_dict"):
        summary = summary.as_dict()
    if not isinstance(summary, Mapping) or not summary.get("pipeline"):
        raise ValueError("a run summary needs at least a 'pipeline' name")
    return dict(summary)


def _n(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


def _cell(v: Any) -> str:
    return str(v if v is not None else "").replace("|", "\\|").replace("\n", " ").strip()


def _held_list(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    if isinstance(s.get("held_list"), list):
        return s["held_list"]
    return s["held_orders"] if isinstance(s.get("held_orders"), list) else []


def _held_count(s: Mapping[str, Any]) -> int:
    if isinstance(s.get("held_orders"), int):
        return s["held_orders"]
    return len(_held_list(s))


def _clean(text: Any) -> str:
    return mask_text(redact(str(text))) if text not in (None, "") else ""


def render_summary_markdown(summary: Any) -> str:
    """The markdown of the summary artifact. Pure: no Prefect, no I/O."""
    s = _as_dict(summary)
    hub = s.get("hub") or {}
    held = {k: _n(v) for k, v in (s.get("held") or {}).items()}
    targets = s.get("targets") or {}
    status = s.get("status") or "finished"
    head = [f"# Sync summary · `{s['pipeline']}`", ""]
    meta = [f"**{status}**"]
    if s.get("duration_s") is not None:
        meta.append(f"in {float(s['duration_s']):.1f} s")
    if s.get("batches"):
        meta.append(f"{_n(s['batches'])} batch(es)")
    if s.get("run_id"):
        meta.append(f"run `{s['run_id']}`")
    head += [" · ".join(meta), ""]

    rows = [("read from the source", _n(s.get("read"))),
            ("quarantined (bad records)", _n(s.get("quarantined"))),
            ("created in the hub", _n(hub.get("created"))),
            ("updated in the hub", _n(hub.get("updated"))),
            ("unchanged", _n(hub.get("unchanged")))]
    if _n(hub.get("stale")):
        rows.append(("stale updates ignored (older than the hub)", _n(hub.get("stale"))))
    rows.append(("held (not sent to targets)", _held_count(s)))
    out = head + ["| orders | count |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows] + [""]

    if held:
        out += ["### Held, by reason", "", "| reason | orders |", "|---|---:|"]
        out += [f"| `{_cell(code)}` | {n} |" for code, n in sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))]
        out.append("")
    if targets:
        out += ["### Targets", "", "| target | " + " | ".join(TARGET_COLUMNS) + " |",
                "|---|" + "---:|" * len(TARGET_COLUMNS)]
        for name in sorted(targets):
            counts = targets[name] or {}
            out.append(f"| {_cell(name)} | " + " | ".join(str(_n(counts.get(c))) for c in TARGET_COLUMNS) + " |")
        out.append("")
    failed = sum(_n((c or {}).get("failed")) for c in targets.values())
    problems = []
    if failed:
        problems.append(f"**{failed}** target write(s) failed — they are retried on the next run")
    if _held_count(s) or _n(s.get("quarantined")):
        problems.append(f"held and quarantined orders: table artifact `{table_key(s['pipeline'])}`")
    if problems:
        out += ["> " + "  \n> ".join(problems), ""]
    return "\n".join(out)


def summary_table_rows(summary: Any, *, max_rows: int = MAX_TABLE_ROWS) -> list[dict[str, str]]:
    """Rows of the held/quarantined table: masked, secrets redacted, at most ``max_rows``. Pure."""
    s = _as_dict(summary)
    rows: list[dict[str, str]] = []
    for h in _held_list(s):
        reasons = h.get("reasons") or h.get("hold_reasons") or []
        codes = [r.get("code") if isinstance(r, Mapping) else r for r in reasons]
        message = h.get("message") or "; ".join(str(r.get("message", "")) for r in reasons if isinstance(r, Mapping))
        rows.append(_row("held", h, h.get("order_id"), h.get("source_order_id"), ", ".join(map(str, codes)),
                         h.get("field"), message))
    for q in s.get("quarantined_records") or []:
        rows.append(_row("quarantined", q, q.get("order_id"), q.get("source_order_id") or q.get("record_id"),
                         q.get("reason_code") or q.get("code"), q.get("field"), q.get("message")))
    return rows[:max_rows]


def _row(kind: str, entry: Mapping[str, Any], order_id: Any, source_id: Any, code: Any, field: Any,
         message: Any) -> dict[str, str]:
    row = {"kind": kind, "order_id": str(order_id or ""), "source_id": str(source_id or ""),
           "reason_code": str(code or ""), "field": str(field or ""), "message": _clean(message)}
    for key, mask in _MASKERS.items():
        if entry.get(key):
            row[key] = mask(str(entry[key])) or ""
    return row


def publish_run_summary(summary: Any) -> dict[str, Any]:
    """Publish the summary (markdown) and the held/quarantined table of one run; returns their keys and ids.

    Both are published on every run, also when nothing was held, so the latest version of each key always
    describes the latest run. Inside a flow/task run they are attached to that run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    s = _as_dict(summary)
    rows = summary_table_rows(s)
    md_key, tb_key = summary_key(s["pipeline"]), table_key(s["pipeline"])
    hub = s.get("hub") or {}
    md_id = create_markdown_artifact(
        key=md_key, markdown=render_summary_markdown(s),
        description=(f"{s['pipeline']}: read {_n(s.get('read'))}, created {_n(hub.get('created'))}, "
                     f"updated {_n(hub.get('updated'))}, held {_held_count(s)}, "
                     f"quarantined {_n(s.get('quarantined'))}"))
    columns = list(TABLE_COLUMNS) + sorted({k for r in rows for k in r} - set(TABLE_COLUMNS))
    table = [{c: r.get(c, "") for c in columns} for r in rows]
    tb_id = create_table_artifact(
        key=tb_key, table=table,
        description=f"{s['pipeline']}: {len(table)} held/quarantined order(s) of this run")
    return {"summary_key": md_key, "summary_id": md_id, "table_key": tb_key, "table_id": tb_id,
            "rows": len(table)}
