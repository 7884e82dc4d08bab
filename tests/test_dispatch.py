"""The delivery engine end to end: stored events reach a real HTTP receiver, signed, batched, retried, deactivated."""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import select

from gateway.accounts import NewAccount, create_account
from gateway.app import create_app
from gateway.delivery.engine import Dispatcher
from gateway.delivery.outcomes import lease, settle_failure
from gateway.destinations import webhooks
from gateway.errors import DeliveryError
from gateway.notices import list_notices
from gateway.runtime import Runtime
from gateway.store.models import Destination, QueueItem, utcnow
from sinks.base import EXCERPT_LIMIT
from tests.support.delivery import SECRET, deliveries, event_ids, pending, signature_ok
from tests.support.events import ingest, raw_event
from tests.support.http_receiver import Receiver, Reply
from tests.support.net import refused_url
from tests.support.runtime import PASSWORD, make_runtime

Tuned = Callable[..., tuple[Runtime, NewAccount]]


def add_webhook(runtime: Runtime, account_id: int, url: str, events: list[str] | None = None,
                **options: Any) -> int:
    """Create a webhook through the management core; returns its id."""
    with runtime.sessions.begin() as session:
        payload = {"url": url, "events": events or ["OPEN"], "secret": SECRET, **options}
        return webhooks.create(session, account_id, payload).id


def webhook(runtime: Runtime, account_id: int, webhook_id: int) -> dict[str, Any]:
    with runtime.sessions() as session:
        return webhooks.view(session, webhooks.get(session, account_id, webhook_id))


def attempt_log(runtime: Runtime, account_id: int, webhook_id: int) -> list[dict[str, Any]]:
    """The webhook's attempts, oldest first."""
    with runtime.sessions() as session:
        return webhooks.attempts(session, account_id, webhook_id)[::-1]


def notifications(runtime: Runtime) -> list[dict[str, Any]]:
    """GET /api/v1/notifications of acme, through the web application."""
    answer = create_app(runtime).test_client().get("/api/v1/notifications", auth=("acme", PASSWORD))
    assert answer.status_code == 200
    return answer.get_json()["notifications"]  # type: ignore[no-any-return]


def until(condition: Callable[[], Any], dispatcher: Dispatcher | None = None, timeout: float = 10.0) -> Any:
    """Poll ``condition`` (running the dispatcher between polls) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        if dispatcher is not None:
            dispatcher.run_once()
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def tuned(store_url: str, tmp_path: Path) -> Iterator[Tuned]:
    """Open a store with some settings changed, with the account acme in it."""
    opened: list[Runtime] = []

    def open_(**settings: Any) -> tuple[Runtime, NewAccount]:
        opened.append(make_runtime(store_url, tmp_path, **settings))
        with opened[-1].sessions.begin() as session:
            return opened[-1], create_account(session, "acme", PASSWORD)

    yield open_
    for runtime in opened:
        runtime.close()


def test_json_batches_arrive_signed_and_each_event_exactly_once(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    hook = add_webhook(runtime, account.id, http_receiver.url, ["OPEN", "CLICK"], batch_max_events=7)
    ingest(runtime, account.id, [raw_event(f"o{i}") for i in range(20)]
           + [raw_event(f"c{i}", "CLICK") for i in range(5)] + [raw_event(f"b{i}", "BOUNCE") for i in range(4)])

    dispatchers(runtime).drain()

    sent = http_receiver.requests
    assert deliveries(sent) == Counter([f"o{i}" for i in range(20)] + [f"c{i}" for i in range(5)])
    assert len(sent) == 4 and all(len(json.loads(r.body)) <= 7 for r in sent)
    assert all(r.headers["Content-Type"] == "application/json" and signature_ok(r, SECRET) for r in sent)
    assert len({r.headers["webhook-id"] for r in sent}) == len(sent)
    assert all(abs(int(r.headers["webhook-timestamp"]) - time.time()) < 60 for r in sent)
    first = json.loads(sent[0].body)[0]
    assert first == {"id": "o0", "type": "OPEN", "occurred_at": "2026-11-24T10:15:00Z", "email": "o0@example.com"}
    # Consecutive batches reuse one kept-alive connection.
    assert len({r.client_port for r in sent}) == 1
    # Bounces are not the webhook's: they wait in the pull queue.
    assert pending(runtime, account.id, hook) == 0
    assert pending(runtime, account.id, account.pull_destination_id) == 4
    assert [a["outcome"] for a in attempt_log(runtime, account.id, hook)] == ["delivered"] * 4
    dispatchers(runtime).drain()
    assert len(http_receiver.requests) == 4


@pytest.mark.parametrize("fmt", ["json-single", "form"])
def test_single_formats_post_one_signed_request_per_event(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher],
    fmt: str,
) -> None:
    add_webhook(runtime, account.id, http_receiver.url, ["OPEN", "CLICK"], format=fmt)
    ingest(runtime, account.id, [raw_event("o1"), raw_event("c1", "CLICK"), raw_event("o2")])

    dispatchers(runtime).drain()

    sent = http_receiver.requests
    assert [event_ids(r) for r in sent] == [["o1"], ["c1"], ["o2"]]
    assert all(signature_ok(r, SECRET) for r in sent)
    message_id = sent[0].headers["webhook-id"].rsplit("_", 1)[0]
    assert [r.headers["webhook-id"] for r in sent] == [f"{message_id}_{n}" for n in range(3)]
    if fmt == "json-single":
        assert json.loads(sent[1].body) == {"event": "click", "id": "c1", "type": "CLICK",
                                            "occurred_at": "2026-11-24T10:15:00Z", "email": "c1@example.com",
                                            "url": "https://example.com/offer"}
    else:
        fields = dict(parse_qsl(sent[1].body.decode()))
        assert sent[1].headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert (fields["type"], fields["email"], fields["clickUrl"]) == (
            "CLICK", "c1@example.com", "https://example.com/offer")


def test_a_failed_batch_is_retried_with_the_same_webhook_id(
    tuned: Tuned, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    runtime, account = tuned(retry_schedule=(0.2,))
    hook = add_webhook(runtime, account.id, http_receiver.url)
    http_receiver.queue([Reply(500, b"try later")])
    ingest(runtime, account.id, [raw_event("e1"), raw_event("e2")])
    dispatcher = dispatchers(runtime)

    dispatcher.drain()
    assert len(http_receiver.requests) == 1
    until(lambda: pending(runtime, account.id, hook) == 0, dispatcher)

    failed, retried = http_receiver.requests
    assert failed.headers["webhook-id"] == retried.headers["webhook-id"]
    assert failed.body == retried.body
    assert signature_ok(failed, SECRET) and signature_ok(retried, SECRET)
    log = attempt_log(runtime, account.id, hook)
    assert [(a["outcome"], a["status"]) for a in log] == [("failed", 500), ("delivered", 200)]
    assert {a["message_id"] for a in log} == {failed.headers["webhook-id"]}
    assert "try later" in log[0]["detail"]
    assert pending(runtime, account.id, hook) == 0
    assert webhook(runtime, account.id, hook)["active"] is True


@pytest.mark.parametrize(("retry_after", "expected"), [("30", 30), ("86400", 60), ("http-date", 45)])
def test_retry_after_sets_the_next_try_up_to_the_cap(
    tuned: Tuned, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher], retry_after: str,
    expected: float,
) -> None:
    runtime, account = tuned(max_retry_after_seconds=60)
    hook = add_webhook(runtime, account.id, http_receiver.url)
    if retry_after == "http-date":
        retry_after = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=45), usegmt=True)
    http_receiver.respond(429, b"slow down", headers={"Retry-After": retry_after})
    ingest(runtime, account.id, [raw_event("e1"), raw_event("e2")])

    dispatcher = dispatchers(runtime)
    dispatcher.drain()

    assert len(http_receiver.requests) == 1
    with runtime.sessions() as session:
        due = set(session.scalars(select(QueueItem.due_at).where(QueueItem.destination_id == hook)))
    assert len(due) == 1
    assert abs((due.pop() - utcnow()).total_seconds() - expected) < 3
    (attempt,) = attempt_log(runtime, account.id, hook)
    assert (attempt["outcome"], attempt["status"]) == ("failed", 429)
    assert dispatcher.run_once() == 0


def test_410_gone_deactivates_at_once(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    hook = add_webhook(runtime, account.id, http_receiver.url)
    http_receiver.respond(410, b"no such hook")
    ingest(runtime, account.id, [raw_event("e1")])

    dispatchers(runtime).drain()

    assert len(http_receiver.requests) == 1
    shown = webhook(runtime, account.id, hook)
    assert shown["active"] is False and shown["deactivated_at"]
    assert [(a["outcome"], a["status"]) for a in attempt_log(runtime, account.id, hook)] == [
        ("failed", 410), ("deactivated", None)]
    with runtime.sessions() as session:
        (notice,) = list_notices(session, account.id)
    assert notice["kind"] == "deactivated" and notice["destination_id"] == hook
    assert pending(runtime, account.id, hook) == 1


def test_a_redirect_counts_as_a_failure(
    tuned: Tuned, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    runtime, account = tuned(retry_schedule=(60,))
    hook = add_webhook(runtime, account.id, http_receiver.url)
    http_receiver.respond(302, b"", headers={"Location": "https://elsewhere.example/hook"})
    ingest(runtime, account.id, [raw_event("e1")])

    dispatchers(runtime).drain()

    (attempt,) = attempt_log(runtime, account.id, hook)
    assert (attempt["outcome"], attempt["status"]) == ("failed", 302)
    assert "https://elsewhere.example/hook" in attempt["detail"]
    assert pending(runtime, account.id, hook) == 1
    assert len(http_receiver.requests) == 1


def test_a_hanging_endpoint_fails_after_its_timeout_with_a_clear_message(
    tuned: Tuned, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    runtime, account = tuned(retry_schedule=(60,))
    hook = add_webhook(runtime, account.id, http_receiver.url, timeout_seconds=1)
    http_receiver.respond(delay=5)
    ingest(runtime, account.id, [raw_event("e1")])

    started = time.monotonic()
    dispatchers(runtime).drain()

    assert time.monotonic() - started < 3
    (attempt,) = attempt_log(runtime, account.id, hook)
    assert (attempt["outcome"], attempt["status"]) == ("failed", None)
    port = http_receiver.url.split(":")[2].split("/")[0]
    assert f"answer from 127.0.0.1:{port} within" in attempt["detail"] and " 1 s" in attempt["detail"]
    assert 900 <= attempt["duration_ms"] < 3000
    assert pending(runtime, account.id, hook) == 1


def test_the_attempt_log_keeps_status_duration_and_a_bounded_excerpt(
    tuned: Tuned, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    runtime, account = tuned(retry_schedule=(0.1,))
    hook = add_webhook(runtime, account.id, http_receiver.url)
    http_receiver.queue([Reply(503, b"\x1b[31mdown\x00 " + b"x" * 200_000, delay=0.1)])
    http_receiver.respond(200, b"thanks")
    ingest(runtime, account.id, [raw_event("e1"), raw_event("e2")])

    until(lambda: pending(runtime, account.id, hook) == 0, dispatchers(runtime))

    failed, delivered = attempt_log(runtime, account.id, hook)
    assert (failed["outcome"], failed["status"], failed["events"]) == ("failed", 503, 2)
    assert failed["duration_ms"] >= 100
    assert "down" in failed["detail"] and "\x1b" not in failed["detail"] and "\x00" not in failed["detail"]
    assert 0 < failed["detail"].count("x") <= 2 * EXCERPT_LIMIT  # a short excerpt, in the message and as the answer
    assert len(failed["detail"]) <= 2000
    assert (delivered["outcome"], delivered["status"]) == ("delivered", 200)
    assert "thanks" in delivered["detail"]
    assert failed["started_at"] <= delivered["started_at"]


def test_a_failing_webhook_is_deactivated_keeps_its_events_and_replays_them_on_activation(
    tuned: Tuned, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    runtime, account = tuned(deactivate_after_failures=2, retry_schedule=(0, 0.1))
    hook = add_webhook(runtime, account.id, http_receiver.url)
    http_receiver.respond(500, b"broken")
    ingest(runtime, account.id, [raw_event(f"a{i}") for i in range(5)])
    dispatcher = dispatchers(runtime)

    dispatcher.drain()

    assert len(http_receiver.requests) == 2
    assert webhook(runtime, account.id, hook)["active"] is False
    (notice,) = notifications(runtime)
    assert notice["kind"] == "deactivated" and notice["destination_id"] == hook
    assert f"#{hook}" in notice["message"] and "broken" in notice["message"]

    ingest(runtime, account.id, [raw_event(f"b{i}") for i in range(5)])
    dispatcher.drain()
    assert len(http_receiver.requests) == 2
    assert pending(runtime, account.id, hook) == 10

    http_receiver.respond(200)
    with runtime.sessions.begin() as session:
        assert webhooks.activate(session, account.id, hook, replay=True)["queued"] == 10
    dispatcher.drain()

    assert deliveries(http_receiver.requests[2:]) == Counter([f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)])
    assert pending(runtime, account.id, hook) == 0
    assert webhook(runtime, account.id, hook)["active"] is True


def test_activating_without_replay_drops_what_accumulated(
    tuned: Tuned, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    runtime, account = tuned(deactivate_after_failures=2, retry_schedule=(0, 0.1))
    hook = add_webhook(runtime, account.id, http_receiver.url)
    http_receiver.respond(500)
    ingest(runtime, account.id, [raw_event(f"a{i}") for i in range(3)])
    dispatcher = dispatchers(runtime)
    dispatcher.drain()
    ingest(runtime, account.id, [raw_event(f"b{i}") for i in range(3)])
    assert webhook(runtime, account.id, hook)["active"] is False

    http_receiver.respond(200)
    with runtime.sessions.begin() as session:
        assert webhooks.activate(session, account.id, hook, replay=False) == {
            "id": hook, "active": True, "activated": True, "queued": 0, "dropped": 6}
    dispatcher.drain()
    assert len(http_receiver.requests) == 2

    ingest(runtime, account.id, [raw_event("c1")])
    dispatcher.drain()
    assert deliveries(http_receiver.requests[2:]) == Counter(["c1"])


def test_replaying_a_window_redelivers_exactly_its_events(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    # Stored before the webhook existed, so only the replay brings it to the webhook.
    ingest(runtime, account.id, [raw_event("early", occurred_at="2026-11-24T10:30:00Z")])
    hook = add_webhook(runtime, account.id, http_receiver.url, ["OPEN", "CLICK"])
    ingest(runtime, account.id, [
        raw_event("before", occurred_at="2026-11-24T09:59:59Z"),
        raw_event("start", occurred_at="2026-11-24T10:00:00Z"),
        raw_event("inside", "CLICK", occurred_at="2026-11-24T10:45:00Z"),
        raw_event("bounce", "BOUNCE", occurred_at="2026-11-24T10:45:00Z"),
        raw_event("end", occurred_at="2026-11-24T11:00:00Z"),
    ])
    dispatcher = dispatchers(runtime)
    dispatcher.drain()
    assert deliveries(http_receiver.requests) == Counter(["before", "start", "inside", "end"])
    seen = len(http_receiver.requests)

    since, until_ = datetime(2026, 11, 24, 10, tzinfo=timezone.utc), datetime(2026, 11, 24, 11, tzinfo=timezone.utc)
    with runtime.sessions.begin() as session:
        assert webhooks.replay(session, account.id, hook, since, until_) == 3
    dispatcher.drain()

    assert deliveries(http_receiver.requests[seen:]) == Counter(["early", "start", "inside"])
    assert all(signature_ok(r, SECRET) for r in http_receiver.requests)
    assert webhook(runtime, account.id, hook)["active"] is True


def test_dead_and_hanging_endpoints_do_not_hold_up_a_healthy_one(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    # The silent server accepts connections and never answers; closing it resets them.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        dead = add_webhook(runtime, account.id, refused_url(), batch_max_events=5)
        hanging = add_webhook(runtime, account.id, silent_url, batch_max_events=5, timeout_seconds=10)
        healthy = add_webhook(runtime, account.id, http_receiver.url, batch_max_events=5)
        ingest(runtime, account.id, [raw_event(f"e{i}") for i in range(40)])
        dispatcher = dispatchers(runtime)

        started = time.monotonic()
        until(lambda: len(http_receiver.requests) >= 8, dispatcher)

        assert time.monotonic() - started < 3
        assert deliveries(http_receiver.requests) == Counter(f"e{i}" for i in range(40))
        until(lambda: pending(runtime, account.id, healthy) == 0)
        assert attempt_log(runtime, account.id, hanging) == []
        dead_log = until(lambda: attempt_log(runtime, account.id, dead))
        assert dead_log[0]["outcome"] == "failed" and "could not connect" in dead_log[0]["detail"]
        assert pending(runtime, account.id, dead) == 40 and pending(runtime, account.id, hanging) == 40


def test_an_account_never_receives_another_accounts_events(
    runtime: Runtime, account: NewAccount, other_account: NewAccount, http_receiver: Receiver,
    dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    add_webhook(runtime, account.id, http_receiver.url + "/acme", ["OPEN", "CLICK"])
    add_webhook(runtime, other_account.id, http_receiver.url + "/globex", ["OPEN"])
    # The same producer ids in both accounts, with different recipients.
    ingest(runtime, account.id, [raw_event("e1", email="one@acme.example"),
                                 raw_event("e2", "CLICK", email="two@acme.example")])
    ingest(runtime, other_account.id, [raw_event("e1", email="one@globex.example"), raw_event("e3", "CLICK")])

    dispatchers(runtime).drain()

    received: dict[str, list[str]] = {}
    for request in http_receiver.requests:
        received.setdefault(request.path, []).extend(e["email"] for e in json.loads(request.body))
    assert sorted(received["/hook/acme"]) == ["one@acme.example", "two@acme.example"]
    assert received["/hook/globex"] == ["one@globex.example"]


def test_an_expired_lease_is_delivered_by_another_dispatcher_with_the_same_id(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    hook = add_webhook(runtime, account.id, http_receiver.url)
    ingest(runtime, account.id, [raw_event(f"e{i}") for i in range(3)])
    # A dispatcher takes the batch and dies without delivering it.
    with runtime.sessions.begin() as session:
        destination = session.get(Destination, hook)
        assert destination is not None
        held = lease(session, destination, utcnow(), 1)
    assert held is not None and [e["id"] for e in held.events] == ["e0", "e1", "e2"]
    other = dispatchers(runtime)

    other.drain()
    assert http_receiver.requests == []

    until(lambda: http_receiver.requests, other, timeout=5)
    (request,) = http_receiver.requests
    assert request.headers["webhook-id"] == held.message_id
    assert event_ids(request) == ["e0", "e1", "e2"]
    until(lambda: pending(runtime, account.id, hook) == 0, other)


def test_a_retried_batch_keeps_its_events_when_the_batch_size_is_lowered(
    tuned: Tuned, http_receiver: Receiver, dispatchers: Callable[[Runtime], Dispatcher]
) -> None:
    runtime, account = tuned(retry_schedule=(0.2,))
    hook = add_webhook(runtime, account.id, http_receiver.url, batch_max_events=10)
    http_receiver.queue([Reply(500)])
    ingest(runtime, account.id, [raw_event(f"e{i}") for i in range(10)])
    dispatcher = dispatchers(runtime)
    dispatcher.drain()

    with runtime.sessions.begin() as session:
        webhooks.update_webhook(session, account.id, hook, {"batch_max_events": 3})
    until(lambda: pending(runtime, account.id, hook) == 0, dispatcher)

    failed, retried, *fresh = http_receiver.requests
    assert retried.headers["webhook-id"] == failed.headers["webhook-id"]
    assert event_ids(retried) == event_ids(failed) == [f"e{i}" for i in range(10)]
    assert fresh == []


def test_dispatchers_racing_for_a_retried_batch_never_split_it(runtime: Runtime, account: NewAccount) -> None:
    hook = add_webhook(runtime, account.id, refused_url(), batch_max_events=100)
    ingest(runtime, account.id, [raw_event(f"e{i}") for i in range(50)])
    retry_now = runtime.settings.replace(retry_schedule=(0,))
    with runtime.sessions.begin() as session:
        held = lease(session, session.get(Destination, hook), utcnow(), 60)  # type: ignore[arg-type]
    assert held is not None
    message_id = held.message_id

    # On SQLite the two take turns on the write lock; on PostgreSQL they really race.
    start = threading.Barrier(2)
    taken: list[Any] = []

    def take() -> None:
        start.wait()
        with runtime.sessions.begin() as session:
            destination = session.get(Destination, hook)
            taken.append(lease(session, destination, utcnow(), 60))  # type: ignore[arg-type]

    for _ in range(10):
        with runtime.sessions.begin() as session:
            settle_failure(session, held, utcnow(), 0.0, DeliveryError("HTTP 500"), retry_now)
        taken.clear()
        racers = [threading.Thread(target=take) for _ in range(2)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(30)
        assert not any(racer.is_alive() for racer in racers) and len(taken) == 2
        (held,) = [t for t in taken if t is not None]
        assert held.message_id == message_id
        assert [e["id"] for e in held.events] == [f"e{i}" for i in range(50)]
