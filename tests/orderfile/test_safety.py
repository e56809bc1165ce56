"""Nothing outside the configured folder is ever read, odd files cannot hang or crash a run, and a large file
is read with flat memory."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orderhub.connectors.common.errors import ConfigError
from orderhub.connectors.orderfile.files import FileRefused, Inbox
from orderhub.connectors.orderfile.samples import write_csv

from .conftest import run_tap
from .test_quarantine import HEADER, _row


@pytest.mark.parametrize("pattern", ["../*.csv", "sub/../../*.csv", "..\\*.csv", "/etc/*.csv", "**/../*.csv"])
def test_glob_patterns_reaching_outside_the_folder_are_refused(tmp_path: Path, pattern: str):
    with pytest.raises(ConfigError, match="glob"):
        run_tap({"path": str(tmp_path), "shop": "s", "glob": [pattern]})


@pytest.mark.parametrize("name", ["../secret.csv", "a/../../secret.csv", "/etc/passwd", "C:\\orders.csv"])
def test_names_with_dotdot_or_absolute_paths_are_refused(tmp_path: Path, name: str):
    with pytest.raises(ConfigError):
        Inbox(tmp_path).resolve(name)


def test_a_symlink_pointing_outside_the_folder_is_not_read(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_csv(outside / "other_company.csv", [HEADER, _row("SECRET-1")], "utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_csv(inbox / "ok.csv", [HEADER, _row("OK-1")], "utf-8")
    os.symlink(outside / "other_company.csv", inbox / "link.csv")
    os.symlink(outside, inbox / "linked_dir")
    (inbox / "inside_link.csv").symlink_to(inbox / "ok.csv")  # inside the folder: fine (same content, read once)
    cfg = {"path": str(inbox), "shop": "s", "glob": ["*.csv", "**/*.csv", "linked_dir/*.csv"]}
    run = run_tap(cfg)
    assert list(run.orders) == ["OK-1"]
    assert run.reasons() == {("link.csv", 0, "outside_folder", None),
                             ("linked_dir/other_company.csv", 0, "outside_folder", None)}
    again = run_tap(cfg, state=run.state)
    assert again.rejects == [] and again.order_records == []  # reported once, not on every run


def test_a_fifo_matching_the_glob_is_not_opened(tmp_path: Path):
    os.mkfifo(tmp_path / "pipe.csv")  # opening it for reading would block forever
    write_csv(tmp_path / "ok.csv", [HEADER, _row("OK-1")], "utf-8")
    assert list(run_tap({"path": str(tmp_path), "shop": "s"}).orders) == ["OK-1"]


def test_excel_lock_files_and_hidden_files_are_ignored(tmp_path: Path):
    write_csv(tmp_path / "ok.csv", [HEADER, _row("OK-1")], "utf-8")
    (tmp_path / "~$订单.xlsx").write_bytes(b"\x00lock")
    write_csv(tmp_path / ".~orders.csv", [HEADER, _row("HIDDEN-1")], "utf-8")
    run = run_tap({"path": str(tmp_path), "shop": "s"})
    assert list(run.orders) == ["OK-1"] and run.rejects == []


def test_missing_folder_and_missing_shop_are_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="path"):
        Inbox(tmp_path / "nope")
    with pytest.raises(ConfigError, match="shop"):
        from orderhub.connectors.orderfile.reader import ReaderSettings

        ReaderSettings.from_config({"path": str(tmp_path)})


def test_inbox_lists_refusals_instead_of_raising(tmp_path: Path):
    os.symlink("/etc/hostname", tmp_path / "h.csv")
    (item,) = list(Inbox(tmp_path).files())
    assert isinstance(item, FileRefused) and item.code == "outside_folder"


_MEMORY_PROBE = textwrap.dedent("""
    import csv, resource, sys
    from orderhub.connectors.orderfile.reader import ReaderSettings, read_order_file, FileStats

    def write(path, n_orders):  # the 3 rows of an order are far apart: grouping must hold all orders
        with open(path, "w", encoding="gbk", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["订单号", "客户", "收货地址", "商品编码", "品名", "数量", "单价", "金额"])
            for j in range(3):
                for i in range(n_orders):
                    w.writerow([f"SO{i:07d}", f"客户{i % 500}", "浙江省杭州市西湖区文三路1号", f"SKU-{j}", "螺栓",
                                j + 1, "1.50", f"{1.5 * (j + 1):.2f}"])

    def peak_after(path, n_orders, spill):
        write(path, n_orders)
        stats = FileStats()
        with open(path, "rb") as fh:
            n = sum(1 for _ in read_order_file(fh, name="big.csv", sha256="0" * 64,
                                               settings=ReaderSettings(shop="s", spill_rows=spill), stats=stats))
        assert n == n_orders == stats.orders and stats.lines == 3 * n_orders and stats.spilled
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    small = peak_after(sys.argv[1], 1_000, 500)
    large = peak_after(sys.argv[1], 10_000, 500)
    print(small, large)
""")


def test_a_large_file_is_read_with_flat_memory(tmp_path: Path):
    """3k rows, then 30k rows whose orders are spread over the whole file: peak RSS grows by less than 8 MB
    (grouped in memory instead, the 30k rows take about 17 MB more)."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tmp_path / "big.csv")], capture_output=True,
                         text=True, check=True, timeout=120)
    small, large = map(int, out.stdout.split())
    assert large - small < 8, (small, large)


def test_files_still_being_copied_wait_for_the_next_run(tmp_path: Path):
    write_csv(tmp_path / "new.csv", [HEADER, _row("NEW-1")], "utf-8")
    cfg = {"path": str(tmp_path), "shop": "s", "min_file_age_seconds": 60}
    assert run_tap(cfg).order_records == []
    os.utime(tmp_path / "new.csv", (1_700_000_000, 1_700_000_000))
    assert list(run_tap(cfg).orders) == ["NEW-1"]


def test_odd_but_legal_file_names_inside_the_folder_are_read(tmp_path: Path):
    write_csv(tmp_path / "a:b.csv", [HEADER, _row("COLON-1")], "utf-8")
    write_csv(tmp_path / "x\\..\\y.csv", [HEADER, _row("BACKSLASH-1")], "utf-8")
    (tmp_path / "子目录").mkdir()
    write_csv(tmp_path / "子目录" / "..订单..csv", [HEADER, _row("DOTS-1")], "utf-8")
    run = run_tap({"path": str(tmp_path), "shop": "s", "glob": ["**/*.csv"], "ignore": ["~$*"]})
    assert sorted(run.orders) == ["BACKSLASH-1", "COLON-1", "DOTS-1"]
