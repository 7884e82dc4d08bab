"""The pull core: modes, crash safety, recovery window and retention, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bench.eventgen import generate
from gateway import pull
from gateway.accounts import NewAccount, create_account
from gateway.delivery import retention
from gateway.errors import NotFound, ValidationError
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from gateway.store.models import Event, PullBatch, QueueItem, utcnow
from tests.support.runtime import make_runtime


def _ago(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)


def _ids(batch: pull.Batch) -> list[str]:
    return [event["id"] for event in batch.events]


def _take(runtime: Runtime, account: NewAccount, limit: int, mode: pull.Mode, types: list[str] | None = None
          ) -> pull.Batch:
    return pull.get_batch(runtime.sessions, account.id, types or [], limit, mode, lambda batch: batch)


def _waiting(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(QueueItem).where(QueueItem.state != "done")))


@pytest.fixture
def stored(runtime: Runtime, account: NewAccount) -> list[str]:
    raws = list(generate(50, seed=11))
    ingest_request(runtime.sessions, account.id, raws)
    return [raw["id"] for raw in raws]


def test_a_render_that_fails_marks_nothing(runtime: Runtime, account: NewAccount, stored: list[str]) -> None:
    def crash(batch: pull.Batch) -> None:
        raise RuntimeError("connection lost while answering")

    with pytest.raises(RuntimeError):
        pull.get_batch(runtime.sessions, account.id, [], 20, "read", crash)
    assert _waiting(runtime) == 50
    assert _ids(_take(runtime, account, 50, "peek")) == stored


def test_read_takes_the_oldest_and_removes_them(runtime: Runtime, account: NewAccount, stored: list[str]) -> None:
    first = _take(runtime, account, 20, "read")
    second = _take(runtime, account, 100, "read")
    assert _ids(first) == stored[:20]
    assert _ids(second) == stored[20:]
    assert _take(runtime, account, 100, "read").events == []


def test_peek_changes_nothing(runtime: Runtime, account: NewAccount, stored: list[str]) -> None:
    assert _ids(_take(runtime, account, 10, "peek")) == stored[:10]
    assert _ids(_take(runtime, account, 10, "peek")) == stored[:10]
    assert _waiting(runtime) == 50


def test_only_the_asked_types(runtime: Runtime, account: NewAccount, stored: list[str]) -> None:
    batch = _take(runtime, account, 100, "read", ["OPEN", "CLICK"])
    assert batch.events and {event["type"] for event in batch.events} <= {"OPEN", "CLICK"}
    assert _waiting(runtime) == 50 - len(batch.events)


def test_a_lease_hides_until_acknowledged(runtime: Runtime, account: NewAccount, stored: list[str]) -> None:
    leased = _take(runtime, account, 10, "lease")
    assert _ids(_take(runtime, account, 10, "peek")) == stored[10:20]
    assert pull.acknowledge(runtime.sessions, account.id, leased.id or "") == 10
    assert _waiting(runtime) == 40


def test_an_expired_lease_gives_the_events_back(runtime: Runtime, account: NewAccount, stored: list[str]) -> None:
    leased = _take(runtime, account, 10, "lease")
    with runtime.sessions.begin() as session:  # the lease runs out
        session.execute(update(QueueItem).where(QueueItem.lease_id == leased.id).values(due_at=_ago(1)))
    again = _take(runtime, account, 10, "lease")
    assert _ids(again) == stored[:10]
    assert pull.acknowledge(runtime.sessions, account.id, leased.id or "") == 0
    assert pull.acknowledge(runtime.sessions, account.id, again.id or "") == 10


def test_a_batch_can_be_fetched_again_within_the_recovery_window(runtime: Runtime, account: NewAccount,
                                                                  other_account: NewAccount,
                                                                  stored: list[str]) -> None:
    taken = _take(runtime, account, 15, "read")
    again = pull.batch_again(runtime.sessions, account.id, taken.id or "", timedelta(days=5))
    assert _ids(again) == _ids(taken)
    with pytest.raises(NotFound):
        pull.batch_again(runtime.sessions, other_account.id, taken.id or "", timedelta(days=5))
    with runtime.sessions.begin() as session:
        session.execute(update(PullBatch).values(created_at=_ago(6 * 86400)))
    with pytest.raises(NotFound):
        pull.batch_again(runtime.sessions, account.id, taken.id or "", timedelta(days=5))


@pytest.mark.parametrize("value", [0, -1, 10_001, "abc", "1.5", True, None])
def test_batch_sizes_outside_1_to_10000_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        pull.check_max(value, "max")
    assert raised.value.problems[0].field == "max"


def test_collected_events_are_purged_after_retention(tmp_path: Path, store_url: str) -> None:
    runtime = make_runtime(store_url, tmp_path / "purge", retention_days=1, recovery_days=1)
    try:
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", "S3cret-pass")
        ingest_request(runtime.sessions, account.id, list(generate(30, seed=12)))
        pull.get_batch(runtime.sessions, account.id, [], 20, "read", lambda batch: batch)
        assert retention.purge(runtime.sessions, runtime.settings).queue_rows == 0
        with runtime.sessions.begin() as session:
            session.execute(update(QueueItem).where(QueueItem.state == "done").values(done_at=_ago(2 * 86400)))
            session.execute(update(Event).values(received_at=_ago(2 * 86400)))
        purged = retention.purge(runtime.sessions, runtime.settings)
        assert (purged.queue_rows, purged.events) == (20, 20)
        with runtime.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Event)) == 10
        assert _waiting(runtime) == 10
    finally:
        runtime.close()
