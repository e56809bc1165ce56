"""Fixtures of the reliability suites: one lab (sandboxes, databases, temp files) per module; the long versions
(``@pytest.mark.slow``) run only with ``ORDERHUB_FULL_SUITES=1``."""
import os

import pytest

from orderhub.infra.selftest import Lab


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ORDERHUB_FULL_SUITES") == "1":
        return
    skip = pytest.mark.skip(reason="long version: set ORDERHUB_FULL_SUITES=1 (or run `orderhub selftest --full`)")
    for item in items:
        if "reliability" in str(item.fspath) and item.get_closest_marker("slow"):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("lab")) as lab:
        yield lab
