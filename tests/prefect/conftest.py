"""Fixtures of the Prefect tests: a process worker shared by the session, a webhook receiver per test."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POOL = "orderhub-test"


@pytest.fixture(scope="session")
def process_worker(prefect_api, tmp_path_factory):
    """A ``prefect worker`` on the process pool ``orderhub-test``, polling every second."""
    from orderhub.infra.prefect_server import ProcessWorker, ensure_work_pool

    with prefect_api.use():
        ensure_work_pool(POOL)
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = ProcessWorker(POOL, api_url=prefect_api.api_url, query_seconds=1, log_file=log, cwd=REPO).start()
    yield worker
    worker.stop()


@pytest.fixture
def receiver():
    from orderhub.infra.webhook_receiver import WebhookReceiver

    with WebhookReceiver() as rx:
        yield rx


def deploy_test_flow(function_name: str, deployment_name: str, *, pool: str = POOL) -> str:
    """Deploy ``tests/prefect/flows_for_tests.py:<function_name>`` on ``pool``; returns ``flow/deployment``."""
    from prefect import flow

    source = flow.from_source(str(REPO), entrypoint=f"tests/prefect/flows_for_tests.py:{function_name}")
    source.deploy(name=deployment_name, work_pool_name=pool, print_next_steps=False)
    return f"{source.name}/{deployment_name}"
