"""The PostgreSQL fixtures give each test a working database of its own."""
from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from tests.support.postgres import PostgresServer


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_database_round_trip(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE events (id serial PRIMARY KEY, kind text)"))
            conn.execute(sa.text("INSERT INTO events (kind) VALUES ('open'), ('click')"))
        with engine.connect() as conn:
            kinds = conn.execute(sa.text("SELECT kind FROM events ORDER BY id")).scalars()
            assert list(kinds) == ["open", "click"]
    finally:
        engine.dispose()


def test_databases_are_isolated(
    postgres_url: str, make_postgres_url: Callable[[], str]
) -> None:
    other_url = make_postgres_url()
    assert other_url != postgres_url
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE events (id integer)"))
    finally:
        engine.dispose()
    assert _tables(postgres_url) == ["events"]
    assert _tables(other_url) == []


def test_server_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    with postgres_server.connect() as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
    assert postgres_server.host == "127.0.0.1"
    assert row == ("127.0.0.1",)
