"""The migrations build the schema the models describe, on both databases, and can be undone."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, Engine, Index, text

from gateway.store.db import alembic_config, current_revision, make_engine, upgrade
from gateway.store.models import Base, UTCDateTime
from tests.support.processes import gateway_env, gateway_script


@pytest.fixture()
def engine(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def differences(engine: Engine) -> list[Any]:
    """What autogenerate would change, leaving out the time columns' type (SQLite's DATETIME
    holds what the models' UTCDateTime decorator writes)."""
    with engine.connect() as connection:
        found = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    flat = [change for group in found for change in (group if isinstance(group, list) else [group])]
    return [change for change in flat
            if not (change[0] == "modify_type" and isinstance(change[-2], DateTime)
                    and isinstance(change[-1], UTCDateTime))]


def index_definitions(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        else:
            rows = connection.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
        return {name: definition or "" for name, definition in rows}


def test_the_migrated_schema_is_the_models_schema(engine: Engine) -> None:
    assert differences(engine) == []


def test_partial_indexes_are_partial(engine: Engine) -> None:
    definitions = index_definitions(engine)
    partial = [index for table in Base.metadata.tables.values() for index in table.indexes
               if isinstance(index, Index) and index.dialect_options[engine.dialect.name]["where"] is not None]
    assert {index.name for index in partial} >= {"ix_queue_pending", "ix_queue_lease"}
    for index in partial:
        assert " WHERE " in definitions[str(index.name)].upper(), definitions[str(index.name)]


def test_the_newest_migration_can_be_undone_and_done_again(engine: Engine) -> None:
    head = current_revision(engine)
    command.downgrade(alembic_config(engine), "-1")
    assert current_revision(engine) != head
    upgrade(engine)
    assert current_revision(engine) == head
    assert differences(engine) == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_processes_that_upgrade_an_empty_database_at_once_all_succeed(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    for trial in range(3):
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / f'trial{trial}.db'}"
        else:
            url = request.getfixturevalue("make_postgres_url")()
        env = gateway_env(url, tmp_path / f"home{trial}")
        upgrades = [subprocess.Popen([gateway_script(), "db", "upgrade"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True) for _ in range(6)]
        outputs = [process.communicate(timeout=120)[0] for process in upgrades]

        assert [process.returncode for process in upgrades] == [0] * 6, "\n".join(outputs)
        engine = make_engine(url)
        try:
            assert current_revision(engine) == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
            assert differences(engine) == []
        finally:
            engine.dispose()
