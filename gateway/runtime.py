"""The running gateway's shared objects: settings, the store's engine and its session factory."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.store.db import make_engine, make_read_sessions, make_sessions, upgrade


@dataclass
class Runtime:
    """What every edge (web app, worker, CLI command) works with."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def open_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Connect to the configured store and, unless told otherwise, bring its schema up to date."""
    engine = make_engine(settings.effective_database_url)
    if migrate:
        upgrade(engine)
    return Runtime(settings, engine, make_sessions(engine), make_read_sessions(engine))
