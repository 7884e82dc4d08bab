"""File destinations name their files by a template and keep a record of their periods; existing ones keep
their names

Every ftp and sftp destination gets its file name as a template (``events-%Y%m%d.log`` becomes
``events-{start:%Y%m%d}.log``; no template means the name files had before templates) and
keeps uploading nothing for a period without events, as before; ``file_periods`` records each
period cut from now on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""
from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

FILE_KINDS = ('ftp', 'sftp')
# The names files had before templates, by period.
OLD_DEFAULTS = {'daily': 'events-%Y%m%d.log', 'hourly': 'events-%Y%m%d-%H.log'}
STRFTIME_RUN = re.compile(r'(?:%[A-Za-z])+')
DESTINATIONS = sa.table('destinations', sa.column('id', sa.Integer), sa.column('kind', sa.String),
                        sa.column('settings', sa.JSON))


def template_of(pattern: str) -> str:
    """A strftime pattern as a template (a copy of the rule at the time of this migration)."""
    escaped = pattern.replace('%%', '\0').replace('{', '{{').replace('}', '}}')
    return STRFTIME_RUN.sub(lambda m: '{start:' + m.group(0) + '}', escaped).replace('\0', '%')


def pattern_of(template: str) -> str:
    """A template as a strftime pattern again ({start} gives its format; other fields, which patterns
    cannot express, are kept as they are)."""
    parts = []
    for literal, field, spec, _ in string.Formatter().parse(template):
        parts.append(literal.replace('%', '%%'))
        if field == 'start':
            parts.append(spec or '')
        elif field is not None:
            parts.append('{' + field + (':' + spec if spec else '') + '}')
    return ''.join(parts)


def _upgraded(settings: dict[str, Any]) -> dict[str, Any]:
    pattern = settings.get('file_name') or OLD_DEFAULTS[settings.get('period', 'daily')]
    return {**settings, 'file_name': template_of(pattern), 'empty_files': False}


def _downgraded(settings: dict[str, Any]) -> dict[str, Any]:
    kept = {key: value for key, value in settings.items()
            if key not in ('empty_files', 'trigger', 'zip', 'pgp_public_key')}
    if 'file_name' in kept:
        kept['file_name'] = pattern_of(kept['file_name'])
    return kept


def _rewrite(change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(DESTINATIONS.c.id, DESTINATIONS.c.settings)
                              .where(DESTINATIONS.c.kind.in_(FILE_KINDS))).all()
    for ident, settings in rows:
        connection.execute(DESTINATIONS.update().where(DESTINATIONS.c.id == ident)
                           .values(settings=change(dict(settings or {}))))


def upgrade() -> None:
    op.create_table(
        'file_periods',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('destination_id', sa.Integer(), nullable=False),
        sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('event_count', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=True),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['destination_id'], ['destinations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('destination_id', 'starts_at', name='uq_file_periods_start'),
        sa.UniqueConstraint('destination_id', 'name', name='uq_file_periods_name'),
    )
    _rewrite(_upgraded)


def downgrade() -> None:
    _rewrite(_downgraded)
    op.drop_table('file_periods')
