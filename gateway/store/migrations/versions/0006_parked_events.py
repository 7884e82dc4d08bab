"""Events no sink can render are parked alone, with their error

A queue row gets an ``error`` column and the state ``parked``; the parked rows of a
destination are found (for its statistics, and by retention) through a partial index
that holds only them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

IS_PARKED = sa.text("state = 'parked'")


def upgrade() -> None:
    with op.batch_alter_table('queue') as batch:
        batch.add_column(sa.Column('error', sa.Text(), nullable=True))
    op.create_index('ix_queue_parked', 'queue', ['destination_id', 'done_at'], unique=False,
                    sqlite_where=IS_PARKED, postgresql_where=IS_PARKED)


def downgrade() -> None:
    op.drop_index('ix_queue_parked', table_name='queue')
    with op.batch_alter_table('queue') as batch:
        batch.drop_column('error')
