"""The embedded demo set-up: an ERP on SQLite (text DATETIMEs) read in small batches, written back into its
interface table, hub on SQLite — the run ends, reads every order once, and a re-run changes nothing."""
import sqlite3

import yaml

from orderhub.flows.pipeline import Pipeline, load_pipeline
from orderhub.infra import demo_erp


def test_sqlite_erp_small_batches_end_and_rerun_is_unchanged(tmp_path):
    erp = tmp_path / "erp.db"
    n = demo_erp.seed(erp, generated_orders=25)
    spec = {"name": "sqlite-erp", "mapping": "erp_sql", "batch_size": 7,
            "source": {"connector": "erp_sql", "config": {"url": f"sqlite:///{erp}", "header_table": "so_header",
                                                          "line_table": "so_line", "join_key": "header_id",
                                                          "updated_at": "updated_at", "lookback_seconds": 0}},
            "hub": {"url": f"sqlite:///{tmp_path / 'hub.db'}"},
            "targets": [{"name": "erp", "connector": "erp_sql",
                         "config": {"url": f"sqlite:///{erp}", "mode": "interface", "create_tables": True}}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(spec))
    s = Pipeline(load_pipeline(tmp_path / "p.yaml")).run()
    assert s.read == n and s.hub["created"] + s.quarantined == n
    assert s.targets["erp"]["created"] == s.hub["created"] - s.held_orders
    s2 = Pipeline(load_pipeline(tmp_path / "p.yaml")).run()
    assert s2.read == 0 and s2.hub["created"] == 0                  # bookmark advanced past every order
    c = sqlite3.connect(erp)
    assert c.execute("SELECT count(*), count(DISTINCT source_id) FROM orderhub_so_interface").fetchone() == \
        (s.hub["created"] - s.held_orders,) * 2
