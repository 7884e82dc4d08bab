"""Console benchmark: how long each console page takes to answer over a store of 1,000,000 events.

Run: `.venv/bin/python -m bench.console [--events 1000000] [--repeat 7] [--database-url URL]`.
Fills a fresh store (SQLite in a temporary directory unless a URL is given) in bulk, 10,000
events per transaction, with generated events ending now (about 23 days for 1M events, so the
week's chart covers about 300,000 of them); routes CLICK and BOUNCE to a webhook, deactivated,
with 1,000 logged attempts; collects 90% of the pull queue in batches of 10,000, so 10% still
waits; on PostgreSQL, vacuums and analyzes as autovacuum would have. Then it logs in to a real
server over HTTP and fetches each page ``--repeat`` times, printing the median and the slowest
answer in milliseconds. The target is under 200 ms.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta

import requests
from sqlalchemy import text

from bench.eventgen import generate
from gateway import pull
from gateway.accounts import create_account
from gateway.config import load_settings
from gateway.destinations import control, webhooks
from gateway.ingest import ingest_request
from gateway.runtime import Runtime, open_runtime
from gateway.server import ServerThread
from gateway.store.models import Attempt, utcnow

PASSWORD = "bench-password"
CHUNK = 10_000
TARGET_MS = 200.0


@contextlib.contextmanager
def filled_store(url: str | None, count: int) -> Iterator[tuple[Runtime, int]]:
    """A store with ``count`` events of one account and the destinations and history described above."""
    with tempfile.TemporaryDirectory(prefix="eventgw-bench-console-") as directory:
        settings = load_settings(environ={}, home=directory, database_url=url or f"sqlite:///{directory}/bench.db",
                                 outbound_allow_networks="127.0.0.0/8")
        runtime = open_runtime(settings)
        try:
            with runtime.sessions.begin() as session:
                account = create_account(session, "bench", PASSWORD)
            with runtime.sessions.begin() as session:
                hook = webhooks.create(session, account.id, {"url": "http://127.0.0.1:9/hook",
                                                            "events": ["CLICK", "BOUNCE"]})
                hook_id = hook.id
            started = time.perf_counter()
            start = utcnow() - timedelta(seconds=2 * count)
            events = generate(count, start=start)
            for _ in range(0, count, CHUNK):
                ingest_request(runtime.sessions, account.id, [next(events) for _ in range(min(CHUNK, count))])
            print(f"stored {count:,} events in {time.perf_counter() - started:.0f} s")
            with runtime.sessions.begin() as session:
                session.add_all(Attempt(destination_id=hook_id, message_id=f"msg_{i}", started_at=utcnow(),
                                        duration_ms=12, event_count=500, outcome="failed", status=503,
                                        detail="HTTP 503: down for maintenance") for i in range(1000))
                control.deactivate(session, account.id, hook_id)
            for _ in range(count * 9 // 10 // CHUNK):
                pull.get_batch(runtime.sessions, account.id, [], CHUNK, "read", lambda batch: None)
            if runtime.engine.dialect.name == "postgresql":
                # What autovacuum does to a store that has run for a while: statistics for the planner, and
                # the visibility map that lets index-only scans skip the table.
                with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.execute(text("VACUUM ANALYZE"))
            yield runtime, hook_id
        finally:
            runtime.close()


def timed(session: requests.Session, url: str, repeat: int) -> list[float]:
    """Milliseconds each of ``repeat`` fetches of ``url`` took (after one unmeasured warm-up)."""
    session.get(url).raise_for_status()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = session.get(url)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL store to fill (its data is kept)")
    args = parser.parse_args()
    with filled_store(args.database_url, args.events) as (runtime, hook_id):
        server = ServerThread(runtime)
        try:
            browser = requests.Session()
            login = browser.get(server.url + "/login").text
            token = re.search(r'name="csrf" value="([^"]+)"', login)
            assert token
            browser.post(server.url + "/login", data={"csrf": token.group(1), "name": "bench",
                                                      "secret": PASSWORD}).raise_for_status()
            some = next(generate(1, start=utcnow() - timedelta(seconds=2 * args.events)))
            week_ago = (utcnow() - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
            pages = {
                "overview": "/", "destinations": "/destinations", "webhook": f"/destinations/{hook_id}",
                "pull": "/pull", "events (latest)": "/events", "events by type": "/events?type=CLICK",
                "events by id": f"/events?id={some['id']}",
                "events by recipient": f"/events?recipient={some.get('email') or some.get('phone')}",
                "events in a week, by type": f"/events?type=BOUNCE&since={week_ago}",
            }
            print(f"{'page':28} {'median ms':>10} {'slowest ms':>11}")
            slowest = 0.0
            for name, path in pages.items():
                times = timed(browser, server.url + path, args.repeat)
                slowest = max(slowest, statistics.median(times))
                print(f"{name:28} {statistics.median(times):10.1f} {max(times):11.1f}")
            print(f"slowest page median {slowest:.1f} ms (target {TARGET_MS:.0f} ms): "
                  f"{'met' if slowest < TARGET_MS else 'NOT met'}")
        finally:
            server.close()


if __name__ == "__main__":
    main()
