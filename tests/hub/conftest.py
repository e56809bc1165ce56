import pytest

from orderhub.connectors.hub.store import HubStore
from tests.pg import fresh_pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def hub(request, tmp_path):
    if request.param == "sqlite":
        store = HubStore(f"sqlite:///{tmp_path}/hub.db")
        yield store
        store.dispose()
    else:
        with fresh_pg_database("oh_test_hub") as url:
            store = HubStore(url)
            yield store
            store.dispose()
