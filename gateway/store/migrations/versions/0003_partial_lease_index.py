"""queue.ix_queue_lease holds only rows that have a lease id

Rows waiting for their first try have none; leaving them out of the index spares every
lease and every mark-as-read the removal of an index entry per row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

HAS_LEASE = sa.text('lease_id IS NOT NULL')


def upgrade() -> None:
    op.drop_index('ix_queue_lease', table_name='queue')
    op.create_index('ix_queue_lease', 'queue', ['destination_id', 'lease_id'], unique=False,
                    sqlite_where=HAS_LEASE, postgresql_where=HAS_LEASE)


def downgrade() -> None:
    op.drop_index('ix_queue_lease', table_name='queue')
    op.create_index('ix_queue_lease', 'queue', ['destination_id', 'lease_id'], unique=False)
