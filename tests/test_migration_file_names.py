"""Migration 0004 on both databases: file destinations stored before name templates keep their files' names."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine

from gateway.destinations.files import FilePlan, Period
from gateway.store.db import alembic_config, current_revision, make_engine, upgrade

ACCOUNTS = sa.table("accounts", sa.column("id", sa.Integer), sa.column("name", sa.String),
                    sa.column("password_hash", sa.String), sa.column("created_at", sa.DateTime(timezone=True)))
DESTINATIONS = sa.table(
    "destinations", sa.column("id", sa.Integer), sa.column("account_id", sa.Integer), sa.column("kind", sa.String),
    sa.column("name", sa.String), sa.column("settings", sa.JSON), sa.column("active", sa.Boolean),
    sa.column("consecutive_failures", sa.Integer), sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)))
SERVER = {"host": "ftp.example.com", "username": "u", "password": "p"}
# As revision 0003 stored them: no file name (the default then), a strftime pattern with gzip, an hourly one.
BEFORE = {
    2: ("ftp", {**SERVER, "line_format": "csv"}),
    3: ("sftp", {**SERVER, "known_hosts": "x", "file_name": "acme-%Y%m%d_%%{x}.txt", "gzip": True}),
    4: ("ftp", {**SERVER, "period": "hourly", "line_format": "jsonl"}),
    5: ("email", {"recipients": ["a@example.com"], "batch_max_events": 10}),
}
NOON = Period(datetime(2026, 11, 27, 12, tzinfo=timezone.utc), datetime(2026, 11, 27, 13, tzinfo=timezone.utc))
DAY = Period(datetime(2026, 11, 27, tzinfo=timezone.utc), datetime(2026, 11, 28, tzinfo=timezone.utc))


@pytest.fixture()
def at_0003(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    upgrade(engine, "0003")
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        connection.execute(ACCOUNTS.insert().values(id=1, name="acme", password_hash="x", created_at=now))
        connection.execute(DESTINATIONS.insert(), [
            {"id": ident, "account_id": 1, "kind": kind, "name": "", "settings": settings, "active": True,
             "consecutive_failures": 0, "created_at": now, "updated_at": now}
            for ident, (kind, settings) in BEFORE.items()])
    yield engine
    engine.dispose()


def stored(engine: Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as connection:
        return {ident: settings for ident, settings in connection.execute(
            sa.select(DESTINATIONS.c.id, DESTINATIONS.c.settings).order_by(DESTINATIONS.c.id))}


def test_existing_file_destinations_keep_their_names_and_upload_no_empty_files(at_0003: Engine) -> None:
    upgrade(at_0003, "0004")

    after = stored(at_0003)
    assert after[2] == {**BEFORE[2][1], "file_name": "events-{start:%Y%m%d}.log", "empty_files": False}
    assert after[3]["file_name"] == "acme-{start:%Y%m%d}_%{{x}}.txt"
    assert after[4]["file_name"] == "events-{start:%Y%m%d}-{start:%H}.log"
    assert after[5] == BEFORE[5][1]  # not a file destination
    # The names are the ones files had before templates: the legacy pattern, then .gz.
    assert FilePlan.from_stored(after[2]).remote_name(DAY) == "events-20261127.log"  # not .csv
    assert FilePlan.from_stored(after[3]).remote_name(DAY) == "acme-20261127_%{x}.txt.gz"
    assert FilePlan.from_stored(after[4]).remote_name(NOON) == "events-20261127-12.log"
    assert not FilePlan.from_stored(after[2]).empty_files
    with at_0003.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM file_periods")).scalar() == 0


def test_the_migration_can_be_undone(at_0003: Engine) -> None:
    upgrade(at_0003, "0004")

    command.downgrade(alembic_config(at_0003), "0003")

    assert current_revision(at_0003) == "0003"
    assert stored(at_0003) == {ident: settings for ident, (_, settings) in BEFORE.items()} | {
        2: {**BEFORE[2][1], "file_name": "events-%Y%m%d.log"},
        4: {**BEFORE[4][1], "file_name": "events-%Y%m%d-%H.log"}}
    with at_0003.connect() as connection:
        assert "file_periods" not in sa.inspect(connection).get_table_names()
