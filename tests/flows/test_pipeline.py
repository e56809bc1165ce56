"""`orderhub sync`: a MariaDB ERP → canonical layer → hub → ERP interface table on PostgreSQL, read back."""
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from orderhub.connectors.common.errors import ConfigError
from orderhub.flows.pipeline import Pipeline, load_pipeline, parse_pipeline
from tests.erp_db import T0, erp_database
from tests.pg import fresh_pg_database

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]
BIN = Path(sys.executable).parent


@pytest.fixture
def setup(tmp_path):
    with erp_database() as erp, fresh_pg_database("oh_test_target") as target_url:
        spec = {
            "name": "erp-test", "mapping": "erp_sql", "rules": "default", "batch_size": 40,
            "source": {"connector": "erp_sql", "config": {
                "url": erp.url, "header_table": "so_header", "line_table": "so_line", "join_key": "header_id",
                "updated_at": "updated_at", "lookback_seconds": 60, "shop": "main"}},
            "hub": {"url": f"sqlite:///{tmp_path}/hub.db"},
            "targets": [{"name": "erp-interface", "connector": "erp_sql",
                         "config": {"url": target_url, "mode": "interface", "create_tables": True}}],
        }
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True))
        yield erp, target_url, path


def target_rows(url):
    with psycopg.connect(url.replace("+psycopg", "")) as c:
        heads = c.execute("select source_id, count(*) from orderhub_so_interface group by source_id").fetchall()
        lines = c.execute("select count(*), sum(amount) from orderhub_so_interface_line").fetchone()
    return dict(heads), lines


def sync(path, *extra):
    r = subprocess.run([str(BIN / "orderhub"), "sync", str(path), "--json", *extra], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_sync_writes_every_order_once_and_reruns_change_nothing(setup):
    erp, target_url, path = setup
    erp.add_orders(range(1, 101))
    s = sync(path)
    assert s["hub"]["created"] == 100 and s["quarantined"] == 0 and s["read"] >= 100  # look-back re-reads are deduped
    delivered = sum(v for k, v in s["targets"]["erp-interface"].items() if k in ("created", "updated"))
    held = s["held_orders"]
    assert delivered == 100 - held
    heads, (nlines, total) = target_rows(target_url)
    assert len(heads) == 100 - held and set(heads.values()) == {1}
    assert nlines == 3 * (100 - held)
    s2 = sync(path)
    assert s2["hub"]["created"] == 0 and s2["targets"] == {} or all(
        k == "unchanged" for k in s2["targets"].get("erp-interface", {}))
    assert target_rows(target_url) == (heads, (nlines, total))


def test_incremental_run_picks_up_changes_and_late_commits(setup):
    erp, target_url, path = setup
    erp.add_orders(range(1, 61))
    sync(path)
    last = T0 + timedelta(seconds=60 * 13)
    erp.touch([5, 6, 7], status="C", at=last + timedelta(minutes=5))
    erp.touch([8], status="C", at=last - timedelta(seconds=30))  # committed late, inside the look-back window
    s = sync(path)
    assert s["hub"]["updated"] == 4 and s["hub"]["created"] == 0
    pipe = Pipeline(load_pipeline(path))
    orders = {o["source_order_id"]: o for o in pipe.hub.load_orders(
        [pipe.hub.find_order(f"SO{i:08d}") for i in (5, 8, 9)])}
    assert orders["SO00000005"]["status"] == "shipped" and orders["SO00000008"]["status"] == "shipped"
    assert orders["SO00000009"]["status"] == "confirmed"


def test_bad_pipeline_file_fails_before_any_data_moves(tmp_path):
    with pytest.raises(ConfigError, match="source.connector"):
        parse_pipeline({"name": "x", "source": {"connector": "ftp"}, "mapping": "erp_sql"})
    with pytest.raises(ConfigError, match="targets\\[0\\].connector"):
        parse_pipeline({"name": "x", "source": {"connector": "erp_sql"}, "mapping": "erp_sql",
                        "targets": [{"connector": "email"}]})
    with pytest.raises(ConfigError, match="mapping"):
        parse_pipeline({"name": "x", "source": {"connector": "erp_sql"}, "mapping": "no-such-mapping"})
    p = tmp_path / "p.yaml"
    p.write_text("name: x\nsource: {connector: erp_sql, config: {url: '${env:NO_SUCH_VAR_OH}'}}\nmapping: erp_sql\n")
    r = subprocess.run([str(BIN / "orderhub"), "sync", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and "NO_SUCH_VAR_OH" in r.stderr and "Traceback" not in r.stderr
