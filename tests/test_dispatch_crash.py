"""A `gateway worker` killed with SIGKILL mid-batch loses nothing: another worker delivers what it held."""
from __future__ import annotations

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
from tests.support.processes import Processes, gateway_env
from tests.support.runtime import LOOPBACK_NETWORKS

EVENTS = 100
# The lease must outlast the delivery deadline; it is how long the killed worker's batch waits.
LEASE_SECONDS = 12


@pytest.fixture
def workers(runtime: Runtime, tmp_path: Path) -> Iterator[Processes]:
    """`gateway worker` processes over the test's store (start one with ``workers.start("worker")``)."""
    env = gateway_env(runtime.settings.effective_database_url, tmp_path, dispatch_interval_seconds=0.05,
                      dispatch_lease_seconds=LEASE_SECONDS, http_timeout_seconds=2, delivery_deadline_seconds=5,
                      outbound_allow_networks=LOOPBACK_NETWORKS)
    started = Processes(env, tmp_path)
    yield started
    started.stop_all()


def test_a_killed_worker_loses_nothing_and_duplicates_keep_their_webhook_id(
    runtime: Runtime, account: NewAccount, http_receiver: Receiver, workers: Processes
) -> None:
    with runtime.sessions.begin() as session:
        hook = webhooks.create(session, account.id, {"url": http_receiver.url, "events": ["OPEN"],
                                                     "batch_max_events": 10}).id
    ingest_request(runtime.sessions, account.id, [raw_event(f"e{i}") for i in range(EVENTS)])
    # Each answer takes 0.2 s, so right after a request arrives its batch is in flight.
    http_receiver.respond(200, delay=0.2)

    first = workers.start("worker")
    http_receiver.wait_for(3, timeout=30)
    first.kill()
    first.wait(timeout=10)
    in_flight = http_receiver.requests[2]
    workers.start("worker")

    def delivered() -> dict[str, set[str]]:
        ids: dict[str, set[str]] = {}
        for request in list(http_receiver.requests):
            for uid in event_ids(request):
                ids.setdefault(uid, set()).add(request.headers["webhook-id"])
        return ids

    workers.wait_until(lambda: len(delivered()) == EVENTS and pending(runtime, account.id, hook) == 0,
                       LEASE_SECONDS + 20, "delivery of every event")

    arrivals = delivered()
    assert set(arrivals) == {f"e{i}" for i in range(EVENTS)}
    assert all(len(ids) == 1 for ids in arrivals.values()), {uid: ids for uid, ids in arrivals.items() if len(ids) > 1}
    again = [r for r in http_receiver.requests if r.headers["webhook-id"] == in_flight.headers["webhook-id"]]
    assert len(again) >= 2 and all(r.body == in_flight.body for r in again)
    assert "Traceback" not in workers.logs()
