"""Benchmark: a 100,000-order Taobao backfill against a TOP sandbox that allows N calls per second.

The sandbox runs in its own process (``orderhub-sandbox taobao``) with ``qps_limit=N``: one call more in any
one-second window bans the app (``This ban will last for N more seconds``). tap-taobao runs here, one tap per
shop in parallel threads, each reading ``--parallel-windows`` windows at once; every call of every shop
passes the one :class:`AppGate` of the app (``qps`` = ``--fraction`` × N): paced, and never more than N calls
in flight or answered within the last second, so late arrivals cannot bunch up into a ban. Records are serialized with the
tap's MsgSpecWriter and thrown away. Prints calls/s achieved vs N, bans, orders fetched and wall time.

    python -m orderhub.infra.bench.taobao_backfill --orders 100000 --qps 20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec
from singer_sdk.contrib.msgspec import MsgSpecWriter, enc_hook

from orderhub.connectors.taobao.client import SHANGHAI
from orderhub.connectors.taobao.tap import TapTaobao
from orderhub.infra.sandboxes.taobao import session_key, shop_names


class CountingWriter(MsgSpecWriter):
    """Serializes every message as the tap's MsgSpecWriter does, writes it to /dev/null, counts records.

    singer-sdk's MsgSpecWriter encodes into one module-level buffer, which is not safe when several taps run
    in threads of one process (as here); this writer has its own encoder and buffer, at the same cost."""

    def __init__(self) -> None:
        super().__init__()
        self.sink = open(os.devnull, "wb")  # noqa: SIM115 - closed by the bench
        self.records = 0
        self.ids: set[str] = set()
        self.lock = threading.Lock()
        self._encoder = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number")
        self._buf = bytearray(64)

    def serialize_message(self, message: Any) -> bytearray:
        self._encoder.encode_into(message.to_dict(), self._buf)
        self._buf.extend(b"\n")
        return self._buf

    def write_message(self, message: Any) -> None:
        self.sink.write(self.format_message(message))
        if getattr(message, "type", None) == "RECORD":
            with self.lock:
                self.records += 1
                self.ids.add(message.record["tid_str"])


def start_sandbox(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    settings = {"seed": args.seed, "shops": args.shops, "orders_per_shop": args.orders // args.shops,
                "history_hours": args.history_hours, "qps_limit": args.qps, "ban_seconds": args.ban_seconds,
                "buyer_message_rate": args.buyer_message_rate, "freeze_gc": "true"}
    cmd = [sys.executable, "-m", "orderhub.infra.sandboxes", "taobao", "--port", "0"]
    for k, v in settings.items():
        cmd += ["--set", f"{k}={v}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"sandbox did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--shops", type=int, default=4)
    p.add_argument("--qps", type=float, default=20.0, help="N: calls/s the sandbox allows the app")
    p.add_argument("--fraction", type=float, default=1.0,
                   help="tap qps setting as a fraction of N (the gate's window rule keeps it under N anyway)")
    p.add_argument("--parallel-windows", type=int, default=4, help="windows in flight per shop")
    p.add_argument("--window-minutes", type=int, default=360)
    p.add_argument("--history-hours", type=float, default=7 * 24)
    p.add_argument("--buyer-message-rate", type=float, default=0.002, help="trades needing a fullinfo call")
    p.add_argument("--ban-seconds", type=float, default=10)
    p.add_argument("--seed", type=int, default=2024)
    args = p.parse_args(argv)

    t_boot = time.perf_counter()
    proc, url = start_sandbox(args)
    boot = time.perf_counter() - t_boot
    shops = shop_names(args.shops, "shop")
    start_date = (datetime.now(SHANGHAI) - timedelta(hours=args.history_hours + 1)).isoformat()
    base = {"api_url": url + "/router/rest", "app_key": "test-app", "app_secret": "test-secret",
            "start_date": start_date, "window_minutes": args.window_minutes, "lag_seconds": 0,
            "qps": args.qps * args.fraction, "parallel_windows": args.parallel_windows, "page_size": 100,
            "max_ban_wait": 120}
    errors: list[str] = []
    writers = {shop: CountingWriter() for shop in shops}
    taps = {shop: TapTaobao(config={**base, "shops": [{"shop_id": shop, "session": session_key(args.seed, shop)}]},
                            message_writer=writers[shop]) for shop in shops}

    def run_shop(shop: str) -> None:
        try:
            taps[shop].sync_all()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{shop}: {exc}")

    try:
        before = httpx.get(url + "/_sandbox/stats", timeout=30).json()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=run_shop, args=(s,), name=f"tap-{s}") for s in shops]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        stats = httpx.get(url + "/_sandbox/stats", timeout=30).json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    calls = stats["accepted"] - before["accepted"]
    records = sum(w.records for w in writers.values())
    unique = len(set().union(*(w.ids for w in writers.values())))
    span = (stats["last_call"] - stats["first_call"]) if calls > 1 else 0.0
    span_rate = (calls - 1) / span if span else 0.0
    result = {
        "orders_in_sandbox": stats["orders"], "orders_fetched": records, "unique_orders": unique,
        "calls": calls, "calls_rejected": stats["calls"] - stats["accepted"], "wall_s": round(wall, 2),
        "calls_per_s": round(calls / wall, 2), "limit_N": args.qps,
        "pct_of_N": round(100 * calls / wall / args.qps, 1),
        "calls_per_s_first_to_last_call": round(span_rate, 2),
        "pct_of_N_first_to_last_call": round(100 * span_rate / args.qps, 1), "bans": len(stats["bans"]),
        "calls_during_ban": stats["calls_during_ban"], "busiest_second": stats["busiest_second"],
        "orders_per_s": round(records / wall),
        "sandbox_boot_s": round(boot, 1), "errors": errors,
        "settings": {"shops": args.shops, "parallel_windows": args.parallel_windows,
                     "window_minutes": args.window_minutes, "client_pace": args.qps * args.fraction},
    }
    print(f"calls/s {result['calls_per_s']} of N={args.qps:g} ({result['pct_of_N']}% over the wall time, "
          f"{result['pct_of_N_first_to_last_call']}% from first to last call), bans {result['bans']}, "
          f"orders {records} ({unique} unique of {stats['orders']}), wall {wall:.1f}s, {calls} calls")
    print(json.dumps(result, ensure_ascii=False))
    return 0 if not errors and unique == stats["orders"] else 1


if __name__ == "__main__":
    sys.exit(main())
