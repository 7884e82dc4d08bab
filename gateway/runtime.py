"""The running gateway's shared objects: settings, the store's engine and its session factory."""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import STORE_HINT, Settings
from gateway.errors import ConfigError
from gateway.store.db import current_revision, make_engine, make_read_sessions, make_sessions, upgrade
from gateway.vault import attach, check_opens, load_vault

POSTGRES_EXTRA = "pip install 'eventgw[postgres]'"


class Role(str, enum.Enum):
    """What a gateway process runs, as its health check reports it."""

    WEB = "web"  # gateway serve --no-dispatcher (and the tests' servers)
    WEB_AND_DISPATCHER = "web+dispatcher"  # gateway serve
    WORKER = "worker"  # gateway worker


@dataclass
class Runtime:
    """What every edge (web app, worker, CLI command) works with."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    # What this process runs; set by the command that starts it.
    role: Role = Role.WEB
    # Set when the process has been told to stop: it finishes what it holds and takes nothing new.
    stopping: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def open_runtime(settings: Settings, *, migrate: bool = True, create: bool = True) -> Runtime:
    """Connect to the configured store and, unless told otherwise, bring its schema up to date.

    Without ``create`` the store must exist already: a command that only reads, or works on
    what an account owns, never leaves an empty database behind. ConfigError, naming the store
    and where it was configured, when it does not exist or cannot be opened.
    """
    url = settings.effective_database_url
    if not create:
        _require_file(settings, url)
    engine = _engine(settings, url)
    try:
        try:
            with engine.connect():
                pass
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise ConfigError(f"cannot open the store {settings.store}: {reason}") from None
        if not create and current_revision(engine) is None:
            raise ConfigError(f"no store at {settings.store}: the database has no eventgw tables; create them "
                              f"with 'gateway db upgrade', or name another store with {STORE_HINT}")
        # The store's keys, before a migration that may seal secrets with them.
        keys = load_vault(settings)
        attach(engine, keys)
        if migrate:
            upgrade(engine)
            check_opens(engine, keys)
    except BaseException:
        engine.dispose()
        raise
    return Runtime(settings, engine, make_sessions(engine), make_read_sessions(engine))


def _require_file(settings: Settings, url: str) -> None:
    """ConfigError when ``url`` names an SQLite file that does not exist (connecting would create it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    if not path.is_file():
        # A relative path is relative to the current directory: say which file that is.
        missing = "the file" if path.is_absolute() else str(path.absolute())
        raise ConfigError(f"no store at {settings.store}: {missing} does not exist; create it with 'gateway db "
                          f"upgrade' or 'gateway account create', or name another store with {STORE_HINT}")


def _engine(settings: Settings, url: str) -> Engine:
    """The store's engine; ConfigError when its database driver is missing or its directory cannot be made."""
    try:
        return make_engine(url)
    except NoSuchModuleError:
        raise ConfigError(f"cannot open the store {settings.store}: this SQLAlchemy knows no driver "
                          f"{make_url(url).drivername!r}; use sqlite:///PATH or postgresql+psycopg://...") from None
    except ImportError as exc:
        extra = (f"; the gateway talks to PostgreSQL through psycopg (postgresql+psycopg:// URLs): {POSTGRES_EXTRA}"
                 if make_url(url).get_backend_name() == "postgresql" else "")
        raise ConfigError(f"cannot open the store {settings.store}: its database driver ({exc.name or exc}) "
                          f"is not installed{extra}") from None
    except OSError as exc:
        raise ConfigError(f"cannot open the store {settings.store}: {exc}") from None
