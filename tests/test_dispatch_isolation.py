"""Fault isolation in the delivery engine: poison events are parked alone, accounts get fair shares of the
dispatcher, webhooks keep to their rate limits, and a clean stop gives back what it still holds."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from gateway.accounts import NewAccount, create_account
from gateway.delivery import export
from gateway.delivery.engine import Dispatcher
from gateway.destinations import management as admin
from gateway.destinations import webhooks
from gateway.errors import ValidationError
from gateway.runtime import Runtime
from gateway.stats import account_stats
from gateway.store.models import QueueItem, sqlite_time, utcnow
from tests.support.delivery import SECRET, deliveries, event_ids
from tests.support.drip import serve_slow_drip
from tests.support.events import ingest, raw_event, raw_events
from tests.support.ftp import FtpServer
from tests.support.http_receiver import Receiver
from tests.support.runtime import PASSWORD, make_runtime

# Deeper than orjson writes (255 levels): the webhook's JSON and a JSON-lines file cannot hold it.
POISON_DEPTH = 300


def add_webhook(runtime: Runtime, account_id: int, url: str, **options: Any) -> int:
    with runtime.sessions.begin() as session:
        return webhooks.create(session, account_id, {"url": url, "events": ["OPEN"], "secret": SECRET,
                                                     **options}).id


def poison(runtime: Runtime, account_id: int, uid: str) -> None:
    """Give a stored event data no JSON writer can write, straight in the store (ingest refuses it)."""
    data = '{"deep": ' + "[" * POISON_DEPTH + "1" + "]" * POISON_DEPTH + "}"
    value = "CAST(:data AS json)" if runtime.engine.dialect.name == "postgresql" else ":data"
    with runtime.sessions.begin() as session:
        session.execute(text(f"UPDATE events SET data = {value} WHERE account_id = :account AND uid = :uid"),
                        {"data": data, "account": account_id, "uid": uid})


def figures(runtime: Runtime, account_id: int, destination_id: int) -> dict[str, Any]:
    with runtime.sessions() as session:
        return account_stats(session, account_id)["pending"][str(destination_id)]  # type: ignore[no-any-return]


def attempt_log(runtime: Runtime, destination_id: int) -> list[dict[str, Any]]:
    """The destination's attempts, oldest first."""
    with runtime.sessions() as session:
        return admin.attempts(session, destination_id)[::-1]


@pytest.fixture
def tuned(store_url: str, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Open a store with some settings changed."""
    opened: list[Runtime] = []

    def open_(**settings: Any) -> Runtime:
        opened.append(make_runtime(store_url, tmp_path, **settings))
        return opened[-1]

    yield open_
    for runtime in opened:
        runtime.close()


# --- poison events


def test_a_poison_event_is_parked_alone_and_the_other_999_go_at_once(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    hook = add_webhook(runtime, account.id, http_receiver.url, batch_max_events=1000)
    ingest(runtime, account.id, raw_events(1000))
    poison(runtime, account.id, "e-500")

    dispatchers(runtime).drain()

    assert len(http_receiver.requests) == 1  # the rest of the batch, in one request, at once
    assert sorted(deliveries(http_receiver.requests)) == sorted(f"e-{i}" for i in range(1000) if i != 500)
    log = attempt_log(runtime, hook)
    assert [(a["outcome"], a["events"]) for a in log] == [("parked", 1), ("delivered", 999)]
    assert "'e-500'" in log[0]["detail"] and "Recursion limit reached" in log[0]["detail"]
    assert log[0]["message_id"] == log[1]["message_id"] == http_receiver.requests[0].headers["webhook-id"]
    shown = figures(runtime, account.id, hook)
    assert (shown["pending"], shown["parked"], shown["active"]) == (0, 1, True)
    with runtime.sessions() as session:
        error = session.scalar(select(QueueItem.error).where(QueueItem.destination_id == hook,
                                                             QueueItem.state == "parked"))
    assert error is not None and "cannot be rendered as JSON" in error


def test_later_events_of_a_destination_with_a_parked_one_go_on(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    hook = add_webhook(runtime, account.id, http_receiver.url, format="json-single")
    ingest(runtime, account.id, [raw_event("p")])
    poison(runtime, account.id, "p")
    dispatcher = dispatchers(runtime)
    dispatcher.drain()
    ingest(runtime, account.id, [raw_event("after")])
    dispatcher.drain()

    assert [event_ids(r) for r in http_receiver.requests] == [["after"]]
    assert [a["outcome"] for a in attempt_log(runtime, hook)] == ["parked", "delivered"]
    assert figures(runtime, account.id, hook)["parked"] == 1


def test_a_poison_event_in_a_json_lines_export_is_parked_and_the_file_has_the_other_999(
    runtime: Runtime, account: NewAccount, ftp_server: FtpServer
) -> None:
    with runtime.sessions.begin() as session:
        destination = admin.create(session, account.id, {
            "kind": "ftp", "host": ftp_server.host, "port": ftp_server.port, "username": ftp_server.user,
            "password": ftp_server.password, "timeout_seconds": 3, "line_format": "jsonl", "period": "hourly",
            "events": ["OPEN"]}).id
    ingest(runtime, account.id, raw_events(1000))
    poison(runtime, account.id, "e-10")
    with runtime.sessions.begin() as session:  # arrived two hours ago: the period has closed
        session.execute(text("UPDATE queue SET due_at = :when WHERE destination_id = :destination"),
                        {"when": _hours_ago(runtime, 2), "destination": destination})

    assert export.run_due(runtime) == 1

    [uploaded] = list(ftp_server.home.iterdir())
    ids = [json.loads(line)["id"] for line in uploaded.read_text().splitlines()]
    assert ids == [f"e-{i}" for i in range(1000) if i != 10]
    log = attempt_log(runtime, destination)
    assert [(a["outcome"], a["events"]) for a in log] == [("parked", 1), ("delivered", 999)]
    assert "'e-10'" in log[0]["detail"] and "Recursion limit reached" in log[0]["detail"]
    shown = figures(runtime, account.id, destination)
    assert (shown["pending"], shown["parked"]) == (0, 1)


def _hours_ago(runtime: Runtime, hours: int) -> Any:
    """A time ``hours`` ago, as a statement of this store binds it."""
    moment = utcnow() - timedelta(hours=hours)
    return sqlite_time(moment) if runtime.engine.dialect.name == "sqlite" else moment


# --- fair share


def test_an_account_with_16_hanging_webhooks_does_not_hold_up_another_account(
    tuned: Callable[..., Runtime], http_receiver: Receiver
) -> None:
    runtime = tuned(dispatch_concurrency=8, dispatch_interval_seconds=0.05)
    with runtime.sessions.begin() as session:
        healthy = create_account(session, "acme", PASSWORD)
        hostile = create_account(session, "globex", PASSWORD)
    with serve_slow_drip(interval=2.0) as drip:
        for _ in range(16):
            add_webhook(runtime, hostile.id, drip.url)
        ingest(runtime, hostile.id, raw_events(16, prefix="slow"))
        dispatcher = Dispatcher(runtime)
        loop = threading.Thread(target=dispatcher.run_forever, daemon=True)
        loop.start()
        try:
            deadline = time.monotonic() + 10
            while drip.requests < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert drip.requests == runtime.settings.account_concurrency  # its share, and no more
            add_webhook(runtime, healthy.id, http_receiver.url)
            arrived = time.monotonic()
            ingest(runtime, healthy.id, [raw_event("urgent")])
            http_receiver.wait_for(1, timeout=5.0)
            assert time.monotonic() - arrived < 5.0
            assert event_ids(http_receiver.requests[0]) == ["urgent"]
        finally:
            dispatcher.shutdown(grace_seconds=0)
    loop.join(5)  # the endpoint closed its connections: the hung deliveries ended too


def test_accounts_take_turns_for_free_threads(tuned: Callable[..., Runtime], http_receiver: Receiver) -> None:
    runtime = tuned(dispatch_concurrency=4, account_concurrency=4)
    with runtime.sessions.begin() as session:
        slow = [create_account(session, name, PASSWORD) for name in ("acme", "globex")]
        last = create_account(session, "initech", PASSWORD)
    with serve_slow_drip(interval=1.0) as drip:
        for account in slow:
            for _ in range(3):
                add_webhook(runtime, account.id, drip.url)
            ingest(runtime, account.id, raw_events(3, prefix="slow"))
        add_webhook(runtime, last.id, http_receiver.url)
        ingest(runtime, last.id, [raw_event("turn")])
        dispatcher = Dispatcher(runtime)
        try:
            # Four threads, and a share of three (one thread always stays for the others): taken
            # in turns, the third account gets one although the first two could fill them all.
            assert dispatcher.run_once() == 4
            http_receiver.wait_for(1, timeout=5.0)
            deadline = time.monotonic() + 5
            while drip.requests < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert drip.requests == 3
        finally:
            dispatcher.shutdown(grace_seconds=0)


# --- rate limit


def test_rate_limit_is_validated_and_shown(runtime: Runtime, account: NewAccount, http_receiver: Receiver) -> None:
    hook = add_webhook(runtime, account.id, http_receiver.url, rate_limit=2.5)
    with runtime.sessions() as session:
        assert webhooks.view(session, webhooks.get(session, account.id, hook))["rate_limit"] == 2.5
    for bad in (0, -1, "fast", True, 10_000_000):
        with pytest.raises(ValidationError) as caught, runtime.sessions.begin() as session:
            webhooks.create(session, account.id, {"url": http_receiver.url, "events": ["OPEN"], "rate_limit": bad})
        assert caught.value.problems[0].field == "rate_limit"
    with runtime.sessions.begin() as session:
        webhooks.update_webhook(session, account.id, hook, {"rate_limit": None})
    with runtime.sessions() as session:
        assert webhooks.view(session, webhooks.get(session, account.id, hook))["rate_limit"] is None


def test_a_rate_limited_webhook_gets_small_spaced_batches(
    tuned: Callable[..., Runtime], http_receiver: Receiver
) -> None:
    runtime = tuned(dispatch_interval_seconds=0.05)
    with runtime.sessions.begin() as session:
        account = create_account(session, "acme", PASSWORD)
    hook = add_webhook(runtime, account.id, http_receiver.url, rate_limit=10)
    ingest(runtime, account.id, raw_events(40))
    dispatcher = Dispatcher(runtime)
    loop = threading.Thread(target=dispatcher.run_forever, daemon=True)
    loop.start()
    try:
        sent = http_receiver.wait_for(4, timeout=10.0)
    finally:
        dispatcher.stop()
        loop.join(5)
    assert [len(event_ids(r)) for r in sent] == [10, 10, 10, 10]
    assert sorted(deliveries(sent)) == sorted(f"e-{i}" for i in range(40))
    # 10 events a second: each batch of 10 starts at least a second after the one before.
    starts = [datetime.fromisoformat(a["started_at"]) for a in attempt_log(runtime, hook)]
    assert all((later - earlier).total_seconds() >= 0.99 for earlier, later in zip(starts, starts[1:], strict=False))


# --- graceful drain


def test_shutdown_lets_deliveries_in_flight_finish_and_leases_nothing_more(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver
) -> None:
    hook = add_webhook(runtime, account.id, http_receiver.url, batch_max_events=5)
    http_receiver.respond(delay=0.5)
    ingest(runtime, account.id, raw_events(20))
    dispatcher = Dispatcher(runtime)
    dispatcher.run_once()
    http_receiver.wait_for(1)

    assert dispatcher.shutdown(grace_seconds=5.0) == 0

    assert len(http_receiver.requests) == 1  # the batch in flight finished; no further one was leased
    assert figures(runtime, account.id, hook)["pending"] == 15
    assert [a["outcome"] for a in attempt_log(runtime, hook)] == ["delivered"]
    with runtime.sessions() as session:
        assert set(session.scalars(select(QueueItem.state).where(QueueItem.destination_id == hook))) == {
            "done", "ready"}


def test_shutdown_gives_back_what_is_still_in_flight_after_the_grace(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver
) -> None:
    with serve_slow_drip(interval=0.5) as drip:
        hook = add_webhook(runtime, account.id, drip.url)
        ingest(runtime, account.id, raw_events(3))
        dispatcher = Dispatcher(runtime)
        dispatcher.run_once()
        deadline = time.monotonic() + 5
        while not drip.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        assert dispatcher.shutdown(grace_seconds=0.5) == 1
        assert time.monotonic() - started < 3
        with runtime.sessions() as session:
            rows = session.execute(select(QueueItem.state, QueueItem.attempts, QueueItem.lease_id)
                                   .where(QueueItem.destination_id == hook)).all()
    assert {(state, attempts) for state, attempts, _ in rows} == {("ready", 0)}  # due at once, the try not counted
    assert len({lease for _, _, lease in rows}) == 1 and rows[0][2] is not None  # same message id next time
    # Another worker takes them at once, under the same message id.
    http_receiver.respond()
    with runtime.sessions.begin() as session:
        webhooks.update_webhook(session, account.id, hook, {"url": http_receiver.url})
    successor = Dispatcher(runtime)
    try:
        successor.drain()
    finally:
        successor.stop()
    assert http_receiver.requests[0].headers["webhook-id"] == rows[0][2]
    assert sorted(deliveries(http_receiver.requests)) == ["e-0", "e-1", "e-2"]
    assert [a["outcome"] for a in attempt_log(runtime, hook)] == ["delivered"]


def test_dispatchers_of_other_processes_keep_to_one_batch_per_destination(
    postgres_url: str, tmp_path: Path, http_receiver: Receiver
) -> None:
    runtime = make_runtime(postgres_url, tmp_path)
    try:
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
        add_webhook(runtime, account.id, http_receiver.url, batch_max_events=5)
        http_receiver.respond(delay=0.5)
        ingest(runtime, account.id, raw_events(10))
        first, second = Dispatcher(runtime), Dispatcher(runtime)  # as if in two worker processes
        try:
            assert first.run_once() == 1
            http_receiver.wait_for(1)
            second.run_once()  # finds due rows, but a batch of the destination is in flight
            time.sleep(0.3)
            assert len(http_receiver.requests) == 1
        finally:
            first.stop()
            second.stop()
    finally:
        runtime.close()
