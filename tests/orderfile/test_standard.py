"""singer-sdk standard tap tests (discovery, CLI, sync, schema conformance, primary keys) on the example files
plus one file with bad rows, so both streams have records."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from singer_sdk.testing import get_tap_test_class

from orderhub.connectors.orderfile.samples import write_csv, write_samples
from orderhub.connectors.orderfile.tap import TapOrderFile

from .test_quarantine import BAD_FILE_ROWS

_INBOX = Path(tempfile.mkdtemp(prefix="orderfile-standard-"))
atexit.register(shutil.rmtree, _INBOX, ignore_errors=True)
write_samples(_INBOX)
write_csv(_INBOX / "错误订单.csv", BAD_FILE_ROWS, "gbk")

TestTapOrderFile = get_tap_test_class(TapOrderFile, config={"path": str(_INBOX), "shop": "wechat-sales"})
