"""indexes that earn their cost: the duplicate-submission recall, lookups by source order id

Adds ``ix_hub_orders_source_created`` (source_system, created_at) for the duplicate-submission recall and
``ix_hub_orders_source_order`` for lookups by the platform's order number. Drops what no query used but every
insert paid for: the unique (source_system, shop_id, source_order_id) constraint — implied by the primary key,
since ``order_id`` is derived from exactly those three — and the status, updated-at and lineage run indexes.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hub_orders', schema=None) as batch_op:
        batch_op.drop_constraint('uq_hub_orders_source', type_='unique')
        batch_op.drop_index('ix_hub_orders_status')
        batch_op.drop_index('ix_hub_orders_updated')
        batch_op.create_index('ix_hub_orders_source_created', ['source_system', 'created_at'], unique=False)
        batch_op.create_index('ix_hub_orders_source_order', ['source_order_id'], unique=False)
    with op.batch_alter_table('hub_lineage', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_lineage_run')


def downgrade() -> None:
    with op.batch_alter_table('hub_lineage', schema=None) as batch_op:
        batch_op.create_index('ix_hub_lineage_run', ['run_id'], unique=False)
    with op.batch_alter_table('hub_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_orders_source_order')
        batch_op.drop_index('ix_hub_orders_source_created')
        batch_op.create_index('ix_hub_orders_updated', ['updated_at'], unique=False)
        batch_op.create_index('ix_hub_orders_status', ['status'], unique=False)
        batch_op.create_unique_constraint('uq_hub_orders_source', ['source_system', 'shop_id', 'source_order_id'])
