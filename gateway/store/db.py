"""Engines, sessions and schema migrations of the event store."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "eventgw_read_only"
BUSY_SECONDS = 30
# JSON columns (an event's data, a destination's settings) through orjson: several times
# faster than the standard library on the ingest and delivery paths.
_JSON: dict[str, Any] = {"json_serializer": lambda value: orjson.dumps(value).decode(),
                         "json_deserializer": orjson.loads}


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run while one writer ingests; busy_timeout makes concurrent writers
    # wait instead of failing at once. The driver's own transaction handling is switched
    # off so that _WriterTurns.begin can start every transaction itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
    cursor.close()


class _WriterTurns:
    """One SQLite write transaction at a time per engine, handed over inside the process.

    SQLite's own busy handler makes a waiting writer poll with sleeps that grow to 100 ms,
    so a delivery thread queued behind a few short transactions would stall for far longer
    than they take. Waiting on a lock instead wakes the next writer the moment the previous
    one has committed. Writers in other processes still wait through busy_timeout.
    """

    def __init__(self, timeout: float) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout

    def begin(self, connection: Connection) -> None:
        """Start the connection's transaction: a snapshot for read-only work, else the write lock."""
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
            return
        # BEGIN IMMEDIATE takes the write lock up front. A deferred transaction that reads
        # and then writes fails at once with "database is locked" when another writer
        # committed in between, which would break every lease and mark-as-read.
        driver = connection.connection.dbapi_connection
        if not self._lock.acquire(timeout=self._timeout):
            raise exc.OperationalError("BEGIN IMMEDIATE", None,
                                       sqlite3.OperationalError("database is locked (waited for another writer)"))
        driver.turns = self  # type: ignore[union-attr]
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            driver.end_turn()  # type: ignore[union-attr]
            raise

    def release(self) -> None:
        """Give the turn to the next writer."""
        self._lock.release()


class _TurnTakingConnection(sqlite3.Connection):
    """A driver connection that gives its engine's writer turn back once its transaction has ended."""

    turns: _WriterTurns | None = None

    def commit(self) -> None:
        """Commit, then hand the turn on."""
        try:
            super().commit()
        finally:
            self.end_turn()

    def rollback(self) -> None:
        """Roll back, then hand the turn on."""
        try:
            super().rollback()
        finally:
            self.end_turn()

    def close(self) -> None:
        """Close, handing the turn on if a transaction was still open."""
        try:
            super().close()
        finally:
            self.end_turn()

    def end_turn(self) -> None:
        """Hand the turn on if this connection holds it."""
        turns, self.turns = self.turns, None
        if turns is not None:
            turns.release()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL mode, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_SECONDS,
                                                  "factory": _TurnTakingConnection}, **_JSON)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _WriterTurns(BUSY_SECONDS).begin)
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
