"""an order's lines in its own row; ``hub_order_lines`` becomes a view

Storing lines as rows cost PostgreSQL more than storing the orders (measured on the 200k-order / 600k-line
benchmark: 3.5 s of 7.9 s for the three hub tables, the lines' primary-key entries most of it), and every reader
fetches an order's lines with the order anyway. The lines move into ``hub_orders.lines`` (a JSON array of objects
with the canonical line fields; quantities and amounts as exact decimal text). SQL users keep
``SELECT … FROM hub_order_lines``: a view with the same columns and types.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# frozen here (a migration must not change when schema.py does later)
COLUMNS = (("line_no", "integer"), ("source_line_id", "varchar(128)"), ("canonical_sku", "varchar(128)"),
           ("source_sku", "varchar(128)"), ("sku_name", "varchar(255)"), ("qty", "numeric(18,4)"),
           ("unit_price", "numeric(18,4)"), ("amount", "numeric(18,4)"), ("is_gift", "boolean"),
           ("line_status", "varchar(32)"), ("source_line_status", "varchar(64)"), ("refund_status", "varchar(32)"))
MONEY = {"qty", "unit_price", "amount"}


def _sqlite_type(typ: str) -> str:
    """SQLite has no decimal or boolean type."""
    return "NUMERIC" if typ.startswith("numeric") else "INTEGER" if typ in ("integer", "boolean") else "TEXT"


def _lines_select(dialect: str) -> str:
    """One row per stored line: order_id and COLUMNS, typed (the view's body; the downgrade reads through it)."""
    if dialect == "postgresql":
        cols = ", ".join(f"{n} {typ}" for n, typ in COLUMNS)
        return ("SELECT o.order_id, l.* FROM hub_orders o "
                f"CROSS JOIN LATERAL json_to_recordset(o.lines) AS l({cols})")
    cols = ", ".join(f"CAST(json_extract(j.value, '$.{n}') AS {_sqlite_type(typ)}) AS {n}" for n, typ in COLUMNS)
    return f"SELECT o.order_id, {cols} FROM hub_orders o, json_each(o.lines) j"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table('hub_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lines', sa.JSON(), nullable=True))
    if dialect == "postgresql":
        obj = ", ".join(f"'{n}', " + (f"{n}::text" if n in MONEY else n) for n, _ in COLUMNS)
        op.execute("UPDATE hub_orders o SET lines = s.j FROM (SELECT order_id, json_agg(json_build_object("
                   f"{obj}) ORDER BY line_no) AS j FROM hub_order_lines GROUP BY order_id) s "
                   "WHERE o.order_id = s.order_id")
    else:
        obj = ", ".join(f"'{n}', " + (f"CAST({n} AS TEXT)" if n in MONEY else
                                       f"json(CASE WHEN {n} THEN 'true' WHEN NOT {n} THEN 'false' END)"
                                       if n == "is_gift" else n) for n, _ in COLUMNS)
        op.execute("UPDATE hub_orders SET lines = (SELECT json_group_array(json(x)) FROM (SELECT json_object("
                   f"{obj}) AS x FROM hub_order_lines l WHERE l.order_id = hub_orders.order_id ORDER BY line_no))")
    op.execute("UPDATE hub_orders SET lines = '[]' WHERE lines IS NULL")
    op.drop_table('hub_order_lines')
    op.execute(f"CREATE VIEW hub_order_lines AS {_lines_select(dialect)}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("DROP VIEW hub_order_lines")
    cols = ", ".join(f"{n} {typ}" + (" NOT NULL" if n in ("line_no", "qty") else "") for n, typ in COLUMNS)
    op.execute(f"CREATE TABLE hub_order_lines (order_id varchar(40) NOT NULL, {cols}, "
               "PRIMARY KEY (order_id, line_no))")
    names = ", ".join(n for n, _ in COLUMNS)
    op.execute(f"INSERT INTO hub_order_lines (order_id, {names}) SELECT order_id, {names} "
               f"FROM ({_lines_select(dialect)}) AS stored")
    with op.batch_alter_table('hub_orders', schema=None) as batch_op:
        batch_op.drop_column('lines')
