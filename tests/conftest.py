"""Session-wide fixtures. Keep this file small: each area keeps its own fixtures in its folder's conftest.py."""
import pytest


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """ONE real Prefect server (PostgreSQL, temp home, free loopback port) for the whole run, started on first use.

    PostgreSQL, as Prefect recommends for production: on SQLite the server's services, the worker's heartbeats
    and several flow runs writing at once wait on SQLite's single write lock (Prefect sets a 60 s busy timeout),
    and one CI run saw a failed-run alert arrive 61 s late that way.

    Tests marked ``prefect`` get it automatically, with ``PREFECT_API_URL``/``PREFECT_UI_URL`` pointing at it
    for the duration of the test (environment and loaded Prefect settings); other tests never start it.
    """
    from orderhub.infra.prefect_server import PrefectServer
    from tests.pg import fresh_pg_database

    with fresh_pg_database("oh_test_prefect") as url:
        server = PrefectServer(tmp_path_factory.mktemp("prefect-home"), database_url=url)
        server.start(timeout=120)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def _prefect_api_for_marked_tests(request):
    if request.node.get_closest_marker("prefect") is None:
        yield None
        return
    server = request.getfixturevalue("prefect_api")
    with server.use():
        yield server
