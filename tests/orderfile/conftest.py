"""Helpers for the file-channel tests: run tap-orderfile in-process and read back what it emitted."""
from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orderhub.connectors.orderfile.samples import write_samples
from orderhub.connectors.orderfile.tap import TapOrderFile


@dataclass
class TapRun:
    """The messages of one sync, parsed with Decimal numbers (as a Singer target reads them)."""

    orders: dict[str, dict] = field(default_factory=dict)
    order_records: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def reasons(self) -> set[tuple[str, int, str, str | None]]:
        """(file, row, reason_code, field) of every reject."""
        return {(r["file"], r["row"], r["reason_code"], r["field"]) for r in self.rejects}


def run_tap(config: dict[str, Any], state: dict | None = None) -> TapRun:
    tap = TapOrderFile(config=config, state=state or {}, parse_env_config=False)
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    with redirect_stdout(out):
        tap.sync_all()
    out.flush()
    run = TapRun()
    for line in out.buffer.getvalue().decode("utf-8").splitlines():
        msg = json.loads(line, parse_float=Decimal)
        if msg["type"] == "RECORD" and msg["stream"] == "file_orders":
            run.order_records.append(msg["record"])
            run.orders[msg["record"]["order_no"]] = msg["record"]
        elif msg["type"] == "RECORD" and msg["stream"] == "orderfile_rejects":
            run.rejects.append(msg["record"])
        elif msg["type"] == "STATE":
            run.state = msg["value"]
    return run


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    """A folder holding the three example files (GBK CSV, UTF-8-BOM CSV, .xlsx)."""
    d = tmp_path / "inbox"
    write_samples(d)
    return d


@pytest.fixture
def config(inbox: Path) -> dict[str, Any]:
    return {"path": str(inbox), "shop": "wechat-sales"}
