"""The hub survives its PostgreSQL connections being dropped between uses (server restart, idle timeout, failover):
a long-lived process — ``prefect serve``, a worker — reconnects instead of failing its next run."""
import psycopg
import pytest

from orderhub.connectors.hub.store import HubStore
from tests.pg import PG_ADMIN, fresh_pg_database

pytestmark = pytest.mark.postgres


def test_hub_reconnects_after_its_connections_were_terminated():
    with fresh_pg_database("oh_test_reconnect") as url:
        hub = HubStore(url)
        try:
            hub.set_state("p", {"bookmark": "2026-01-01"}, run_id="r1")
            assert hub.get_state("p") == {"bookmark": "2026-01-01"}
            name = url.rsplit("/", 1)[1]
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                killed = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
                                   "AND pid <> pg_backend_pid()", (name,)).fetchone()[0]
            assert killed >= 1  # the hub's pooled connection is gone
            hub.set_state("p", {"bookmark": "2026-02-01"}, run_id="r2")  # no OperationalError: pinged, reconnected
            assert hub.get_state("p") == {"bookmark": "2026-02-01"}
        finally:
            hub.dispose()
