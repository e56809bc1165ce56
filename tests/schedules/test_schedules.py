"""schedules/schedules.yaml is the readable source of prefect.yaml; every schedule is Asia/Shanghai."""
from pathlib import Path

import pytest
import yaml

from orderhub.connectors.common.errors import ConfigError
from orderhub.flows.pipeline import load_pipeline
from orderhub.schedules.__main__ import FLOWS, load, render

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_is_rendered_from_schedules_yaml():
    assert (REPO / "prefect.yaml").read_text(encoding="utf-8") == render(load()), \
        "run: python -m orderhub.schedules render > prefect.yaml"


def test_every_deployment_is_on_the_process_pool_with_shanghai_schedules():
    doc = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    spec = load()
    assert doc["pull"] == []  # module entrypoints of the installed package: no checkout path needed
    for dep in doc["deployments"]:
        src = spec["deployments"][dep["name"]]
        assert dep["entrypoint"] == FLOWS[src["flow"]]
        assert dep["work_pool"]["name"] == "orderhub"
        assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
        if src["owner"] == "ui":
            assert "schedules" not in dep  # a redeploy leaves what the admin set in the UI alone
        else:
            assert [s.get("cron") or s.get("interval") for s in dep["schedules"]] == \
                [s.get("cron") or s.get("interval") for s in src["schedules"]]
            assert all(s["timezone"] == "Asia/Shanghai" for s in dep["schedules"])


def test_near_real_time_pipeline_runs_every_few_seconds():
    s = load()["deployments"]["demo-erp"]["schedules"]
    assert s[0]["interval"] <= 15


def test_schedule_errors_name_the_key(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("timezone: UTC\ndeployments: {}\n")
    with pytest.raises(ConfigError, match="timezone"):
        load(bad)
    bad.write_text("timezone: Asia/Shanghai\ndeployments:\n  x: {flow: sync, pipeline: demo-erp, owner: admin}\n")
    with pytest.raises(ConfigError, match="deployments.x.owner"):
        load(bad)
    bad.write_text("timezone: Asia/Shanghai\ndeployments:\n  x: {flow: sync, pipeline: nope, owner: git}\n")
    with pytest.raises(ConfigError, match="deployments.x.pipeline"):
        load(bad)


@pytest.mark.parametrize("name", ["demo-erp", "demo-taobao", "demo-broken", "erp-mysql.example"])
def test_every_pipeline_file_validates(name, monkeypatch):
    for var in ("ORDERHUB_DEMO_ERP_URL", "ORDERHUB_HUB_URL", "ORDERHUB_QIMEN_URL", "ORDERHUB_QIMEN_APP_KEY",
                "ORDERHUB_QIMEN_APP_SECRET", "ORDERHUB_QIMEN_CUSTOMER_ID", "ORDERHUB_TAOBAO_URL",
                "ORDERHUB_TAOBAO_APP_KEY", "ORDERHUB_TAOBAO_APP_SECRET", "ORDERHUB_DEMO_START",
                "ORDERHUB_TAOBAO_SESSION_SHOP1", "ORDERHUB_TAOBAO_SESSION_SHOP2", "QIMEN_URL", "QIMEN_APP_KEY",
                "QIMEN_CUSTOMER_ID", "QIMEN_OWNER_CODE"):
        monkeypatch.setenv(var, "x")
    if name.endswith("example"):
        monkeypatch.setattr("orderhub.connectors.common.secrets.prefect_secret", lambda n: "s3cret-value")
        monkeypatch.setattr("orderhub.connectors.common.config.prefect_secret", lambda n: "s3cret-value")
    cfg = load_pipeline(REPO / "schedules" / "pipelines" / f"{name}.yaml")
    assert cfg.name and cfg.mapping
