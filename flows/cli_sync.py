"""``orderhub sync PIPELINE.yaml`` and ``orderhub replay``: run a pipeline from the terminal, with progress."""
from __future__ import annotations

import argparse
import json
import sys

from orderhub.flows.cli import COMMANDS, EXTRA_PARSERS


def _parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sync", help="run one pipeline: source → canonical → hub → targets")
    s.add_argument("pipeline", help="pipeline YAML file")
    s.add_argument("--check", action="store_true", help="validate the file and connections, move no data")
    s.add_argument("--json", action="store_true", help="print the run summary as JSON")
    s.add_argument("--no-progress", action="store_true")
    r = sub.add_parser("replay", help="re-run held or quarantined orders after a fix; each is written once")
    r.add_argument("pipeline", help="pipeline YAML file (mapping, rules and targets to use)")
    r.add_argument("--what", choices=["held", "quarantined", "both"], default="both")
    r.add_argument("--json", action="store_true")


EXTRA_PARSERS.append(_parsers)


def _print_summary(s: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(s, ensure_ascii=False, default=str))
        return
    hub = s["hub"]
    print(f"{s['pipeline']} run {s['run_id']}: {s['status']} in {s['duration_s']:.1f}s")
    print(f"  read {s['read']:,}  quarantined {s['quarantined']:,}  hub: created {hub['created']:,}, updated "
          f"{hub['updated']:,}, unchanged {hub['unchanged']:,}, stale {hub['stale']:,}  held {s['held_orders']:,}")
    if s["held"]:
        print("  held by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(s["held"].items())))
    for name, c in s["targets"].items():
        print(f"  → {name}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(c.items())))


def cmd_sync(a: argparse.Namespace) -> int:
    from orderhub.flows.pipeline import Pipeline, load_pipeline

    cfg = load_pipeline(a.pipeline)
    p = Pipeline(cfg)
    if a.check:
        p.source.check()
        _ = p.targets
        print(f"ok: pipeline {cfg.name} ({cfg.source_connector} → {', '.join(t.name for t in cfg.targets) or 'hub'})")
        return 0
    show = sys.stderr.isatty() and not a.no_progress and not a.json
    if show:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True,
                      console=__import__("rich.console", fromlist=["Console"]).Console(stderr=True)) as bar:
            task = bar.add_task(f"{cfg.name}: starting", total=None)

            def progress(s) -> None:  # noqa: ANN001
                bar.update(task, description=f"{cfg.name}: {s.read:,} read, {s.hub['created']:,} created, "
                                             f"{s.hub['updated']:,} updated, {s.quarantined:,} quarantined")
            summary = p.run(progress=progress)
    else:
        summary = p.run()
    _print_summary(summary.as_dict(), a.json)
    return 0


def cmd_replay(a: argparse.Namespace) -> int:
    from orderhub.flows.pipeline import load_pipeline
    from orderhub.flows.replay import replay

    summary = replay(load_pipeline(a.pipeline), what=a.what)
    _print_summary(summary.as_dict(), a.json)
    return 0


COMMANDS["sync"] = cmd_sync
COMMANDS["replay"] = cmd_replay
