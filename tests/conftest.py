"""Shared fixtures: a store on SQLite and on PostgreSQL, an account, and a live gateway server.

Every module in tests/fixtures/ is loaded as a pytest plugin (real PostgreSQL, HTTP,
SMTP, FTP and SSH servers). Helpers that are not fixtures live in tests/support/.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.accounts import NewAccount, create_account
from gateway.runtime import Runtime
from gateway.server import ServerThread
from tests.support.runtime import PASSWORD, make_runtime

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'eventgw.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of an empty SQLite store, for tests that need not run on both databases."""
    return f"sqlite:///{tmp_path / 'eventgw.db'}"


@pytest.fixture
def runtime(store_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A migrated store on each database."""
    rt = make_runtime(store_url, tmp_path)
    yield rt
    rt.close()


@pytest.fixture
def account(runtime: Runtime) -> NewAccount:
    """An account named acme (password PASSWORD) with its pull queue and default routes."""
    with runtime.sessions.begin() as session:
        return create_account(session, "acme", PASSWORD)


@pytest.fixture
def other_account(runtime: Runtime) -> NewAccount:
    """A second account, to prove accounts never see each other's events."""
    with runtime.sessions.begin() as session:
        return create_account(session, "globex", PASSWORD)


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[ServerThread]:
    """The gateway served over real HTTP on 127.0.0.1."""
    server = ServerThread(runtime)
    yield server
    server.close()
