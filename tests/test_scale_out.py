"""Several gateway processes on one PostgreSQL database: overlapping ingest, graceful stops, housekeeping."""
from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
import requests
from sqlalchemy import func, select

from gateway.accounts import NewAccount
from gateway.destinations import webhooks
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from gateway.store.models import Event, QueueItem
from tests.support.delivery import event_ids, pending
from tests.support.events import raw_event
from tests.support.http_receiver import Receiver
from tests.support.net import free_port
from tests.support.processes import Processes, gateway_env
from tests.support.runtime import LOOPBACK_NETWORKS

OVERLAPPING_IDS = 300
REQUESTS = 30

ON_POSTGRESQL = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
"""Marks a test that runs on PostgreSQL only (the scale-out engine)."""


@pytest.fixture
def processes(runtime: Runtime, tmp_path: Path) -> Iterator[Processes]:
    started = Processes(gateway_env(runtime.settings.effective_database_url, tmp_path,
                                    dispatch_interval_seconds=0.05, http_timeout_seconds=5,
                                    outbound_allow_networks=LOOPBACK_NETWORKS), tmp_path)
    yield started
    started.stop_all()


def shuffled_requests(count: int) -> list[list[dict[str, object]]]:
    """``count`` requests of the same events, each in its own order."""
    events = [raw_event(f"evt-{n:04d}") for n in range(OVERLAPPING_IDS)]
    shuffler = random.Random(12)
    orders = []
    for _ in range(count):
        order = list(events)
        shuffler.shuffle(order)
        orders.append(order)
    return orders


def stored_once(runtime: Runtime, account_id: int) -> tuple[int, int, int]:
    """(events, distinct producer ids, queue rows) of the account."""
    with runtime.read_sessions() as session:
        events = session.scalar(select(func.count()).select_from(Event).where(Event.account_id == account_id))
        uids = session.scalar(select(func.count(func.distinct(Event.uid))).where(Event.account_id == account_id))
        rows = session.scalar(select(func.count()).select_from(QueueItem).join(Event, Event.id == QueueItem.event_id)
                              .where(Event.account_id == account_id))
    return int(events or 0), int(uids or 0), int(rows or 0)


@ON_POSTGRESQL
def test_overlapping_requests_through_two_web_processes_all_succeed_and_store_each_event_once(
    runtime: Runtime, account: NewAccount, processes: Processes
) -> None:
    urls = [processes.serve("--no-dispatcher"), processes.serve("--no-dispatcher")]
    bodies = shuffled_requests(REQUESTS)
    start = threading.Barrier(REQUESTS)

    def post(number: int) -> requests.Response:
        start.wait(timeout=30)
        return requests.post(f"{urls[number % 2]}/api/v1/events", json=bodies[number], timeout=120,
                             headers={"Authorization": f"Bearer {account.api_key}"})

    with ThreadPoolExecutor(REQUESTS) as pool:
        answers = list(pool.map(post, range(REQUESTS)))

    assert [answer.status_code for answer in answers] == [200] * REQUESTS, \
        [answer.text for answer in answers if answer.status_code != 200] + [processes.logs()]
    assert sum(answer.json()["accepted"] for answer in answers) == OVERLAPPING_IDS
    # The account's pull queue is its only destination: one queue row per event.
    assert stored_once(runtime, account.id) == (OVERLAPPING_IDS, OVERLAPPING_IDS, OVERLAPPING_IDS)


def test_overlapping_ingest_in_threads_stores_each_event_once(runtime: Runtime, account: NewAccount) -> None:
    bodies = shuffled_requests(8)
    start = threading.Barrier(len(bodies))

    def ingest(body: list[dict[str, object]]) -> int:
        start.wait(timeout=30)
        return ingest_request(runtime.sessions, account.id, body).accepted

    with ThreadPoolExecutor(len(bodies)) as pool:
        accepted = list(pool.map(ingest, bodies))

    assert sum(accepted) == OVERLAPPING_IDS
    assert stored_once(runtime, account.id) == (OVERLAPPING_IDS, OVERLAPPING_IDS, OVERLAPPING_IDS)


@ON_POSTGRESQL
def test_a_request_keeps_its_order_on_postgresql(runtime: Runtime, account: NewAccount) -> None:
    uids = [f"z{n}" for n in range(50, 0, -1)]
    ingest_request(runtime.sessions, account.id, [raw_event(uid) for uid in uids])

    with runtime.read_sessions() as session:
        stored = session.scalars(select(Event.uid).where(Event.account_id == account.id).order_by(Event.id)).all()
    assert stored == uids


@ON_POSTGRESQL
def test_a_worker_stopped_mid_batch_finishes_it_and_exits_0_and_nothing_is_sent_twice(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, processes: Processes
) -> None:
    events = 60
    with runtime.sessions.begin() as session:
        hook = webhooks.create(session, account.id, {"url": http_receiver.url, "events": ["OPEN"],
                                                        "batch_max_events": 5}).id
    ingest_request(runtime.sessions, account.id, [raw_event(f"e{i}") for i in range(events)])
    # Each answer takes 0.5 s: right after a request arrives its batch is in flight.
    http_receiver.respond(200, delay=0.5)
    health_port = free_port()
    first = processes.start("worker", "--health-port", str(health_port))
    processes.wait_until(lambda: len(http_receiver.requests) >= 2, 30, "two deliveries")
    assert requests.get(f"http://127.0.0.1:{health_port}/healthz", timeout=5).json() == {
        "status": "ok", "role": "worker", "database": "postgresql"}

    first.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert first.wait(timeout=30) == 0, processes.logs()
    # It finished the batch it held (no grace needed beyond the receiver's 0.5 s) and took no other.
    assert time.monotonic() - stopped_at < 5
    sent_by_first = len(http_receiver.requests)
    assert pending(runtime, account.id, hook) == events - 5 * sent_by_first
    processes.start("worker")
    http_receiver.respond(200)
    processes.wait_until(lambda: pending(runtime, account.id, hook) == 0, 30, "delivery of every event")

    message_ids = [request.headers["webhook-id"] for request in http_receiver.requests]
    assert len(message_ids) == len(set(message_ids)), "a batch was sent twice"
    arrived = [uid for request in http_receiver.requests for uid in event_ids(request)]
    assert sorted(arrived) == sorted(f"e{i}" for i in range(events))
    assert "Traceback" not in processes.logs()


@ON_POSTGRESQL
def test_a_web_process_told_to_stop_finishes_the_request_in_flight_and_exits_0(
    runtime: Runtime, account: NewAccount, processes: Processes
) -> None:
    url = processes.serve("--no-dispatcher")
    server = processes.started[-1]
    assert requests.get(f"{url}/healthz", timeout=5).json() == {
        "status": "ok", "role": "web", "database": "postgresql"}
    first_part_sent = threading.Event()
    go_on = threading.Event()
    events = [raw_event(f"slow{i}") for i in range(100)]
    body = orjson.dumps(events)

    def slowly() -> Iterator[bytes]:
        yield body[:100]
        first_part_sent.set()
        go_on.wait(timeout=30)
        yield body[100:]

    answers: list[requests.Response] = []
    sender = threading.Thread(target=lambda: answers.append(requests.post(
        f"{url}/api/v1/events", data=slowly(), timeout=30,
        headers={"Authorization": f"Bearer {account.api_key}", "Content-Type": "application/json"})))
    sender.start()
    assert first_part_sent.wait(timeout=10)
    time.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    # New connections are refused at once, while the request in flight goes on.
    refused_by = time.monotonic() + 5
    while True:
        try:
            requests.get(f"{url}/healthz", timeout=2)
        except requests.ConnectionError:
            break
        assert time.monotonic() < refused_by, "the stopping server still accepts connections"
        time.sleep(0.05)
    assert server.poll() is None
    go_on.set()
    sender.join(timeout=30)

    assert [answer.status_code for answer in answers] == [200], processes.logs()
    assert answers[0].json() == {"accepted": 100, "duplicates": 0}
    assert server.wait(timeout=30) == 0, processes.logs()
    assert stored_once(runtime, account.id)[0] == 100


@ON_POSTGRESQL
def test_a_worker_whose_delivery_outlasts_the_grace_gives_the_batch_back_and_exits_0_in_time(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, processes: Processes
) -> None:
    with runtime.sessions.begin() as session:
        hook = webhooks.create(session, account.id, {"url": http_receiver.url, "events": ["OPEN"],
                                                        "batch_max_events": 5}).id
    ingest_request(runtime.sessions, account.id, [raw_event(f"e{i}") for i in range(10)])
    http_receiver.respond(200, delay=8)
    processes.env["EVENTGW_SHUTDOWN_GRACE_SECONDS"] = "1"
    first = processes.start("worker")
    processes.wait_until(lambda: len(http_receiver.requests) >= 1, 30, "a delivery")

    first.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    assert first.wait(timeout=30) == 0, processes.logs()

    assert time.monotonic() - stopped_at < 4, "the worker waited out the slow delivery instead of its grace"
    # The batch it held is due again at once under the same message id, not after its lease.
    http_receiver.respond(200)
    processes.start("worker")
    processes.wait_until(lambda: pending(runtime, account.id, hook) == 0, 20, "delivery of every event")
    first_id = http_receiver.requests[0].headers["webhook-id"]
    assert sum(request.headers["webhook-id"] == first_id for request in http_receiver.requests) == 2
