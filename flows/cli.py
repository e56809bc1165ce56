"""The ``orderhub`` command: a thin skin over the Python API.

    orderhub demo                         canonicalize the bundled sample orders and show the result
    orderhub transform FILE --mapping M   canonicalize a JSON-lines file of source records
    orderhub lineage ORDER_ID             the order's whole trail (canonical id or source order id)
    orderhub quarantine list [filters]    records that could not become orders, with reason codes
    orderhub hub migrate                  create/upgrade the hub store
    orderhub schema                       the canonical order JSON Schema

The hub is ``--hub URL``, else ``$ORDERHUB_HUB_URL``, else ``sqlite:///.orderhub/hub.db``. Errors print one line
saying what to fix; ``--debug`` shows the stack trace.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from orderhub.connectors.common.errors import OrderhubError
from orderhub.connectors.common.privacy import mask_address, mask_name, mask_phone, mask_text
from orderhub.connectors.common.secrets import install_log_redaction

DEMO_DATA = Path(__file__).resolve().parent.parent / "infra" / "demo_data"
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return deco


def _hub(args: argparse.Namespace):  # noqa: ANN202
    from orderhub.connectors.hub.store import HubStore

    return HubStore(args.hub or os.environ.get("ORDERHUB_HUB_URL"))


def _console():  # noqa: ANN202
    from rich.console import Console

    return Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)


def _read_jsonl(path: str) -> list[dict]:
    from orderhub.connectors.common.errors import ConfigError

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"file not found: {p}")
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line, parse_float=__import__("decimal").Decimal)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} line {i}: not JSON ({exc.msg})") from None
        if isinstance(rec, dict) and rec.get("type") == "RECORD" and "record" in rec:
            rec = rec["record"]  # a Singer message stream works too
        out.append(rec)
    return out


def _print_result(result: Any, *, as_json: bool) -> None:
    from orderhub.transforms.model import to_record

    if as_json:
        for o in result.orders:
            print(json.dumps(to_record(o), ensure_ascii=False, default=str))
        for q in result.quarantined:
            print(json.dumps({"quarantined": True, "source_order_id": q.source_order_id, "reason_code": q.reason_code,
                              "field": q.field, "message": q.message}, ensure_ascii=False))
        return
    from rich.table import Table

    con = _console()
    tbl = Table(title=f"{len(result.orders)} canonical orders", show_lines=False)
    for col in ("source id", "status", "total", "lines (canonical SKU × qty)", "warehouse", "priority", "held"):
        tbl.add_column(col)
    for o in result.orders:
        lines = ", ".join(f"{ln['canonical_sku']}×{ln['qty'].normalize():f}" for ln in o["lines"])
        held = "; ".join(r["code"] for r in o.get("hold_reasons") or []) or "-"
        tbl.add_row(o["source_order_id"], f"{o['status']} ({o.get('source_status')})", str(o.get("total_amount")),
                    lines, o.get("warehouse_code") or "-", o.get("priority") or "-", held)
    con.print(tbl)
    if result.quarantined:
        q = Table(title=f"{len(result.quarantined)} quarantined records")
        for col in ("source id", "reason", "field", "message"):
            q.add_column(col)
        for e in result.quarantined:
            q.add_row(str(e.source_order_id), e.reason_code, str(e.field), e.message)
        con.print(q)
    sample = result.orders[0] if result.orders else None
    if sample:
        con.print(f"receiver of {sample['source_order_id']} (masked in logs): {mask_name(sample.get('receiver_name'))} "
                  f"{mask_phone(sample.get('receiver_mobile'))} {sample.get('receiver_province')}"
                  f"{sample.get('receiver_city')}{sample.get('receiver_district')} "
                  f"{mask_address(sample.get('receiver_address'))}")


def _canonicalizer(mapping: str, rules: str | None, skus: str | None):  # noqa: ANN202
    from orderhub.transforms import Canonicalizer, RuleSet, SkuDictionary, load_mapping

    return Canonicalizer(load_mapping(mapping), rules=RuleSet.load(rules) if rules else None,
                         skus=SkuDictionary.load(skus) if skus else None)


@command("transform")
def cmd_transform(a: argparse.Namespace) -> int:
    cz = _canonicalizer(a.mapping, a.rules, a.skus)
    result = cz.run(_read_jsonl(a.file))
    _print_result(result, as_json=a.json)
    return 0


@command("demo")
def cmd_demo(a: argparse.Namespace) -> int:
    if getattr(a, "full", False):
        from orderhub.infra import demo

        return demo.main(["up"])
    cz = _canonicalizer("erp_sql", "default", str(DEMO_DATA / "skus.yaml"))
    records = _read_jsonl(str(DEMO_DATA / "erp_orders.jsonl"))
    result = cz.run(records, now=datetime(2026, 11, 21, tzinfo=timezone.utc))
    con = _console()
    con.print(f"orderhub demo: {len(records)} sample ERP orders through mapping erp_sql@1, "
              "rule set default@1 and the demo SKU dictionary\n")
    _print_result(result, as_json=a.json)
    if a.hub or os.environ.get("ORDERHUB_HUB_URL"):
        hub = _hub(a)
        stats = hub.apply_batch(result, run_id=f"demo-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}", pipeline="demo")
        con.print(f"\nhub {hub.url}: {stats.as_dict()}")
    return 0


@command("lineage")
def cmd_lineage(a: argparse.Namespace) -> int:
    hub = _hub(a)
    oid = hub.find_order(a.order_id)
    if oid is None:
        print(f"no order {a.order_id!r} in the hub {hub.url} (give a canonical id o_… or a source order id)",
              file=sys.stderr)
        return 1
    trail = hub.lineage(oid)
    if a.json:
        print(json.dumps(trail, ensure_ascii=False, default=str, indent=2))
        return 0
    o = trail["order"]
    con = _console()
    con.print(f"{oid}  {o['source_system']}/{o.get('shop_id') or '-'}/{o['source_order_id']}  "
              f"status {o['status']} (source {o.get('source_status')})  total {o.get('total_amount')} CNY"
              f"  revision {o.get('revision')}")
    con.print(f"  mapping {o.get('mapping_version')}  rules {o.get('ruleset_version')}  warehouse "
              f"{o.get('warehouse_code') or '-'}  priority {o.get('priority') or '-'}  held {o.get('held')}")
    con.print(f"  receiver {mask_name(o.get('receiver_name'))} {mask_phone(o.get('receiver_mobile'))} "
              f"{mask_address(o.get('receiver_address'))}")
    for ln in o["lines"]:
        con.print(f"  line {ln['line_no']}: {ln.get('canonical_sku')} (source {ln.get('source_sku')}) × {ln['qty']} "
                  f"@ {ln.get('unit_price')} = {ln.get('amount')}  [{ln.get('line_status')}, refund "
                  f"{ln.get('refund_status')}]")
    con.print("\ntrail")
    items: list[tuple[Any, str]] = []
    for e in trail["events"]:
        what = e["event"]
        if what == "target_write":
            what = f"→ {e['target']}: {e['result']}" + (f" (ref {e['target_ref']})" if e.get("target_ref") else "")
        items.append((e["at"], f"run {e.get('run_id')}: {what}  raw {str(e.get('raw_hash'))[:10]}  "
                               f"{e.get('message') or ''}"))
    for ch in trail["changes"]:
        items.append((ch["at"], f"run {ch.get('run_id')}: {ch['field']}: {ch['old_value']} → {ch['new_value']}"))
    for h in trail["holds"]:
        rel = f", released {h['released_at']:%Y-%m-%d %H:%M} (run {h['released_run_id']})" if h.get("released_at") else ""
        items.append((h["created_at"], f"run {h.get('run_id')}: hold {h['reason_code']}: {h.get('message')}{rel}"))
    for at, text in sorted(items, key=lambda x: (str(x[0]))):
        con.print(f"  {at:%Y-%m-%d %H:%M:%S}  {text}")
    return 0


@command("quarantine")
def cmd_quarantine(a: argparse.Namespace) -> int:
    hub = _hub(a)
    since = datetime.now(timezone.utc) - timedelta(hours=a.since_hours) if a.since_hours else None
    rows = hub.quarantine_list(state=None if a.state == "all" else a.state, source=a.source, reason=a.reason,
                               pipeline=a.pipeline, since=since, limit=a.limit)
    if a.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False, default=str))
        return 0
    from rich.table import Table

    tbl = Table(title=f"{len(rows)} quarantined records ({a.state})")
    for col in ("id", "source", "source id", "reason", "field", "message", "seen", "state", "first seen"):
        tbl.add_column(col)
    for r in rows:
        tbl.add_row(str(r["id"]), r["source_system"], str(r["source_order_id"]), r["reason_code"], str(r["field"]),
                    (r["message"] or "")[:80], str(r["seen_count"]), r["state"], f"{r['created_at']:%Y-%m-%d %H:%M}")
    _console().print(tbl)
    return 0


@command("hub")
def cmd_hub(a: argparse.Namespace) -> int:
    hub = _hub(a)  # migrates on open
    print(f"hub {hub.url} is at the newest schema; {hub.counts()}")
    return 0


@command("schema")
def cmd_schema(a: argparse.Namespace) -> int:
    from orderhub.transforms.model import json_schema

    print(json.dumps(json_schema(), ensure_ascii=False, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orderhub", description="orderhub — the order hub (订单中枢)")
    p.add_argument("--hub", help="hub database URL (default $ORDERHUB_HUB_URL or sqlite:///.orderhub/hub.db)")
    p.add_argument("--debug", action="store_true", help="show stack traces")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="canonicalize the bundled sample orders (the full demo: orderhub demo --full)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--full", action="store_true", help="start Prefect, sandboxes and a worker, run a sync end to end")
    t = sub.add_parser("transform", help="canonicalize a JSON-lines file of source records")
    t.add_argument("file")
    t.add_argument("--mapping", required=True, help="mapping name (erp_sql, taobao, …) or YAML path")
    t.add_argument("--rules", help="rule set name or YAML path")
    t.add_argument("--skus", help="SKU dictionary YAML")
    t.add_argument("--json", action="store_true", help="print canonical orders as JSON lines")
    ln = sub.add_parser("lineage", help="show an order's whole trail")
    ln.add_argument("order_id")
    ln.add_argument("--json", action="store_true")
    q = sub.add_parser("quarantine", help="quarantined records")
    qs = q.add_subparsers(dest="action", required=True)
    ql = qs.add_parser("list", help="list quarantined records")
    ql.add_argument("--state", default="open", choices=["open", "replayed", "discarded", "all"])
    ql.add_argument("--source", help="source system, e.g. taobao")
    ql.add_argument("--reason", help="reason code, e.g. bad_phone")
    ql.add_argument("--pipeline")
    ql.add_argument("--since-hours", type=float)
    ql.add_argument("--limit", type=int, default=100)
    ql.add_argument("--json", action="store_true")
    h = sub.add_parser("hub", help="hub store maintenance")
    h.add_argument("action", choices=["migrate"])
    sub.add_parser("schema", help="print the canonical order JSON Schema")
    for extra in EXTRA_PARSERS:
        extra(sub)
    return p


#: Later modules (sync, replay, selftest …) register their sub-commands here.
EXTRA_PARSERS: list[Callable[[Any], None]] = []


def _load_extras() -> None:
    for mod in ("orderhub.flows.cli_sync", "orderhub.flows.cli_selftest"):
        try:
            __import__(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def main(argv: list[str] | None = None) -> int:
    install_log_redaction()
    _load_extras()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.cmd](args)
    except OrderhubError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a database connection lost mid-run: one line, not a stack trace
        from sqlalchemy.exc import InterfaceError, OperationalError

        if args.debug or not isinstance(exc, (OperationalError, InterfaceError)):
            raise
        from orderhub.connectors.common.secrets import redact

        cause = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else "connection error"
        print(f"error: database connection failed ({type(exc.orig).__name__}: {mask_text(redact(cause))}); "
              f"nothing after the last committed batch was kept — the next run resumes from there", file=sys.stderr)
        return 2


if __name__ == "__main__":  # run the imported module so sub-commands registered by extras land in one registry
    from orderhub.flows import cli as _cli

    sys.exit(_cli.main())
