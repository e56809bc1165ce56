"""``python -m orderhub.schedules render|check|apply`` — prefect.yaml from schedules.yaml, and UI-owned schedules.

* ``render``: print the prefect.yaml that ``schedules.yaml`` describes.
* ``check``: exit 1 if prefect.yaml differs from what ``render`` prints.
* ``apply``: for deployments owned by the UI, create the initial schedules when the deployment has none
  (never touches a schedule an admin changed). Needs a reachable Prefect API.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from orderhub.connectors.common.errors import ConfigError
from orderhub.schedules import HERE, PIPELINES

FLOWS = {"sync": "orderhub.flows.sync.sync", "backfill": "orderhub.flows.sync.backfill",
         "replay": "orderhub.flows.sync.replay_flow", "watch": "orderhub.flows.sync.watch"}
REPO = HERE.parent
HEADER = ("# GENERATED from schedules/schedules.yaml by `python -m orderhub.schedules render > prefect.yaml`.\n"
          "# Edit schedules.yaml, not this file. Deploy: bash infra/deploy.sh  (prefect --no-prompt deploy --all)\n")


def load(path: Path = HERE / "schedules.yaml") -> dict[str, Any]:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    tz = spec.get("timezone")
    if tz != "Asia/Shanghai":
        raise ConfigError("must be Asia/Shanghai (Prefect's default would be UTC)", key="timezone")
    for name, d in (spec.get("deployments") or {}).items():
        if d.get("flow") not in FLOWS:
            raise ConfigError(f"must be one of {sorted(FLOWS)}", key=f"deployments.{name}.flow")
        if d.get("owner") not in ("git", "ui"):
            raise ConfigError("must be git or ui", key=f"deployments.{name}.owner")
        if not (PIPELINES / f"{d['pipeline']}.yaml").exists():
            raise ConfigError(f"no pipeline file schedules/pipelines/{d['pipeline']}.yaml",
                              key=f"deployments.{name}.pipeline")
        for i, s in enumerate(d.get("schedules") or []):
            if ("cron" in s) == ("interval" in s):
                raise ConfigError("needs exactly one of cron or interval", key=f"deployments.{name}.schedules[{i}]")
    return spec


def prefect_schedules(d: dict, tz: str) -> list[dict]:
    out = []
    for s in d.get("schedules") or []:
        e = {k: v for k, v in s.items() if k in ("cron", "interval", "slug")}
        e["timezone"] = tz
        e["active"] = s.get("active", True)
        out.append(e)
    return out


def render(spec: dict) -> str:
    tz = spec["timezone"]
    deployments = []
    for name, d in spec["deployments"].items():
        dep: dict[str, Any] = {
            "name": name,
            "description": d.get("description", ""),
            "entrypoint": FLOWS[d["flow"]],
            "parameters": {"pipeline": d["pipeline"], **(d.get("parameters") or {})},
            "tags": ["orderhub", d["flow"], f"schedule-owner-{d['owner']}"],
            "work_pool": {"name": spec.get("work_pool", "orderhub")},
            "concurrency_limit": {"limit": 1, "collision_strategy": "CANCEL_NEW"},
        }
        if d["owner"] == "git":
            dep["schedules"] = prefect_schedules(d, tz)
        deployments.append(dep)
    doc = {"name": "orderhub", "prefect-version": "3.8.8", "build": None, "push": None, "pull": [],
           "deployments": deployments}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def apply(spec: dict) -> list[str]:
    """Create the initial schedules of UI-owned deployments that have none. Returns what was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import construct_schedule

    done = []
    with get_client(sync_client=True) as client:
        for name, d in spec["deployments"].items():
            if d["owner"] != "ui":
                continue
            flow_name = {"sync": "orderhub-sync", "backfill": "orderhub-backfill", "replay": "orderhub-replay",
                         "watch": "orderhub-watch"}[d["flow"]]
            dep = client.read_deployment_by_name(f"{flow_name}/{name}")
            if dep.schedules:
                continue  # an admin owns it now
            for s in prefect_schedules(d, spec["timezone"]):
                sched = construct_schedule(cron=s.get("cron"), interval=s.get("interval"), timezone=s["timezone"])
                client.create_deployment_schedules(dep.id, [(sched, s["active"])])
                done.append(f"{name}: {s.get('cron') or s.get('interval')}")
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else "render"
    spec = load()
    if cmd == "render":
        sys.stdout.write(render(spec))
        return 0
    if cmd == "check":
        current = (REPO / "prefect.yaml").read_text(encoding="utf-8")
        if current != render(spec):
            print("prefect.yaml is out of date: python -m orderhub.schedules render > prefect.yaml", file=sys.stderr)
            return 1
        print("prefect.yaml matches schedules/schedules.yaml")
        return 0
    if cmd == "apply":
        for line in apply(spec):
            print(f"initial schedule set: {line}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
