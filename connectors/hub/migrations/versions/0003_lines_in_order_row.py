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


def _view_sql(dialect: str) -> str:
    if dialect == "postgresql":
        cols = ", ".join(f"{n} {typ}" for n, typ in COLUMNS)
        return ("CREATE VIEW hub_order_lines AS SELECT o.order_id, l.* FROM hub_orders o "
                f"CROSS JOIN LATERAL json_to_recordset(o.lines) AS l({cols})")
    cols = ", ".join(f"CAST(json_extract(j.value, '$.{n}') AS {'NUMERIC' if n in MONEY else 'INTEGER' if typ in ('integer', 'boolean') else 'TEXT'}) AS {n}"
                     for n, typ in COLUMNS)
    return f"CREATE VIEW hub_order_lines AS SELECT o.order_id, {cols} FROM hub_orders o, json_each(o.lines) j"


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
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
    op.execute(_view_sql(dialect))


def downgrade() -> None:
    bind = op.get_bind()
    op.execute("DROP VIEW hub_order_lines")
    op.create_table(
        'hub_order_lines',
        sa.Column('order_id', sa.String(length=40), nullable=False),
        sa.Column('line_no', sa.Integer(), nullable=False),
        sa.Column('source_line_id', sa.String(length=128), nullable=True),
        sa.Column('canonical_sku', sa.String(length=128), nullable=True),
        sa.Column('source_sku', sa.String(length=128), nullable=True),
        sa.Column('sku_name', sa.String(length=255), nullable=True),
        sa.Column('qty', sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column('unit_price', sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column('amount', sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column('is_gift', sa.Boolean(), nullable=True),
        sa.Column('line_status', sa.String(length=32), nullable=True),
        sa.Column('source_line_status', sa.String(length=64), nullable=True),
        sa.Column('refund_status', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('order_id', 'line_no'))
    names = ", ".join(n for n, _ in COLUMNS)
    op.execute(f"CREATE VIEW hub_lines_v AS {_view_sql(bind.dialect.name).split(' AS ', 1)[1]}")
    op.execute(f"INSERT INTO hub_order_lines (order_id, {names}) SELECT order_id, {names} FROM hub_lines_v")
    op.execute("DROP VIEW hub_lines_v")
    with op.batch_alter_table('hub_orders', schema=None) as batch_op:
        batch_op.drop_column('lines')
