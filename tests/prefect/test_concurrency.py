"""Per-partner global concurrency limits: created idempotently by name, and they cap calls in flight."""
import threading
import time

import pytest

from orderhub.connectors.common.errors import ConfigError
from orderhub.infra.concurrency import ensure_partner_limits, parse_partner_limits, partner_slot


def test_bad_partner_limits_fail_with_the_key_named():
    with pytest.raises(ConfigError, match=r"partners.taobao.max_in_flight: must be an integer ≥ 1"):
        parse_partner_limits({"partners": {"taobao": {"max_in_flight": 0}}})
    with pytest.raises(ConfigError, match=r"partners.jd.qps: must be a number > 0"):
        parse_partner_limits({"jd": {"max_in_flight": 2, "qps": "fast"}})
    with pytest.raises(ConfigError, match=r"partners.jd: unknown setting\(s\) \['qpm'\]"):
        parse_partner_limits({"jd": {"max_in_flight": 2, "qpm": 60}})
    with pytest.raises(ConfigError, match="not a partner name"):
        parse_partner_limits({"Tao Bao": {"max_in_flight": 1}})


def test_default_partner_limits_file_is_valid():
    from pathlib import Path

    import orderhub.infra.concurrency as mod

    limits = parse_partner_limits(Path(mod.__file__).with_name("partner_limits.yaml"))
    assert limits["taobao"] == {"max_in_flight": 4, "qps": 10.0, "burst": 10}
    assert limits["kingdee"] == {"max_in_flight": 2}


@pytest.mark.prefect
def test_partner_limits_are_created_once_and_updated_by_name():
    from prefect.client.orchestration import get_client

    spec = {"partners": {"idem-a": {"max_in_flight": 3, "qps": 2.5}, "idem-b": {"max_in_flight": 1}}}
    ensure_partner_limits(spec)
    ensure_partner_limits(spec)
    got = ensure_partner_limits({"partners": {"idem-a": {"max_in_flight": 5, "qps": 4, "burst": 8}}})
    assert got == {"partner:idem-a": {"limit": 5, "slot_decay_per_second": 0.0, "active": True},
                   "partner:idem-a:qps": {"limit": 8, "slot_decay_per_second": 4.0, "active": True}}
    with get_client(sync_client=True) as client:
        names = sorted(g.name for g in client.read_global_concurrency_limits(limit=200) if "idem-" in g.name)
        assert names == ["partner:idem-a", "partner:idem-a:qps", "partner:idem-b"]
        assert client.read_global_concurrency_limit_by_name("partner:idem-b").limit == 1


@pytest.mark.prefect
def test_partner_slot_caps_calls_in_flight_across_threads():
    ensure_partner_limits({"cap-test": {"max_in_flight": 2}})
    lock, in_flight, peak, done = threading.Lock(), [0], [0], []

    def call():
        with partner_slot("cap-test", timeout_seconds=60):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.4)
            with lock:
                in_flight[0] -= 1
        done.append(1)

    t0 = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    elapsed = time.monotonic() - t0
    assert len(done) == 5
    assert peak[0] == 2                       # never more than the limit, and the limit was used
    assert elapsed >= 1.2                     # 5 calls of 0.4 s, 2 at a time: at least 3 waves


@pytest.mark.prefect
def test_partner_without_limits_is_not_throttled():
    t0 = time.monotonic()
    for _ in range(20):
        with partner_slot("no-such-partner"):
            pass
    assert time.monotonic() - t0 < 2  # one lookup of the limits, then no API call per slot
