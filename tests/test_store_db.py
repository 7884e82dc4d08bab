"""Transactions: on SQLite one writer at a time in the process, a turn that is never left held; on
PostgreSQL a transaction a deadlock aborted runs again."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, exc, text
from sqlalchemy.orm import Session

from gateway.store.db import in_transaction, make_engine, make_read_sessions, make_sessions


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


def test_a_transaction_aborted_by_a_deadlock_runs_again(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1, 0), (2, 0)"))
        sessions = make_sessions(engine)
        both_hold_one = threading.Barrier(2)
        tries: list[int] = []

        def lock_both(first: int, second: int) -> None:
            def work(session: Session) -> None:
                tries.append(first)
                session.execute(text("UPDATE t SET x = x + 1 WHERE id = :id"), {"id": first})
                if len(tries) <= 2:  # the first try of each: make them wait on each other
                    both_hold_one.wait(timeout=10)
                session.execute(text("UPDATE t SET x = x + 1 WHERE id = :id"), {"id": second})
            in_transaction(sessions, work)

        threads = [threading.Thread(target=lock_both, args=order) for order in ((1, 2), (2, 1))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert len(tries) == 3  # one of the two was chosen as the deadlock victim and ran again
        with engine.connect() as connection:
            assert connection.execute(text("SELECT x FROM t ORDER BY id")).scalars().all() == [2, 2]
    finally:
        engine.dispose()


def test_other_failures_are_not_run_again(engine: Engine) -> None:
    tries: list[int] = []

    def fail(session: Session) -> None:
        tries.append(1)
        session.execute(text("INSERT INTO nowhere VALUES (1)"))

    with pytest.raises(exc.OperationalError):
        in_transaction(make_sessions(engine), fail)
    assert tries == [1]
