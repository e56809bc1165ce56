"""Run a singer-sdk tap in-process and read its Singer output back (records, final state, error)."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TapRun:
    records: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, Any] | None = None
    error: BaseException | None = None
    stdout: str = ""
    stderr: str = ""

    def ids(self, key: str) -> list[str]:
        return [r[key] for r in self.records]

    def bookmark(self, stream: str, shop: str) -> dict[str, Any] | None:
        for p in ((self.state or {}).get("bookmarks", {}).get(stream, {}).get("partitions") or []):
            if p["context"].get("_shop") == shop:
                return p
        return None


def run_tap(tap_class: type, config: dict[str, Any], state: dict[str, Any] | None = None) -> TapRun:
    """One full ``sync_all`` of ``tap_class``; an exception is captured, not raised."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.StringIO()
    run = TapRun()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            tap_class(config=config, state=state).sync_all()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            run.error = exc
    out.seek(0)
    run.stdout, run.stderr = out.read(), err.getvalue()
    for line in run.stdout.splitlines():
        if not line.strip():
            continue
        msg = json.loads(line)
        if msg["type"] == "RECORD":
            run.records.append(msg["record"])
        elif msg["type"] == "STATE":
            run.state = msg["value"]
    return run
