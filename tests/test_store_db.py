"""SQLite transactions: one writer at a time in the process, a turn that is never left held."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from gateway.store.db import make_engine, make_read_sessions, make_sessions


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine
    engine.dispose()


def write_in_thread(engine: Engine, value: int) -> threading.Thread:
    """A writer in another thread; it must finish well within the busy timeout."""
    def write() -> None:
        with make_sessions(engine).begin() as session:
            session.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def values(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return sorted(row[0] for row in connection.execute(text("SELECT x FROM t")))


def test_a_second_writer_waits_until_the_first_commits(engine: Engine) -> None:
    with make_sessions(engine).begin() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        other = write_in_thread(engine, 2)
        time.sleep(0.2)
        assert other.is_alive()
        assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == 1
    other.join(timeout=5)
    assert not other.is_alive()
    assert values(engine) == [1, 2]


def test_a_failed_transaction_hands_the_turn_on(engine: Engine) -> None:
    with pytest.raises(ZeroDivisionError), make_sessions(engine).begin() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        1 / 0  # noqa: B018
    other = write_in_thread(engine, 2)
    other.join(timeout=5)
    assert not other.is_alive()
    assert values(engine) == [2]


def test_a_session_closed_without_commit_hands_the_turn_on(engine: Engine) -> None:
    session = make_sessions(engine)()
    session.execute(text("INSERT INTO t VALUES (1)"))
    session.close()
    other = write_in_thread(engine, 2)
    other.join(timeout=5)
    assert not other.is_alive()
    assert values(engine) == [2]


def test_a_connection_can_run_one_write_transaction_after_another(engine: Engine) -> None:
    with engine.connect() as connection:
        for value in (1, 2, 3):
            connection.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})
            connection.commit()
    assert values(engine) == [1, 2, 3]


def test_a_reader_never_waits_for_a_writer(engine: Engine) -> None:
    with make_sessions(engine).begin() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        seen: list[int] = []

        def read() -> None:
            with make_read_sessions(engine)() as reading:
                seen.append(reading.execute(text("SELECT count(*) FROM t")).scalar_one())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive()
        assert seen == [0]  # the snapshot before the writer commits
