"""Replay after a fix: held orders released by a new decision and quarantined records fixed by a new mapping
reach the target exactly once; a second replay writes nothing."""
import sqlite3

import yaml

from orderhub.flows.pipeline import Pipeline, load_pipeline
from orderhub.flows.replay import replay
from orderhub.infra import demo_erp
from orderhub.transforms.mapping import MAPPINGS_DIR


def _spec(tmp_path, erp, credit, mapping="erp_sql"):
    return {"name": "replay-test", "mapping": mapping, "rules": str(tmp_path / "rules.yaml"), "credit": credit,
            "source": {"connector": "erp_sql", "config": {"url": f"sqlite:///{erp}", "header_table": "so_header",
                                                          "line_table": "so_line", "join_key": "header_id",
                                                          "updated_at": "updated_at", "lookback_seconds": 0}},
            "hub": {"url": f"sqlite:///{tmp_path / 'hub.db'}"},
            "targets": [{"name": "erp", "connector": "erp_sql",
                         "config": {"url": f"sqlite:///{erp}", "mode": "interface", "create_tables": True}}]}


def _rows(erp):
    c = sqlite3.connect(erp)
    try:
        return dict(c.execute("SELECT order_no, count(*) FROM orderhub_so_interface GROUP BY order_no").fetchall())
    finally:
        c.close()


def test_held_and_quarantined_orders_are_replayed_exactly_once(tmp_path):
    erp = tmp_path / "erp.db"
    demo_erp.seed(erp, generated_orders=0)          # the nine sample orders: 3 of them quarantined
    (tmp_path / "rules.yaml").write_text("name: credit\nversion: 1\ncredit: {factor: 1}\n")
    credit = {"C100": 300, "C001": 100000, "C200": 1000}   # C100 has 5 orders of ~235: most exceed the line
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(_spec(tmp_path, erp, credit)))
    s = Pipeline(load_pipeline(p)).run()
    assert s.held.get("credit_exceeded", 0) >= 1 and s.quarantined == 3
    before = _rows(erp)
    # the fix: credit released, and the mapping learns the status X9
    p.write_text(yaml.safe_dump(_spec(tmp_path, erp, {**credit, "C100": 100000})))
    r = replay(load_pipeline(p), what="held")
    after = _rows(erp)
    assert set(after) > set(before) and set(after.values()) == {1}
    assert r.targets["erp"]["created"] == len(after) - len(before)
    r2 = replay(load_pipeline(p), what="held")
    assert _rows(erp) == after and not r2.targets.get("erp", {}).get("created")
    mapping = yaml.safe_load((MAPPINGS_DIR / "erp_sql.yaml").read_text(encoding="utf-8"))
    mapping["status_map"]["X9"] = "confirmed"
    (tmp_path / "erp_fixed.yaml").write_text(yaml.safe_dump(mapping, allow_unicode=True))
    p.write_text(yaml.safe_dump(_spec(tmp_path, erp, {**credit, "C100": 100000}, str(tmp_path / "erp_fixed.yaml"))))
    r3 = replay(load_pipeline(p), what="quarantined")
    final = _rows(erp)
    assert "SO202600000007" in final and final["SO202600000007"] == 1      # the X9 order, now mapped
    assert r3.targets["erp"]["created"] == 1
    from orderhub.connectors.hub.store import HubStore

    hub = HubStore(f"sqlite:///{tmp_path / 'hub.db'}")
    states = {q["source_order_id"]: q["state"] for q in hub.quarantine_list(state=None)}
    assert states["SO202600000007"] == "replayed" and states["SO202600000006"] == "open"   # bad phone: still bad
    replay(load_pipeline(p), what="quarantined")
    assert _rows(erp) == final
