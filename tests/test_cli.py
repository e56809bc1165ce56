"""The orderhub CLI and the Singer mapper, run as a user runs them (subprocesses, real SQLite hub)."""
import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
DEMO = Path(__file__).resolve().parent.parent / "infra" / "demo_data"


def run(*args, env=None, stdin=None):
    e = {**os.environ, **(env or {})}
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=e, input=stdin,
                          timeout=120)


def test_demo_prints_orders_holds_and_quarantine():
    r = run("orderhub", "demo", "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    orders = [x for x in lines if "order_id" in x]
    quarantined = [x for x in lines if x.get("quarantined")]
    assert len(orders) == 6 and len(quarantined) == 3
    by = {o["source_order_id"]: o for o in orders}
    assert by["SO202600000002"]["priority"] == "urgent" and by["SO202600000002"]["warehouse_code"] == "WH-SOUTH"
    assert by["SO202600000003"]["lines"][0]["canonical_sku"] == "MB-C200"       # Mercedes-Benz C200 alias
    assert [r["code"] for r in by["SO202600000009"]["hold_reasons"]] == ["duplicate_submission"]
    assert {q["reason_code"] for q in quarantined} == {"bad_phone", "unknown_status", "bad_qty"}


def test_lineage_and_quarantine_commands_read_the_hub(tmp_path):
    env = {"ORDERHUB_HUB_URL": f"sqlite:///{tmp_path}/hub.db"}
    assert run("orderhub", "demo", env=env).returncode == 0
    r = run("orderhub", "lineage", "SO202600000009", env=env)
    assert r.returncode == 0, r.stderr
    assert "duplicate_submission" in r.stdout and "created" in r.stdout and "erp_sql@1" in r.stdout
    assert "13912345678" not in r.stdout and "139****5678" in r.stdout     # phones masked
    q = run("orderhub", "quarantine", "list", "--reason", "bad_phone", "--json", env=env)
    rows = [json.loads(x) for x in q.stdout.splitlines()]
    assert [(x["source_order_id"], x["field"]) for x in rows] == [("SO202600000006", "receiver_mobile")]
    missing = run("orderhub", "lineage", "NOPE", env=env)
    assert missing.returncode == 1 and "no order 'NOPE'" in missing.stderr


def test_bad_input_gives_one_clear_line_not_a_traceback(tmp_path):
    r = run("orderhub", "transform", str(tmp_path / "nope.jsonl"), "--mapping", "erp_sql")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: file not found") and "Traceback" not in r.stderr
    bad = tmp_path / "m.yaml"
    bad.write_text("source: x\nversion: 1\nstatus_map: taobao\nheader: {source_order_id: a, source_status: b, "
                   "colour: c}\nlines: {path: l, fields: {qty: q}}\n")
    (tmp_path / "in.jsonl").write_text("{}\n")
    r = run("orderhub", "transform", str(tmp_path / "in.jsonl"), "--mapping", str(bad))
    assert r.returncode == 2 and "header.colour" in r.stderr and "Traceback" not in r.stderr


def test_mapper_canonical_order_between_tap_and_target(tmp_path):
    rec = json.loads((DEMO / "erp_orders.jsonl").read_text(encoding="utf-8").splitlines()[0])
    msgs = [{"type": "SCHEMA", "stream": "erp_orders", "schema": {"type": "object", "properties": {}},
             "key_properties": []},
            {"type": "RECORD", "stream": "erp_orders", "record": rec},
            {"type": "RECORD", "stream": "erp_orders", "record": {**rec, "bill_no": "BAD", "status": "??"}},
            {"type": "STATE", "value": {"bookmarks": {"erp_orders": {"replication_key_value": "x"}}}}]
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"mapping": "erp_sql", "rules": "default", "skus": str(DEMO / "skus.yaml")}))
    r = run("mapper-canonical-order", "--config", str(cfg), stdin="\n".join(json.dumps(m, ensure_ascii=False)
                                                                           for m in msgs) + "\n")
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    records = [m for m in out if m["type"] == "RECORD"]
    assert [m["stream"] for m in records] == ["canonical_orders", "canonical_quarantine"]
    order = records[0]["record"]
    assert order["source_order_id"] == rec["bill_no"] and order["total_amount"] == 235.0
    assert [ln["canonical_sku"] for ln in order["lines"]] == ["M8-BOLT-20", "M8-NUT"]
    assert records[1]["record"]["reason_code"] == "unknown_status"
    assert out[-1] == {"type": "STATE", "value": {"bookmarks": {"erp_orders": {"replication_key_value": "x"}}}}
