"""A `gateway worker` killed with SIGKILL mid-batch loses nothing: another worker delivers what it held."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.accounts import NewAccount
from gateway.destinations import webhooks
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from tests.support.delivery import event_ids, pending
from tests.support.events import raw_event
from tests.support.http_receiver import Receiver

GATEWAY = Path(sys.executable).parent / "gateway"
EVENTS = 100
# The lease must outlast the HTTP timeout; it is how long the killed worker's batch waits.
LEASE_SECONDS = 12


class Workers:
    """`gateway worker` processes over one store, each logging to its own file."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")}
        self.env.update(EVENTGW_DATABASE_URL=database_url, EVENTGW_HOME=str(tmp_path),
                        EVENTGW_DISPATCH_INTERVAL_SECONDS="0.05",
                        EVENTGW_DISPATCH_LEASE_SECONDS=str(LEASE_SECONDS), EVENTGW_HTTP_TIMEOUT_SECONDS="2")
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / f"worker{len(self.started)}.log", "wb")
        with log:
            self.started.append(subprocess.Popen([str(GATEWAY), "worker"], env=self.env, stdout=log,
                                                 stderr=subprocess.STDOUT))
        return self.started[-1]

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.tmp_path.glob("worker*.log")))

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(runtime: Runtime, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(runtime.settings.effective_database_url, tmp_path)
    yield started
    started.stop_all()


def wait(condition: object, timeout: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout} s; worker logs:\n{workers.logs()}")
        time.sleep(0.05)


def test_a_killed_worker_loses_nothing_and_duplicates_keep_their_webhook_id(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, workers: Workers
) -> None:
    with runtime.sessions.begin() as session:
        hook = webhooks.create(session, account.id, {"url": http_receiver.url, "events": ["OPEN"],
                                                     "batch_max_events": 10}).id
    ingest_request(runtime.sessions, account.id, [raw_event(f"e{i}") for i in range(EVENTS)])
    # Each answer takes 0.2 s, so right after a request arrives its batch is in flight.
    http_receiver.respond(200, delay=0.2)

    first = workers.start()
    http_receiver.wait_for(3, timeout=30)
    first.kill()
    first.wait(timeout=10)
    in_flight = http_receiver.requests[2]
    workers.start()

    def delivered() -> dict[str, set[str]]:
        ids: dict[str, set[str]] = {}
        for request in list(http_receiver.requests):
            for uid in event_ids(request):
                ids.setdefault(uid, set()).add(request.headers["webhook-id"])
        return ids

    wait(lambda: len(delivered()) == EVENTS and pending(runtime, account.id, hook) == 0, LEASE_SECONDS + 20,
         "delivery of every event", workers)

    arrivals = delivered()
    assert set(arrivals) == {f"e{i}" for i in range(EVENTS)}
    assert all(len(ids) == 1 for ids in arrivals.values()), {uid: ids for uid, ids in arrivals.items() if len(ids) > 1}
    again = [r for r in http_receiver.requests if r.headers["webhook-id"] == in_flight.headers["webhook-id"]]
    assert len(again) >= 2 and all(r.body == in_flight.body for r in again)
    assert "Traceback" not in workers.logs()
