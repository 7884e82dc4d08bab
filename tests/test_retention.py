"""Housekeeping deletes in small batches: everything old goes, nothing waiting does, and a purge of
a million rows on PostgreSQL never holds up deliveries."""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select, text, update

from gateway.accounts import create_account
from gateway.delivery import retention
from gateway.delivery.engine import Dispatcher
from gateway.destinations import webhooks
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from gateway.store.models import Event, QueueItem, utcnow
from gateway.store.queue import QueueState
from tests.support.events import raw_event
from tests.support.runtime import PASSWORD, make_runtime

OLD = utcnow() - timedelta(days=3)
MILLION = 1000  # old destinations x old events = 1,000,000 done queue rows


def test_a_purge_in_small_batches_removes_everything_old_and_keeps_what_waits(store_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(store_url, tmp_path, retention_days=1, recovery_days=1, purge_batch_rows=7)
    try:
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
        ingest_request(runtime.sessions, account.id, [raw_event(f"e{i}") for i in range(50)])
        with runtime.sessions.begin() as session:
            session.execute(update(Event).values(received_at=OLD))
            collected = select(QueueItem.id).order_by(QueueItem.id).limit(40).scalar_subquery()
            session.execute(update(QueueItem).where(QueueItem.id.in_(collected))
                            .values(state=QueueState.DONE.value, done_at=OLD))

        purged = retention.purge(runtime.sessions, runtime.settings)

        assert (purged.queue_rows, purged.events) == (40, 40)
        with runtime.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(QueueItem)) == 10
            assert session.scalar(select(func.count()).select_from(Event)) == 10
        stopping = threading.Event()
        stopping.set()
        assert retention.purge(runtime.sessions, runtime.settings, stopping) == retention.Purged(0, 0, 0, 0)
    finally:
        runtime.close()


class _Arrivals(BaseHTTPRequestHandler):
    """A webhook receiver that notes when each event arrived."""

    protocol_version = "HTTP/1.1"
    arrived: dict[str, float] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        now = time.monotonic()
        for event in orjson.loads(body):
            _Arrivals.arrived.setdefault(event["id"], now)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def arrivals() -> Iterator[str]:
    _Arrivals.arrived = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Arrivals)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def old_work(runtime: Runtime) -> bool:
    """Whether an old collected queue row or an old event is still there."""
    with runtime.read_sessions() as session:
        return session.scalar(select(QueueItem.id).where(QueueItem.done_at < OLD + timedelta(hours=1)).limit(1)
                              .union_all(select(Event.id).where(Event.received_at < OLD + timedelta(hours=1))
                                         .limit(1))) is not None


def test_a_million_done_rows_are_purged_while_deliveries_go_on_within_a_second(
    postgres_url: str, tmp_path: Path, arrivals: str
) -> None:
    runtime = make_runtime(postgres_url, tmp_path, retention_days=1, recovery_days=1, dispatch_interval_seconds=0.05,
                           outbound_allow_networks="127.0.0.0/8")
    dispatcher = Dispatcher(runtime)
    try:
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
            webhooks.create(session, account.id, {"url": arrivals, "events": ["OPEN"]})
            # A million collected rows: every old event for each of a thousand old destinations.
            params = {"account": account.id, "pull": account.pull_destination_id, "n": MILLION, "old": OLD,
                      "done": QueueState.DONE.value}
            session.execute(text(
                "INSERT INTO destinations (account_id, kind, name, settings, active, consecutive_failures, "
                "created_at, updated_at) SELECT account_id, kind, 'old-' || n, settings, false, 0, created_at, "
                "updated_at FROM destinations, generate_series(1, :n) AS n WHERE id = :pull"), params)
            session.execute(text(
                "INSERT INTO events (account_id, uid, type, occurred_at, received_at) "
                "SELECT :account, 'old-' || n, 'OPEN', :old, :old FROM generate_series(1, :n) AS n"), params)
            session.execute(text(
                "INSERT INTO queue (destination_id, event_id, event_type, state, due_at, attempts, done_at) "
                "SELECT d.id, e.id, 'OPEN', :done, :old, 1, :old FROM destinations AS d CROSS JOIN events AS e "
                "WHERE d.name LIKE 'old-%' AND e.uid LIKE 'old-%'"), params)
        with runtime.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(QueueItem)) == MILLION * MILLION

        ingested: dict[str, float] = {}
        engine = threading.Thread(target=dispatcher.run_forever, daemon=True)
        engine.start()  # its first round starts the purge
        started = time.monotonic()
        number = 0
        while old_work(runtime) or time.monotonic() - started < 3:
            assert time.monotonic() - started < 50, "the purge took too long"
            uid = f"live-{number}"
            ingest_request(runtime.sessions, account.id, [raw_event(uid)])
            ingested[uid] = time.monotonic()
            number += 1
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while len(_Arrivals.arrived) < len(ingested) and time.monotonic() < deadline:
            time.sleep(0.05)

        assert set(_Arrivals.arrived) == set(ingested)
        latencies = sorted(_Arrivals.arrived[uid] - ingested[uid] for uid in ingested)
        p99 = statistics.quantiles(latencies, n=100)[98]
        assert p99 < 1.0, f"p99 {p99:.3f} s over {len(latencies)} deliveries"
        with runtime.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(Event).where(Event.uid.like("old-%"))) == 0
    finally:
        dispatcher.shutdown(5)
        runtime.close()
