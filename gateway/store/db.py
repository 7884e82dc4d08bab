"""Engines, sessions and schema migrations of the event store."""
from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, exc, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "eventgw_read_only"
BUSY_SECONDS = 30
# The key of the PostgreSQL advisory lock that migrations run under ("eventgw!" in ASCII):
# any number of processes may start at once on one database, one migrates at a time.
MIGRATION_LOCK_KEY = 0x6576656E74677721
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


# SQLSTATEs after which running the whole transaction again is safe and likely to succeed:
# deadlock_detected and serialization_failure (PostgreSQL). SQLite never deadlocks: every
# write transaction holds the database's single write lock from its start.
RETRYABLE_STATES = frozenset({"40P01", "40001"})
TRANSACTION_TRIES = 4
_Result = TypeVar("_Result")


def is_retryable(error: exc.DBAPIError) -> bool:
    """Whether the database aborted a transaction only because of a concurrent one (deadlock,
    serialization failure), so that running it again is the whole remedy."""
    return getattr(error.orig, "sqlstate", None) in RETRYABLE_STATES


def in_transaction(sessions: sessionmaker[Session], work: Callable[[Session], _Result],
                   tries: int = TRANSACTION_TRIES) -> _Result:
    """Run ``work`` in a write transaction of its own, again (after a short random pause) when the
    database aborted it for a deadlock or a serialization failure; at most ``tries`` times."""
    for attempt in range(1, tries + 1):
        try:
            with sessions.begin() as session:
                return work(session)
        except exc.DBAPIError as error:
            if attempt == tries or not is_retryable(error):
                raise
            log.info("transaction aborted by a concurrent one (%s); try %s of %s",
                     getattr(error.orig, "sqlstate", ""), attempt + 1, tries)
            # Jitter, so that the transactions that collided do not collide again.
            time.sleep(random.uniform(0.0, 0.05 * attempt))
    raise AssertionError("unreachable")


def alembic_config(engine: Engine) -> Config:
    """An alembic configuration bound to ``engine`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the schema migrations up to ``revision``, one process at a time.

    Processes that start together on an empty or an old database wait for each other: the
    first migrates, the others then find the schema up to date.
    """
    with migration_lock(engine):
        command.upgrade(alembic_config(engine), revision)


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's migration lock: on PostgreSQL an advisory lock, on SQLite nothing more
    than the write lock that every migration transaction takes (BEGIN IMMEDIATE)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    # A connection of its own, closed afterwards rather than returned to the pool: closing
    # it releases the lock even if unlocking fails, and no pooled connection keeps it.
    # Alembic runs on another connection, so its transactional DDL is unchanged.
    with engine.connect() as holder:
        try:
            holder.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            holder.commit()
            yield
        finally:
            holder.invalidate()


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None: empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
