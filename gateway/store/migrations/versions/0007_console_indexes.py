"""Indexes for the console: events by recipient

The overview's counts per type and hour, and the events page's latest events of each type, are
answered by ``ix_events_account_type_time``. Finding a recipient's events would otherwise read
every event of the account: ``ix_events_account_email`` and ``ix_events_account_phone`` hold
only the events that have one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

HAS_EMAIL = sa.text('email IS NOT NULL')
HAS_PHONE = sa.text('phone IS NOT NULL')


def upgrade() -> None:
    op.create_index('ix_events_account_email', 'events', ['account_id', 'email'], unique=False,
                    sqlite_where=HAS_EMAIL, postgresql_where=HAS_EMAIL)
    op.create_index('ix_events_account_phone', 'events', ['account_id', 'phone'], unique=False,
                    sqlite_where=HAS_PHONE, postgresql_where=HAS_PHONE)


def downgrade() -> None:
    op.drop_index('ix_events_account_phone', table_name='events')
    op.drop_index('ix_events_account_email', table_name='events')
