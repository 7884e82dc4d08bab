"""Engines, sessions and schema migrations of the event store."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "eventgw_read_only"
# JSON columns (an event's data, a destination's settings) through orjson: several times
# faster than the standard library on the ingest and delivery paths.
_JSON: dict[str, Any] = {"json_serializer": lambda value: orjson.dumps(value).decode(),
                         "json_deserializer": orjson.loads}


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while one writer ingests; busy_timeout makes concurrent writers
    # wait instead of failing at once. The driver's own transaction handling is switched
    # off so that _sqlite_begin can start every transaction itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout). A deferred
    # transaction that reads and then writes fails at once with "database is locked" when
    # another writer committed in between, which would break every lease and mark-as-read.
    # Read-only work (see make_read_sessions) reads a snapshot and never blocks writers.
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL mode, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **_JSON)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **_JSON)


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory: use one session per unit of work (`with sessions.begin() as s:`)."""
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory for work that only reads (exports, listings): on SQLite it reads a
    snapshot without taking the write lock, so a long read never stalls ingest or delivery."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    """An alembic configuration bound to ``engine`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the schema migrations up to ``revision``."""
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
