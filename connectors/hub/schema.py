"""Tables of the hub store (SQLAlchemy Core). Migrations in ``migrations/`` are generated from this module."""
from __future__ import annotations

from sqlalchemy import (JSON, Boolean, Column, DateTime, Index, Integer, MetaData, Numeric, String, Table, Text,
                        UniqueConstraint, BigInteger)

metadata = MetaData()
MONEY = Numeric(18, 4)
TS = DateTime(timezone=True)
ID = String(40)

orders = Table(
    "hub_orders", metadata,
    Column("order_id", ID, primary_key=True),
    Column("source_system", String(64), nullable=False),
    Column("channel", String(32)),
    Column("shop_id", String(128)),
    Column("source_order_id", String(128), nullable=False),
    Column("order_type", String(32)),
    Column("status", String(32), nullable=False),
    Column("base_status", String(32), nullable=False),
    Column("source_hold", Boolean, nullable=False, default=False),
    Column("status_at", TS),
    Column("status_rank", Integer, nullable=False, default=0),
    Column("source_status", String(64)),
    Column("created_at", TS), Column("paid_at", TS), Column("updated_at", TS), Column("shipped_at", TS),
    Column("customer_id", String(128)), Column("customer_name", String(255)), Column("customer_level", String(32)),
    Column("receiver_name", String(255)), Column("receiver_mobile", String(64)), Column("receiver_phone", String(64)),
    Column("receiver_province", String(64)), Column("receiver_city", String(64)),
    Column("receiver_district", String(64)), Column("receiver_town", String(64)),
    Column("receiver_address", Text), Column("receiver_zip", String(16)), Column("privacy_id", String(255)),
    Column("currency", String(3)),
    Column("total_amount", MONEY), Column("goods_amount", MONEY), Column("shipping_fee", MONEY),
    Column("discount_amount", MONEY), Column("paid_amount", MONEY),
    Column("special_requirements", Text), Column("seller_memo", Text),
    Column("is_urgent", Boolean), Column("has_gift", Boolean), Column("needs_invoice", Boolean),
    Column("invoice_title", String(255)), Column("warehouse_hint", String(64)),
    Column("held", Boolean, nullable=False, default=False),
    Column("hold_reasons", JSON),
    Column("warehouse_code", String(64)), Column("priority", String(16)), Column("merge_hint", String(40)),
    Column("mapping_version", String(64)), Column("ruleset_version", String(64)),
    Column("raw_hash", String(64)),
    Column("first_run_id", String(64)), Column("last_run_id", String(64)),
    Column("revision", Integer, nullable=False, default=1),
    Column("hub_created_at", TS), Column("hub_updated_at", TS),
    Column("lines", JSON),  # the order's lines (migration 0003)
)
# (source_system, shop_id, source_order_id) is unique through the primary key: order_id is derived from them
# (migration 0002 dropped the separate unique constraint, the status and the updated-at indexes: no query used them)
Index("ix_hub_orders_source_order", orders.c.source_order_id)
# the duplicate-submission recall: earlier orders of one source created within a window (migration 0002)
Index("ix_hub_orders_source_created", orders.c.source_system, orders.c.created_at)

# An order's lines live in its row (``hub_orders.lines``, a JSON array of the canonical line fields, quantities
# and amounts as exact decimal text): storing 600k line rows with their own primary-key entries cost PostgreSQL more than the orders
# themselves. Migration 0003 moved them there and left a view ``hub_order_lines`` (order_id + LINE_COLUMNS) for SQL.
LINE_COLUMNS = (("line_no", "integer"), ("source_line_id", "varchar(128)"), ("canonical_sku", "varchar(128)"),
                ("source_sku", "varchar(128)"), ("sku_name", "varchar(255)"), ("qty", "numeric(18,4)"),
                ("unit_price", "numeric(18,4)"), ("amount", "numeric(18,4)"), ("is_gift", "boolean"),
                ("line_status", "varchar(32)"), ("source_line_status", "varchar(64)"), ("refund_status", "varchar(32)"))

lineage = Table(
    "hub_lineage", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("order_id", ID, nullable=False),
    Column("run_id", String(64)),
    Column("event", String(32), nullable=False),  # created, updated, status, held, released, target_write, replayed
    Column("source_system", String(64)), Column("source_order_id", String(128)),
    Column("raw_hash", String(64)), Column("mapping_version", String(64)), Column("ruleset_version", String(64)),
    Column("target", String(64)), Column("result", String(32)), Column("target_ref", String(255)),
    Column("message", Text),
    Column("at", TS, nullable=False),
)
Index("ix_hub_lineage_order", lineage.c.order_id)

changes = Table(
    "hub_changes", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("order_id", ID, nullable=False),
    Column("run_id", String(64)),
    Column("field", String(64), nullable=False),
    Column("old_value", Text), Column("new_value", Text),
    Column("at", TS, nullable=False),
)
Index("ix_hub_changes_order", changes.c.order_id)

holds = Table(
    "hub_holds", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("order_id", ID, nullable=False),
    Column("reason_code", String(64), nullable=False),
    Column("message", Text),
    Column("ruleset_version", String(64)),
    Column("run_id", String(64)),
    Column("created_at", TS, nullable=False),
    Column("released_at", TS), Column("released_run_id", String(64)),
)
Index("ix_hub_holds_open", holds.c.order_id, holds.c.released_at)

quarantine = Table(
    "hub_quarantine", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source_system", String(64), nullable=False),
    Column("source_order_id", String(128)),
    Column("reason_code", String(64), nullable=False),
    Column("field", String(128)),
    Column("message", Text),
    Column("raw", Text),                      # the raw record as JSON (replayable)
    Column("raw_hash", String(64), nullable=False),
    Column("mapping_version", String(64)),
    Column("pipeline", String(128)),
    Column("run_id", String(64)), Column("last_run_id", String(64)),
    Column("seen_count", Integer, nullable=False, default=1),
    Column("state", String(16), nullable=False, default="open"),  # open, replayed, discarded
    Column("created_at", TS, nullable=False), Column("resolved_at", TS), Column("resolved_run_id", String(64)),
    UniqueConstraint("source_system", "raw_hash", name="uq_hub_quarantine_raw"),
)
Index("ix_hub_quarantine_state", quarantine.c.state, quarantine.c.reason_code)

target_writes = Table(
    "hub_target_writes", metadata,
    Column("order_id", ID, primary_key=True),
    Column("target", String(64), primary_key=True),
    Column("result", String(32), nullable=False),  # created, updated, unchanged, failed, held
    Column("target_ref", String(255)),
    Column("payload_hash", String(64)),
    Column("message", Text),
    Column("run_id", String(64)),
    Column("attempts", Integer, nullable=False, default=1),
    Column("at", TS, nullable=False),
)

state = Table(
    "hub_state", metadata,
    Column("pipeline", String(128), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", JSON),
    Column("run_id", String(64)),
    Column("updated_at", TS, nullable=False),
)

runs = Table(
    "hub_runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("pipeline", String(128)),
    Column("started_at", TS, nullable=False), Column("finished_at", TS),
    Column("status", String(16), nullable=False),  # running, completed, failed
    Column("summary", JSON),
)
