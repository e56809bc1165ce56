"""Security checks: canary secrets in every connector setting never reach logs, artifacts, exception text or the
hub; receiver phones and addresses are masked in logs; SQL in identifier settings is refused; everything binds
loopback by default."""
import pytest
import sqlalchemy as sa

from orderhub.connectors.hub import schema
from orderhub.connectors.hub.store import HubStore
from orderhub.infra.selftest import SecurityReport, identifier_check, loopback_check, masking_check, secrets_check

pytestmark = [pytest.mark.mariadb, pytest.mark.postgres]


def test_canaries_never_reach_logs_artifacts_exceptions_or_the_hub(lab):
    r = SecurityReport()
    secrets_check(lab, r)
    assert len(r.canaries) >= 11
    assert len(r.places) >= 30  # stdout/stderr/artifacts of 6 runs, the tap's own log, 3 hubs, alerts
    assert r.leaks == []


def test_receiver_phones_and_addresses_are_masked_in_logs(lab):
    r = SecurityReport()
    masking_check(lab, r)
    warned = "\n".join(t for p, t in r.places.items() if "stderr" in p)
    assert "quarantined" in warned or "refused" in warned  # the runs did log about orders
    assert r.unmasked == []


def test_sql_in_identifier_settings_is_refused_naming_the_setting(lab):
    r = SecurityReport()
    tried = identifier_check(lab, r)
    assert tried >= 100
    assert r.injection == []


def test_sandboxes_and_services_bind_loopback_by_default():
    r = SecurityReport()
    assert loopback_check(r) >= 9
    assert r.exposed == []


def test_hub_database_errors_do_not_print_order_data(tmp_path):
    hub = HubStore(f"sqlite:///{tmp_path}/hub.db")
    with pytest.raises(sa.exc.IntegrityError) as err:
        with hub.engine.begin() as c:
            c.execute(sa.insert(schema.orders), [{"order_id": "o_1", "source_system": None, "source_order_id": "1",
                                                  "status": "confirmed", "base_status": "confirmed",
                                                  "receiver_mobile": "13912345678",
                                                  "receiver_address": "江苏省苏州市工业园区星湖街328号"}])
    assert "13912345678" not in str(err.value) and "星湖街328号" not in str(err.value)
