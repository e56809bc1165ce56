"""Files already imported are remembered by content (SHA-256) in the tap state: a re-run or a renamed copy
imports nothing, an edited file is imported again."""
from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

from orderhub.connectors.orderfile.samples import PHONE_UTF8_BOM, write_csv

from .conftest import run_tap
from .test_quarantine import BAD_FILE_ROWS


def test_rerun_with_the_state_imports_nothing_again(config, inbox: Path):
    write_csv(inbox / "错误订单.csv", BAD_FILE_ROWS, "gbk")
    first = run_tap(config)
    assert (len(first.orders), len(first.rejects)) == (9, 12)
    files = first.state["bookmarks"]["file_orders"]["files"]
    assert {v["file"] for v in files.values()} == {
        "微信订单_20240506.csv", "广州五金展_20240510.xlsx", "电话订单_20240508.csv", "错误订单.csv"}
    assert files == {k: v | {"read_at": files[k]["read_at"]}
                     for k, v in first.state["bookmarks"]["orderfile_rejects"]["files"].items()}
    second = run_tap(config, state=first.state)
    assert (second.order_records, second.rejects) == ([], [])
    assert second.state["bookmarks"] == first.state["bookmarks"]


def test_a_renamed_copy_is_not_imported_twice(config, inbox: Path):
    first = run_tap(config)
    shutil.copy(inbox / "微信订单_20240506.csv", inbox / "微信订单_20240506 (1).csv")
    (inbox / "广州五金展_20240510.xlsx").rename(inbox / "展会订单-最终版.xlsx")
    again = run_tap(config, state=first.state)
    assert again.order_records == [] and again.rejects == []


def test_the_same_content_twice_in_one_run_is_imported_once(config, inbox: Path):
    shutil.copy(inbox / "电话订单_20240508.csv", inbox / "电话订单_副本.csv")
    run = run_tap(config)
    assert len(run.order_records) == 7
    assert {o["_file"] for o in run.order_records if o["order_no"].startswith("TEL")} == {"电话订单_20240508.csv"}


def test_an_edited_file_is_imported_again_with_its_new_content(config, inbox: Path):
    first = run_tap(config)
    rows = [list(r) for r in PHONE_UTF8_BOM]
    rows[3][10] = "400件"  # TEL-0508-02: 300 → 400
    write_csv(inbox / "电话订单_20240508.csv", rows, "utf-8-sig")
    again = run_tap(config, state=first.state)
    assert sorted(again.orders) == ["TEL-0508-01", "TEL-0508-02"]
    assert again.orders["TEL-0508-02"]["lines"][0]["qty"] == Decimal("400")
    assert again.orders["TEL-0508-02"]["goods_amount"] == Decimal("240.00")
    third = run_tap(config, state=again.state)
    assert third.order_records == []


def test_a_fixed_file_releases_its_held_orders(tmp_path: Path):
    cfg = {"path": str(tmp_path), "shop": "s"}
    write_csv(tmp_path / "错误订单.csv", BAD_FILE_ROWS, "gbk")
    first = run_tap(cfg)
    assert "B-002" not in first.orders
    fixed = [list(r) for r in BAD_FILE_ROWS]
    fixed[4][8] = "10"  # row 5: 十个 → 10
    fixed[6][0] = "B-002"  # row 7 had no 订单号 and was held with B-002 above it
    write_csv(tmp_path / "错误订单.csv", fixed, "gbk")
    second = run_tap(cfg, state=first.state)
    assert sorted(second.orders) == ["A-001", "B-002", "G-007"]
    assert second.orders["B-002"]["_rows"] == [5, 6, 7]
