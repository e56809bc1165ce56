"""``orderhub selftest [--full]``: the reliability suites (crash, faults, hostile input, security) and their figures.

A thin skin over :func:`orderhub.infra.selftest.run_selftest`; it needs the machine's MariaDB and PostgreSQL
(``ORDERHUB_TEST_PG`` / ``ORDERHUB_TEST_MARIADB_*`` to point elsewhere). Exit status 0 when every figure is as it
must be (nothing lost, doubled or wrong, no crash, no leak), 1 otherwise.
"""
from __future__ import annotations

import argparse

from orderhub.flows.cli import COMMANDS, EXTRA_PARSERS


def _parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("selftest", help="run the reliability suites (a few minutes; --full: the long version) "
                                        "and print the figures")
    s.add_argument("--full", action="store_true", help="many more kills and faults (about a quarter of an hour)")
    s.add_argument("--suites", default="crash,faults,hostile,security", help="comma-separated subset")
    s.add_argument("--json", action="store_true", help="print the figures as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


EXTRA_PARSERS.append(_parsers)


def cmd_selftest(a: argparse.Namespace) -> int:
    from orderhub.infra.selftest import main

    argv = ["--suites", a.suites] + ["--full"] * a.full + ["--json"] * a.json + ["--quiet"] * a.quiet
    return main(argv)


COMMANDS["selftest"] = cmd_selftest
