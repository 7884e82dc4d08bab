"""Scale-out benchmark on PostgreSQL: web processes, workers and pullers side by side, each figure against
a hand-written psycopg baseline measured in the same run.

Run (small sizes, a few minutes):
  `.venv/bin/python -m bench.scale --ingest-events 10000 --push-events 10000 --pull-events 20000 \
   --latency-seconds 5 --rounds 1`
Full size (defaults; throughput figures are medians of 3 rounds): `.venv/bin/python -m bench.scale`.

It starts its own PostgreSQL server (the tests' throwaway one: fsync off, loopback only) and,
for every figure, fresh databases with the gateway's schema for the gateway and for its
baseline, then prints:

- REST ingest (POST /api/v1/events, 1,000 events a request, 4 client threads per web
  process) with 1 and 2 `gateway serve --no-dispatcher` processes; baseline: COPY of the same
  rows (converted before the clock starts) into the same tables and indexes, with as many
  connections as web processes. Goal >= 40 %.
- Push with 1, 2 and 4 `gateway worker` processes to a fast loopback receiver (8 accounts with
  one webhook each, batches of 500); baseline: as many processes, each with a thread per
  destination looping over a FOR UPDATE SKIP LOCKED lease of 500 rows, json.dumps, HMAC, one
  POST, one UPDATE. Goal >= 50 %,
  and 2 workers >= 1.6x one where the machine has the cores for it.
- Pull of the events in batches of 10,000 (GET /api/v1/batches, mode read) by 1 and 4 concurrent
  pullers through one web process; baseline: SELECT ... FOR UPDATE SKIP LOCKED + UPDATE of the same
  rows with their events. Goal: one 10,000 pull <= 2x its baseline.
- End-to-end latency from the ingest answer to the webhook's arrival, p50/p95/p99, at a steady
  rate (default 2,000 events/s) through one web process and one worker
  (dispatch_interval_seconds 0.05). Goal: p99 < 1 s.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import orjson
import psycopg
import requests
from sqlalchemy import update

from bench.eventgen import generate
from gateway.accounts import NewAccount, create_account
from gateway.config import load_settings
from gateway.destinations import webhooks
from gateway.events import model
from gateway.ingest import ingest_request
from gateway.runtime import Runtime, open_runtime
from gateway.store.models import Destination
from tests.support.net import free_port
from tests.support.postgres import FAST_SETTINGS, PostgresServer, find_bin_dir, running_server
from tests.support.processes import Processes, gateway_env

REQUEST_EVENTS = 1000
PUSH_BATCH = 500
PULL_BATCH = 10_000
PUSH_ACCOUNTS = 8
LOOPBACK = "127.0.0.0/8"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
# Every process of the gateway polls for due work this often when idle (the default is 0.5 s).
DISPATCH_INTERVAL = 0.05
EVENT_COLUMNS = tuple(name for name in model.FIELD_NAMES if name != "id")


# --- the store, the receiver and the processes


@dataclass
class Store:
    """A fresh database with the gateway's schema, and the data directory its processes share."""

    server: PostgresServer
    url: str
    dsn: str
    home: Path

    def runtime(self) -> Runtime:
        """An in-process runtime on the store (for setting it up)."""
        return open_runtime(load_settings(environ={}, database_url=self.url, home=str(self.home),
                                          outbound_allow_networks=LOOPBACK))

    def env(self) -> dict[str, str]:
        """The environment of gateway processes on the store."""
        return gateway_env(self.url, self.home, outbound_allow_networks=LOOPBACK,
                           dispatch_interval_seconds=DISPATCH_INTERVAL)


@contextmanager
def fresh_store(server: PostgresServer, directory: Path) -> Iterator[Store]:
    """A new database with the schema applied, dropped afterwards."""
    name = server.create_database("bench")
    home = directory / name
    home.mkdir(parents=True)
    store = Store(server, server.url(name), f"host={server.host} port={server.port} user={server.user} dbname={name}",
                  home)
    store.runtime().close()  # applies the migrations
    try:
        yield store
    finally:
        server.drop_database(name)


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that counts the events it is posted and, when asked, notes when each arrived."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    lock = threading.Lock()
    received = 0
    arrivals: dict[str, float] | None = None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        arrived = time.monotonic()
        events = orjson.loads(body)
        with Receiver.lock:
            Receiver.received += len(events)
            if Receiver.arrivals is not None:
                for event in events:
                    Receiver.arrivals.setdefault(event["id"], arrived)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return

    @classmethod
    def reset(cls, note_arrivals: bool = False) -> None:
        """Forget what arrived so far."""
        with cls.lock:
            cls.received = 0
            cls.arrivals = {} if note_arrivals else None


def start_receiver() -> ThreadingHTTPServer:
    """The receiver on a loopback port, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextmanager
def gateway_processes(store: Store, directory: Path) -> Iterator[Processes]:
    """Background gateway processes on the store, all stopped afterwards."""
    logs = directory / f"logs-{secrets.token_hex(4)}"
    logs.mkdir()
    processes = Processes(store.env(), logs)
    try:
        yield processes
    finally:
        processes.stop_all()


def start_workers(processes: Processes, count: int) -> None:
    """Start ``count`` workers and wait until each answers its health check."""
    ports = [free_port() for _ in range(count)]
    for port in ports:
        processes.start("worker", "--health-port", str(port))
    for port in ports:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"a worker did not come up:\n{processes.logs()}")
            time.sleep(0.1)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until ``condition`` holds; RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.005)


def one_account(store: Store, name: str = "bench") -> NewAccount:
    runtime = store.runtime()
    try:
        with runtime.sessions.begin() as session:
            return create_account(session, name, "bench-password")
    finally:
        runtime.close()


# --- REST ingest


def ingest_bodies(events: int) -> list[bytes]:
    """The request bodies of ``events`` events, 1,000 a request, encoded before any clock starts."""
    raws = list(generate(events, seed=7))
    return [orjson.dumps(raws[start:start + REQUEST_EVENTS]) for start in range(0, events, REQUEST_EVENTS)]


def ingest_gateway(server: PostgresServer, directory: Path, bodies: list[bytes], webs: int) -> float:
    """Events/s through ``webs`` web processes, 4 client threads each."""
    with fresh_store(server, directory) as store, gateway_processes(store, directory) as processes:
        account = one_account(store)
        urls = [processes.serve("--no-dispatcher", "--threads", "8") for _ in range(webs)]
        local = threading.local()
        headers = {"Authorization": f"Bearer {account.api_key}", "Content-Type": "application/json"}

        def post(number: int) -> None:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            answer = local.session.post(f"{urls[number % webs]}/api/v1/events", data=bodies[number],
                                        headers=headers, timeout=120)
            answer.raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(4 * webs) as pool:
            list(pool.map(post, range(len(bodies))))
        elapsed = time.perf_counter() - started
    return sum(body.count(b'"occurred_at"') for body in bodies) / elapsed


def _baseline_rows(bodies: list[bytes], account_id: int) -> list[list[tuple[Any, ...]]]:
    """The events of each request as rows of the events table (account, uid, received_at, the fields)."""
    received = datetime.now(timezone.utc)
    batches = []
    for body in bodies:
        rows = []
        for event in model.validate_all(orjson.loads(body)):
            values = [event.get(name) for name in EVENT_COLUMNS]
            values[EVENT_COLUMNS.index("data")] = orjson.dumps(event.get("data")).decode()
            rows.append((account_id, event["id"], received, *values))
        batches.append(rows)
    return batches


def ingest_baseline(server: PostgresServer, directory: Path, bodies: list[bytes], connections: int) -> float:
    """Events/s of COPY into the same tables and indexes: per request, ids from the sequence, the events,
    their queue rows, one transaction; ``connections`` at once."""
    with fresh_store(server, directory) as store:
        account = one_account(store)
        batches = _baseline_rows(bodies, account.id)
        columns = ", ".join(("id", "account_id", "uid", "received_at", *EVENT_COLUMNS))
        links = [psycopg.connect(store.dsn) for _ in range(connections)]

        def copy(number: int) -> None:
            link = links[number % connections]
            rows = batches[number]
            with link.transaction(), link.cursor() as cursor:
                ids = [row[0] for row in cursor.execute(
                    "SELECT nextval('events_id_seq') FROM generate_series(1, %s)", (len(rows),))]
                with cursor.copy(f"COPY events ({columns}) FROM STDIN") as writer:
                    for event_id, row in zip(ids, rows, strict=True):
                        writer.write_row((event_id, *row))
                with cursor.copy("COPY queue (destination_id, event_id, event_type, state, due_at, attempts) "
                                 "FROM STDIN") as writer:
                    for event_id, row in zip(ids, rows, strict=True):
                        writer.write_row((account.pull_destination_id, event_id, row[3], "ready", row[2], 0))

        started = time.perf_counter()
        with ThreadPoolExecutor(connections) as pool:
            # One thread per connection, each taking every connections-th request.
            list(pool.map(lambda first: [copy(n) for n in range(first, len(batches), connections)],
                          range(connections)))
        elapsed = time.perf_counter() - started
        for link in links:
            link.close()
    return sum(len(rows) for rows in batches) / elapsed


# --- push


def push_store(store: Store, events: int, hook: str) -> list[int]:
    """Accounts with one webhook each (inactive for now), sharing ``events`` waiting events; their ids."""
    runtime = store.runtime()
    try:
        destinations = []
        raws = list(generate(events, seed=3))
        share = -(-events // PUSH_ACCOUNTS)
        for index in range(PUSH_ACCOUNTS):
            with runtime.sessions.begin() as session:
                account = create_account(session, f"bench{index}", "bench-password")
                destinations.append(webhooks.create(session, account.id, {
                    "url": hook, "events": list(model.ALL_TYPES), "secret": SECRET,
                    "batch_max_events": PUSH_BATCH}).id)
                session.execute(update(Destination).where(Destination.id == destinations[-1]).values(active=False))
            mine = raws[index * share:(index + 1) * share]
            for start in range(0, len(mine), 5000):
                ingest_request(runtime.sessions, account.id, mine[start:start + 5000])
        return destinations
    finally:
        runtime.close()


def push_gateway(server: PostgresServer, directory: Path, events: int, workers: int, hook: str) -> float:
    """Events/s that ``workers`` worker processes deliver, from activating the webhooks until the last arrives."""
    with fresh_store(server, directory) as store, gateway_processes(store, directory) as processes:
        destinations = push_store(store, events, hook)
        start_workers(processes, workers)
        Receiver.reset()
        started = time.perf_counter()
        with psycopg.connect(store.dsn, autocommit=True) as link:
            link.execute("UPDATE destinations SET active = true WHERE id = ANY(%s)", (destinations,))
        wait_for(lambda: Receiver.received >= events, 600, "push delivery")
        return events / (time.perf_counter() - started)


_LEASE = """
WITH taken AS (
  UPDATE queue SET state = 'leased', lease_id = %(lease)s, due_at = now() + interval '2 minutes',
                   attempts = attempts + 1
  WHERE id IN (SELECT id FROM queue WHERE destination_id = %(destination)s AND state <> 'done' AND due_at <= now()
               ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
  RETURNING event_id)
SELECT e.uid, e.type, e.occurred_at, e.email, e.phone, e.message_id, e.message_name, e.list_id, e.delivered_at,
       e.url, e.category, e.reason, e.error, e.source, e.data
FROM events AS e JOIN taken ON taken.event_id = e.id ORDER BY e.id
"""
_NAMES = ("id", "type", "occurred_at", "email", "phone", "message_id", "message_name", "list_id", "delivered_at",
          "url", "category", "reason", "error", "source", "data")


def baseline_pusher(dsn: str, port: int, destinations: list[int], ready: Barrier) -> None:
    """One baseline process: a thread per destination (as a worker delivers to several at once), each
    leasing 500 rows, rendering them as JSON, signing, POSTing and marking them done, until none is left."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))

    def push(destination: int, link: psycopg.Connection[Any]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port)
        while True:
            lease = "msg_" + secrets.token_urlsafe(18)
            rows = link.execute(_LEASE, {"lease": lease, "limit": PUSH_BATCH, "destination": destination}).fetchall()
            if not rows:
                return
            body = json.dumps([{name: value.isoformat() if isinstance(value, datetime) else value
                                for name, value in zip(_NAMES, row, strict=True) if value is not None}
                               for row in rows]).encode()
            stamp = str(int(time.time()))
            signature = base64.b64encode(hmac.new(key, f"{lease}.{stamp}.".encode() + body, hashlib.sha256).digest())
            connection.request("POST", "/hook", body, {
                "Content-Type": "application/json", "webhook-id": lease, "webhook-timestamp": stamp,
                "webhook-signature": "v1," + signature.decode()})
            connection.getresponse().read()
            link.execute("UPDATE queue SET state = 'done', done_at = now() WHERE lease_id = %s AND state = 'leased'",
                         (lease,))

    links = [psycopg.connect(dsn, autocommit=True) for _ in destinations]
    ready.wait()
    with ThreadPoolExecutor(len(destinations)) as pool:
        list(pool.map(push, destinations, links))
    for link in links:
        link.close()


def push_baseline(server: PostgresServer, directory: Path, events: int, processes: int, port: int) -> float:
    """Events/s of ``processes`` baseline pushers on the same data."""
    with fresh_store(server, directory) as store:
        destinations = push_store(store, events, f"http://127.0.0.1:{port}/hook")
        with psycopg.connect(store.dsn, autocommit=True) as link:
            link.execute("UPDATE destinations SET active = true WHERE id = ANY(%s)", (destinations,))
        spawn = multiprocessing.get_context("spawn")
        ready = spawn.Barrier(processes + 1)  # the clock starts once every pusher has started and connected
        pushers = [spawn.Process(target=baseline_pusher, args=(store.dsn, port, destinations, ready))
                   for _ in range(processes)]
        for pusher in pushers:
            pusher.start()
        Receiver.reset()
        ready.wait(timeout=120)
        started = time.perf_counter()
        for pusher in pushers:
            pusher.join()
        elapsed = time.perf_counter() - started
        if Receiver.received < events:
            raise RuntimeError(f"the baseline delivered {Receiver.received} of {events} events")
    return events / elapsed


# --- pull


def pull_store(store: Store, events: int) -> NewAccount:
    """One account with ``events`` events in its pull queue."""
    account = one_account(store)
    runtime = store.runtime()
    try:
        raws = list(generate(events, seed=5))
        for start in range(0, events, 5000):
            ingest_request(runtime.sessions, account.id, raws[start:start + 5000])
    finally:
        runtime.close()
    return account


@dataclass(frozen=True)
class PullFigures:
    """Events/s of draining the queue, and the median seconds of one full 10,000 batch."""

    rate: float
    full_batch: float


def drain_concurrently(events: int, pullers: int, connect: Callable[[], contextlib.AbstractContextManager[Any]],
                       take: Callable[[Any], int]) -> PullFigures:
    """``pullers`` threads, each with its own ``connect()``ion, calling ``take`` (one batch: how many events it
    took) until it takes none; refuses figures unless exactly ``events`` were taken."""
    full: list[float] = []

    def drain(_: int) -> int:
        taken = 0
        with connect() as link:
            while True:
                clock = time.perf_counter()
                count = take(link)
                if count == PULL_BATCH:
                    full.append(time.perf_counter() - clock)
                taken += count
                if not count:
                    return taken

    started = time.perf_counter()
    with ThreadPoolExecutor(pullers) as pool:
        taken = sum(pool.map(drain, range(pullers)))
    elapsed = time.perf_counter() - started
    if taken != events:
        raise RuntimeError(f"the pullers took {taken} of {events} events")
    return PullFigures(events / elapsed, statistics.median(full) if full else float("nan"))


def pull_gateway(server: PostgresServer, directory: Path, events: int, pullers: int) -> PullFigures:
    """``pullers`` REST clients draining the pull queue in batches of 10,000 (mode read) through one web process."""
    with fresh_store(server, directory) as store, gateway_processes(store, directory) as processes:
        account = pull_store(store, events)
        url = processes.serve("--no-dispatcher", "--threads", "8")
        headers = {"Authorization": f"Bearer {account.api_key}"}

        def take(session: requests.Session) -> int:
            answer = session.get(f"{url}/api/v1/batches", params={"max": PULL_BATCH, "mode": "read"},
                                 headers=headers, timeout=120)
            answer.raise_for_status()
            return len(answer.json()["events"])

        return drain_concurrently(events, pullers, requests.Session, take)


_TAKE = """
WITH taken AS (
  UPDATE queue SET state = 'done', done_at = now(), lease_id = %(batch)s
  WHERE id IN (SELECT id FROM queue WHERE destination_id = %(destination)s AND state <> 'done' AND due_at <= now()
               ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
  RETURNING event_id)
SELECT e.* FROM events AS e JOIN taken ON taken.event_id = e.id ORDER BY e.id
"""


def pull_baseline(server: PostgresServer, directory: Path, events: int, pullers: int) -> PullFigures:
    """``pullers`` connections selecting and marking the same rows with their events, 10,000 at a time."""
    with fresh_store(server, directory) as store:
        account = pull_store(store, events)

        def take(link: psycopg.Connection[Any]) -> int:
            return len(link.execute(_TAKE, {"batch": secrets.token_hex(8), "limit": PULL_BATCH,
                                            "destination": account.pull_destination_id}).fetchall())

        return drain_concurrently(events, pullers, lambda: psycopg.connect(store.dsn, autocommit=True), take)


# --- end-to-end latency


@dataclass(frozen=True)
class Latency:
    """Seconds from the ingest answer to the webhook's arrival, and the rate achieved."""

    p50: float
    p95: float
    p99: float
    rate: float
    events: int


def latency(server: PostgresServer, directory: Path, rate: int, seconds: float, hook: str) -> Latency:
    """Post events at a steady ``rate`` for ``seconds`` through one web process; one worker delivers them."""
    ticks_per_second = 20
    per_tick = max(1, rate // ticks_per_second)
    with fresh_store(server, directory) as store, gateway_processes(store, directory) as processes:
        account = one_account(store)
        runtime = store.runtime()
        with runtime.sessions.begin() as session:
            webhooks.create(session, account.id, {"url": hook, "events": list(model.ALL_TYPES), "secret": SECRET,
                                                  "batch_max_events": PUSH_BATCH})
        runtime.close()
        url = processes.serve("--no-dispatcher", "--threads", "8")
        start_workers(processes, 1)
        raws = list(generate(int(per_tick * ticks_per_second * seconds) + per_tick, seed=9))
        bodies = [orjson.dumps(raws[start:start + per_tick]) for start in range(0, len(raws), per_tick)]
        ids = [[event["id"] for event in raws[start:start + per_tick]] for start in range(0, len(raws), per_tick)]
        answered: dict[str, float] = {}
        headers = {"Authorization": f"Bearer {account.api_key}", "Content-Type": "application/json"}
        Receiver.reset(note_arrivals=True)
        producers = 4
        started = time.monotonic() + 0.2
        ticks = int(seconds * ticks_per_second)

        def produce(first: int) -> None:
            with requests.Session() as session:
                for tick in range(first, ticks, producers):
                    pause = started + tick / ticks_per_second - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    session.post(f"{url}/api/v1/events", data=bodies[tick], headers=headers,
                                 timeout=30).raise_for_status()
                    now = time.monotonic()
                    for uid in ids[tick]:
                        answered[uid] = now

        with ThreadPoolExecutor(producers) as pool:
            list(pool.map(produce, range(producers)))
        produced = time.monotonic() - started
        arrivals = Receiver.arrivals
        assert arrivals is not None
        wait_for(lambda: len(arrivals) >= len(answered), 60, "delivery of every event")
        Receiver.reset()
    delays = sorted(arrivals[uid] - at for uid, at in answered.items())
    cuts = statistics.quantiles(delays, n=100)
    return Latency(cuts[49], cuts[94], cuts[98], len(answered) / produced, len(answered))


# --- the run


def median(rounds: int, measure: Callable[[], float]) -> float:
    """The median of ``rounds`` runs of ``measure``."""
    return statistics.median(measure() for _ in range(rounds))


def median_pull(rounds: int, measure: Callable[[], PullFigures]) -> PullFigures:
    """The medians of ``rounds`` pull runs."""
    runs = [measure() for _ in range(rounds)]
    return PullFigures(statistics.median(run.rate for run in runs), statistics.median(run.full_batch for run in runs))


def main() -> None:
    """Run every measurement once and print the figures and their ratios to the baselines."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest-events", type=int, default=200_000)
    parser.add_argument("--push-events", type=int, default=100_000)
    parser.add_argument("--pull-events", type=int, default=100_000)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=2000, help="events/s of the latency run")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts of the push run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each throughput figure (medians printed)")
    args = parser.parse_args()
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL server binaries not found (install `postgresql` or set EVENTGW_TEST_PG_BIN)")
    cores = os.cpu_count() or 1
    receiver = start_receiver()
    hook = f"http://127.0.0.1:{receiver.server_port}/hook"
    with tempfile.TemporaryDirectory() as tmp, running_server(bin_dir, (*FAST_SETTINGS, "max_connections=200")) \
            as server:
        directory = Path(tmp)
        print(f"PostgreSQL {server.connect().info.server_version} on {cores} core(s); fsync off")

        bodies = ingest_bodies(args.ingest_events)
        for webs in (1, 2):
            ours = median(args.rounds, partial(ingest_gateway, server, directory, bodies, webs))
            base = median(args.rounds, partial(ingest_baseline, server, directory, bodies, webs))
            print(f"ingest, {webs} web process(es)   : {ours:>9,.0f} events/s; baseline COPY x{webs}: "
                  f"{base:>9,.0f} events/s; {ours / base:.0%} (goal >= 40%)")

        push: dict[int, float] = {}
        for workers in (int(n) for n in args.workers.split(",")):
            push[workers] = median(args.rounds, partial(push_gateway, server, directory, args.push_events, workers,
                                                        hook))
            base = median(args.rounds, partial(push_baseline, server, directory, args.push_events, workers,
                                               receiver.server_port))
            print(f"push, {workers} worker(s)          : {push[workers]:>9,.0f} events/s; baseline x{workers}: "
                  f"{base:>9,.0f} events/s; {push[workers] / base:.0%} (goal >= 50%)")
        if 1 in push and 2 in push:
            print(f"push, 2 workers / 1 worker      : {push[2] / push[1]:.2f}x (goal >= 1.6x where {cores} core(s) "
                  "allow: PostgreSQL, the receiver and the workers share them)")

        for pullers in (1, 4):
            ours_pull = median_pull(args.rounds, partial(pull_gateway, server, directory, args.pull_events, pullers))
            base_pull = median_pull(args.rounds, partial(pull_baseline, server, directory, args.pull_events, pullers))
            print(f"pull, {pullers} puller(s)           : {ours_pull.rate:>9,.0f} events/s; baseline: "
                  f"{base_pull.rate:>9,.0f} events/s; one 10,000 batch {ours_pull.full_batch * 1000:,.0f} ms vs "
                  f"{base_pull.full_batch * 1000:,.0f} ms = {ours_pull.full_batch / base_pull.full_batch:.2f}x "
                  "(goal <= 2x)")

        figures = latency(server, directory, args.rate, args.latency_seconds, hook)
        print(f"latency at {figures.rate:,.0f} events/s ({figures.events:,} events): p50 {figures.p50 * 1000:,.0f} ms, "
              f"p95 {figures.p95 * 1000:,.0f} ms, p99 {figures.p99 * 1000:,.0f} ms (goal p99 < 1 s)")
    receiver.shutdown()


if __name__ == "__main__":
    main()
