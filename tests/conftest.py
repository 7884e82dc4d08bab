"""Shared fixtures: a store on SQLite and on PostgreSQL, an account, and a live gateway server.

Every module in tests/fixtures/ is loaded as a pytest plugin (real PostgreSQL, HTTP,
SMTP, FTP and SSH servers). Helpers that are not fixtures live in tests/support/.
For the whole session, a guard refuses every connection to a non-loopback address and
fails the test that tried it (tests/support/netguard.py).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import passwords
from gateway.accounts import NewAccount, create_account
from gateway.runtime import Runtime
from gateway.server import ServerThread
from tests.support.netguard import Guard
from tests.support.runtime import PASSWORD, make_runtime

pytest_plugins = ["pytester", *sorted(  # pytester: tests of the suite's own guard run a suite inside it
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)]


@pytest.fixture(scope="session", autouse=True)
def network_guard() -> Iterator[Guard]:
    """The guard against connections to non-loopback addresses, installed for the whole session."""
    guard = Guard()
    guard.install()
    yield guard
    guard.uninstall()


@pytest.fixture(autouse=True)
def loopback_only(network_guard: Guard) -> Iterator[None]:
    """Fail any test during which something tried to connect to a non-loopback address."""
    network_guard.take()
    yield
    blocked = network_guard.take()
    if blocked:
        pytest.fail(f"the test tried to connect to non-loopback addresses: {blocked}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes() -> Iterator[None]:
    """Password hashes at a test-only low cost, through the one place that sets it (gateway.passwords.COST):
    OWASP's costs 128 MiB and a third of a second per account created or login checked.
    tests/test_passwords.py checks the real cost."""
    real = passwords.COST
    passwords.COST = passwords.ScryptCost(n=2**8, r=8, p=1)
    yield
    passwords.COST = real


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
def runtime(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """A migrated store on each database, with the settings of the test's ``settings`` marker
    (``@pytest.mark.settings(max_body_bytes=2000)``)."""
    marker = request.node.get_closest_marker("settings")
    rt = make_runtime(store_url, tmp_path, **(marker.kwargs if marker else {}))
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
