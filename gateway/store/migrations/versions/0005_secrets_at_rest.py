"""Secrets encrypted at rest, session ids hashed, login throttling per client address

Every secret among destinations' settings is sealed with the store's key (gateway.vault):
the one the gateway opening the store attached to its engine, else the one its settings name
(secret_key, or secret.key in the data directory), read as the gateway reads them. SOAP
sessions end (their ids were stored in clear; the store now keeps their SHA-256), and the
counts of failed logins start afresh, per account and client address.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.vault import Vault, load_vault, reseal_destinations, vault_of

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _vault(connection: sa.Connection) -> Vault:
    try:
        return vault_of(connection.dialect)
    except ConfigError:
        return load_vault(load_settings())


def _rewrite_secrets(connection: sa.Connection, change: Callable[[Vault, Mapping[str, Any]], dict[str, Any]]) -> None:
    # The key is looked for only when a destination has a secret: a new store needs none yet.
    found = functools.cache(lambda: _vault(connection))
    reseal_destinations(connection, lambda stored: change(found(), stored))


def _login_failures(*address: sa.Column[str]) -> None:
    op.drop_table('login_failures')
    op.create_table('login_failures',
                    sa.Column('name', sa.String(length=100), nullable=False),
                    *address,
                    sa.Column('failures', sa.Integer(), nullable=False),
                    sa.Column('last_failure_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('name', *(column.name for column in address)))


def upgrade() -> None:
    _rewrite_secrets(op.get_bind(), Vault.seal_settings)
    op.execute(sa.text('DELETE FROM legacy_sessions'))
    with op.batch_alter_table('legacy_sessions', schema=None) as batch_op:
        batch_op.alter_column('id', existing_type=sa.String(length=40), type_=sa.String(length=64))
    _login_failures(sa.Column('address', sa.String(length=64), nullable=False))
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_failures_last_failure_at'), ['last_failure_at'], unique=False)


def downgrade() -> None:
    _rewrite_secrets(op.get_bind(), Vault.open_settings)
    op.execute(sa.text('DELETE FROM legacy_sessions'))
    with op.batch_alter_table('legacy_sessions', schema=None) as batch_op:
        batch_op.alter_column('id', existing_type=sa.String(length=64), type_=sa.String(length=40))
    _login_failures()
