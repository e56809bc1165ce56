"""The sales-order tables of the benchmark ERP (``so_header`` / ``so_line``, the shape of
``../shared/bench/erp_orders.sql``) on MariaDB: one definition for the self-test's ERP worlds and the tests' ERP
databases. Text columns are wide enough for the hostile-input corpus (names and addresses up to 255 characters)."""
from __future__ import annotations

from typing import Any

MARIADB_SCHEMA = """
CREATE TABLE so_header (
  id BIGINT PRIMARY KEY, bill_no VARCHAR(64) NOT NULL, customer_code VARCHAR(64), customer_name VARCHAR(255),
  order_date DATETIME, status VARCHAR(16), total_amount DECIMAL(18,2), currency CHAR(3), remark TEXT,
  receiver_name VARCHAR(255), receiver_phone VARCHAR(64), receiver_address VARCHAR(255), urgent TINYINT,
  updated_at DATETIME(6) NOT NULL, KEY (updated_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE so_line (
  id BIGINT PRIMARY KEY, header_id BIGINT NOT NULL, line_no INT, sku VARCHAR(64), sku_name VARCHAR(255),
  qty DECIMAL(18,4), price DECIMAL(18,4), amount DECIMAL(18,2), updated_at DATETIME(6) NOT NULL, KEY(header_id),
  KEY(updated_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""


def create_erp_tables(cursor: Any, schema: str = MARIADB_SCHEMA) -> None:
    """Run the ``;``-separated DDL ``schema`` on a DB-API cursor (of the database to create the tables in)."""
    for stmt in schema.split(";"):
        if stmt.strip():
            cursor.execute(stmt)
