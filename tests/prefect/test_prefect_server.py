"""The local Prefect server: loopback only, SQLite by default, PostgreSQL when a URL is given."""
import os

import httpx
import pytest

from orderhub.infra.prefect_server import PrefectServer, asyncpg_url


def test_server_refuses_a_non_loopback_host(tmp_path):
    with pytest.raises(ValueError, match="loopback only"):
        PrefectServer(tmp_path, host="0.0.0.0")


def test_postgres_urls_are_turned_into_asyncpg_urls():
    assert asyncpg_url("postgresql://u:p@127.0.0.1:5432/prefect") == "postgresql+asyncpg://u:p@127.0.0.1:5432/prefect"
    assert asyncpg_url("postgresql+psycopg://u@h/db") == "postgresql+asyncpg://u@h/db"
    with pytest.raises(ValueError):
        asyncpg_url("mysql://u@h/db")


def test_server_environment_pins_home_database_and_ui_url(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://elsewhere/db")
    server = PrefectServer(tmp_path, port=4321)
    env = server.server_env()
    assert env["PREFECT_HOME"] == str(tmp_path.resolve())
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == f"sqlite+aiosqlite:///{tmp_path.resolve()}/prefect.db"
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in env  # an inherited legacy alias cannot redirect it
    assert env["PREFECT_UI_URL"] == "http://127.0.0.1:4321" and server.api_url == "http://127.0.0.1:4321/api"
    assert server.run_url("abc") == "http://127.0.0.1:4321/runs/flow-run/abc"


@pytest.mark.prefect
def test_session_server_is_healthy_and_this_test_points_at_it(prefect_api):
    from prefect.settings import PREFECT_API_URL

    assert httpx.get(f"{prefect_api.api_url}/health").json() is True
    assert os.environ["PREFECT_API_URL"] == prefect_api.api_url == PREFECT_API_URL.value()
    # the tests' server keeps its data in PostgreSQL, nothing in SQLite
    assert prefect_api.server_env()["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert not (prefect_api.home / "prefect.db").exists()


@pytest.mark.slow
def test_server_runs_on_sqlite_by_default(tmp_path):
    with PrefectServer(tmp_path) as server:
        assert httpx.get(f"{server.api_url}/ready").status_code == 200
        r = httpx.post(f"{server.api_url}/flows/", json={"name": "sqlite-check"})
        assert r.status_code in (200, 201)
        assert (tmp_path / "prefect.db").exists()
    assert not server.running
