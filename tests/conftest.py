"""Session-wide fixtures. Keep this file small: each area keeps its own fixtures in its folder's conftest.py."""
import pytest


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """ONE real Prefect server (SQLite, temp home, free loopback port) for the whole run, started on first use.

    Tests marked ``prefect`` get it automatically, with ``PREFECT_API_URL``/``PREFECT_UI_URL`` pointing at it
    for the duration of the test (environment and loaded Prefect settings); other tests never start it.
    """
    from orderhub.infra.prefect_server import PrefectServer

    server = PrefectServer(tmp_path_factory.mktemp("prefect-home"))
    server.start(timeout=120)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _prefect_api_for_marked_tests(request):
    if request.node.get_closest_marker("prefect") is None:
        yield None
        return
    server = request.getfixturevalue("prefect_api")
    with server.use():
        yield server
