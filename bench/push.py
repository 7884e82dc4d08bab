"""Push benchmark: the dispatcher and HTTP sink against a hand-written loop, then with dead and hanging neighbours.

Run: `.venv/bin/python -m bench.push [--events 100000] [--rounds 3]`.
Prints, as medians over the rounds, events/s for the real dispatcher and for the baseline
(plain sqlite3 reading 500 queued rows, json.dumps, the HMAC signature, one POST over a
kept-alive connection and one UPDATE, in a loop), their ratio, and the healthy endpoint's
throughput as a share of its throughput alone: beside 10 dead (connection refused) and 10
hanging endpoints of its own account, and beside hostile neighbours (16 slow-drip endpoints
of another account, one header byte every 3 s, and 4 poison events in its own stream that
no JSON writer can write).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import text

from bench.eventgen import generate
from bench.rounds import median_rates
from gateway.accounts import create_account
from gateway.config import load_settings
from gateway.delivery.engine import Dispatcher
from gateway.destinations import webhooks
from gateway.events import formats, model
from gateway.ingest import ingest_request
from gateway.runtime import Runtime, open_runtime
from tests.support.drip import serve_slow_drip
from tests.support.net import free_port

BATCH = 500
HOSTILE_ENDPOINTS = 16
POISONS = 4
# Deeper than orjson writes: such an event cannot be posted as JSON, and is parked alone.
POISON_DATA = '{"deep": ' + "[" * 300 + "1" + "]" * 300 + "}"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()


class Receiver(BaseHTTPRequestHandler):
    """Counts the events it is posted; answers 200 at once, or never (hanging=True)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/hang"):
            time.sleep(30)
            return
        with Receiver.lock:
            Receiver.received += body.count(b'"type"')
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return


def start_receiver() -> ThreadingHTTPServer:
    """A receiver on a loopback port, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def setup(directory: Path, events: int, urls: list[str], hostile: list[str] | None = None
          ) -> tuple[Runtime, list[int]]:
    """A store whose account routes every type to the first URL, and OPEN also to the others;
    with ``hostile``, a second account whose OPEN events (one per URL) go to each of those URLs."""
    runtime = open_runtime(load_settings(environ={}, home=str(directory), http_timeout_seconds=2,
                                         dispatch_concurrency=32, dispatch_interval_seconds=0.05,
                                         outbound_allow_networks="127.0.0.0/8"))
    with runtime.sessions.begin() as session:
        account = create_account(session, "bench", "bench-password")
        ids = [webhooks.create(session, account.id, {
            "url": url, "events": list(model.ALL_TYPES) if index == 0 else ["OPEN"], "secret": SECRET,
            "batch_max_events": BATCH, "timeout_seconds": 2}).id for index, url in enumerate(urls)]
        neighbour = create_account(session, "neighbour", "bench-password").id
        for url in hostile or []:
            webhooks.create(session, neighbour, {"url": url, "events": ["OPEN"], "secret": SECRET})
    if hostile:
        ingest_request(runtime.sessions, neighbour, [
            {"id": f"slow-{i}", "type": "OPEN", "occurred_at": "2026-11-24T10:15:00Z", "email": "a@example.com"}
            for i in range(len(hostile))])
    raws = list(generate(events, seed=3))
    for start in range(0, events, 5000):
        ingest_request(runtime.sessions, account.id, raws[start:start + 5000])
    return runtime, ids


def poison(runtime: Runtime, uids: list[str]) -> None:
    """Give these stored events data no JSON writer can write, straight in the store (ingest refuses it)."""
    with runtime.sessions.begin() as session:
        for uid in uids:
            session.execute(text("UPDATE events SET data = :data WHERE uid = :uid"), {"data": POISON_DATA, "uid": uid})


def dispatcher_rate(runtime: Runtime, events: int, neighbours_gone: Callable[[], object] = lambda: None) -> float:
    """Events/s the real dispatcher delivers to the healthy receiver until it has ``events``;
    ``neighbours_gone`` is called after the measurement, before the dispatcher stops."""
    Receiver.received = 0
    dispatcher = Dispatcher(runtime)
    thread = threading.Thread(target=dispatcher.run_forever, daemon=True)
    started = time.perf_counter()
    thread.start()
    while Receiver.received < events:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    neighbours_gone()
    dispatcher.stop()  # waits out the hanging neighbours' timeouts, untimed
    thread.join()
    return events / elapsed


def hostile_rate(directory: Path, events: int, healthy: str) -> float:
    """The healthy endpoint's events/s beside another account's slow-drip endpoints, with poison
    events among its own (parked, so they never arrive: it waits for the others)."""
    endpoints = contextlib.ExitStack()
    with endpoints:
        drip = endpoints.enter_context(serve_slow_drip(interval=3.0))
        runtime, _ = setup(directory, events, [healthy], [drip.url] * HOSTILE_ENDPOINTS)
        try:
            raws = list(generate(events, seed=3))
            poison(runtime, [raws[(index + 1) * events // (POISONS + 1)]["id"] for index in range(POISONS)])
            # The slow endpoints close their connections before the dispatcher stops, so the hung deliveries end.
            return dispatcher_rate(runtime, events - POISONS, endpoints.close)
        finally:
            runtime.close()


def baseline(directory: Path, port: int, events: int) -> float:
    """The same work by hand: read 500 rows, render, sign, POST, mark delivered, in a loop."""
    db = sqlite3.connect(directory / "baseline.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    names = [name for name in model.FIELD_NAMES if name != "data"]
    db.execute(f"CREATE TABLE queue (rowid_ INTEGER PRIMARY KEY, state TEXT, {', '.join(names)}, data TEXT)")
    db.execute("CREATE INDEX ix ON queue (state, rowid_)")
    rows = []
    for event in model.validate_all(list(generate(events, seed=3))):
        shown = formats.to_json(event)
        rows.append(("ready", *(shown.get(name) for name in names), json.dumps(shown.get("data"))))
    db.executemany(f"INSERT INTO queue (state, {', '.join(names)}, data) "
                   f"VALUES ({', '.join('?' * (len(names) + 2))})", rows)
    key = base64.b64decode(SECRET[6:])
    connection = http.client.HTTPConnection("127.0.0.1", port)
    Receiver.received = 0
    started = time.perf_counter()
    number = 0
    while True:
        batch = db.execute(f"SELECT rowid_, {', '.join(names)}, data FROM queue WHERE state = 'ready' "
                           "ORDER BY rowid_ LIMIT ?", (BATCH,)).fetchall()
        if not batch:
            break
        body = json.dumps([{**{name: value for name, value in zip(names, row[1:-1], strict=False) if value is not None},
                            "data": json.loads(row[-1])} for row in batch]).encode()
        number += 1
        msg_id, stamp = f"msg_{number}", str(int(time.time()))
        signature = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest())
        connection.request("POST", "/hook", body, {"Content-Type": "application/json", "webhook-id": msg_id,
                                                   "webhook-timestamp": stamp,
                                                   "webhook-signature": "v1," + signature.decode()})
        connection.getresponse().read()
        db.execute("UPDATE queue SET state = 'done' WHERE rowid_ BETWEEN ? AND ?", (batch[0][0], batch[-1][0]))
    elapsed = time.perf_counter() - started
    db.close()
    return events / elapsed


def main() -> None:
    """Run the three measurements a few times each and print their medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    receiver = start_receiver()
    healthy = f"http://127.0.0.1:{receiver.server_port}/hook"

    with tempfile.TemporaryDirectory() as tmp:

        def measure(round_: int) -> dict[str, float]:
            directory = Path(tmp) / f"round{round_}"
            directory.mkdir()
            figures = {"baseline": baseline(directory, receiver.server_port, args.events)}
            runtime, _ = setup(directory / "alone", args.events, [healthy])
            figures["alone"] = dispatcher_rate(runtime, args.events)
            runtime.close()
            neighbours = [f"http://127.0.0.1:{free_port()}/dead" for _ in range(10)]
            neighbours += [f"http://127.0.0.1:{receiver.server_port}/hang{i}" for i in range(10)]
            runtime, _ = setup(directory / "crowded", args.events, [healthy, *neighbours])
            figures["crowded"] = dispatcher_rate(runtime, args.events)
            runtime.close()
            figures["hostile"] = hostile_rate(directory / "hostile", args.events, healthy)
            return figures

        medians = median_rates(args.rounds, measure)
    base, alone, crowded, hostile = medians["baseline"], medians["alone"], medians["crowded"], medians["hostile"]
    print(f"baseline (sqlite3 + json + hmac + POST + UPDATE): {base:>9,.0f} events/s (median of {args.rounds})")
    print(f"dispatcher + HTTP sink, alone                   : {alone:>9,.0f} events/s "
          f"({alone / base:.0%} of baseline, goal >= 50%)")
    print(f"  with 10 dead and 10 hanging neighbours         : {crowded:>9,.0f} events/s "
          f"({crowded / alone:.0%} of alone, goal >= 80%)")
    print(f"  with {HOSTILE_ENDPOINTS} slow-drip endpoints of another account and {POISONS} poison events: "
          f"{hostile:>9,.0f} events/s ({hostile / alone:.0%} of alone, goal >= 80%)")


if __name__ == "__main__":
    main()
