"""Ingest benchmark: bulk function, REST endpoint and `gateway ingest` against a plain sqlite3 baseline.

Run: `.venv/bin/python -m bench.ingest [--events 200000] [--file-lines 1000000] [--rounds 3]`.
Prints events/s for each path (medians over the rounds), the ratio to the baseline measured in the
same run, and peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.eventgen import generate
from bench.rounds import median_rates
from gateway.accounts import create_account
from gateway.config import load_settings
from gateway.events import model
from gateway.ingest import ingest_request
from gateway.runtime import Runtime, open_runtime
from gateway.server import ServerThread

BATCH = 1000


def fresh_runtime(directory: Path) -> tuple[Runtime, int, str]:
    """A new SQLite store with one account; returns the runtime, account id and API key."""
    runtime = open_runtime(load_settings(environ={}, home=str(directory)))
    with runtime.sessions.begin() as session:
        created = create_account(session, "bench", "bench-password")
    return runtime, created.id, created.api_key


def baseline(directory: Path, raws: list[dict]) -> float:
    """Plain sqlite3 executemany of the same rows (validated and converted before the clock starts)
    into equivalent tables (events and their queue rows) with the same indexes."""
    connection = sqlite3.connect(directory / "baseline.db")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    columns = ["account_id", "uid", "type", "occurred_at", "received_at", "email", "phone", "message_id",
               "message_name", "list_id", "delivered_at", "url", "category", "reason", "error", "source", "data"]
    connection.execute(f"CREATE TABLE events (id INTEGER PRIMARY KEY, {', '.join(columns)})")
    connection.execute("CREATE UNIQUE INDEX uq ON events (account_id, uid)")
    connection.execute("CREATE INDEX ix ON events (account_id, type, occurred_at)")
    connection.execute("CREATE TABLE queue (id INTEGER PRIMARY KEY, destination_id, event_id, event_type, state, "
                       "due_at, lease_id, attempts, done_at)")
    connection.execute("CREATE UNIQUE INDEX uq_q ON queue (destination_id, event_id)")
    connection.execute("CREATE INDEX ix_q ON queue (destination_id, state, id)")
    connection.execute("CREATE INDEX ix_q2 ON queue (event_id)")
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    batches = []
    for start in range(0, len(raws), BATCH):
        events = model.validate_all(raws[start:start + BATCH])
        batches.append([(1, e["id"], e["type"], str(e["occurred_at"]), now, e.get("email"), e.get("phone"),
                         e.get("message_id"), e.get("message_name"), e.get("list_id"), str(e.get("delivered_at")),
                         e.get("url"), e.get("category"), e.get("reason"), e.get("error"), e.get("source"),
                         json.dumps(e.get("data"))) for e in events])
    started = time.perf_counter()
    for rows in batches:
        with connection:
            first = connection.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
            connection.executemany(f"INSERT OR IGNORE INTO events ({', '.join(columns)}) "
                                   f"VALUES ({', '.join('?' * len(columns))})", rows)
            connection.execute("INSERT INTO queue (destination_id, event_id, event_type, state, due_at, attempts) "
                               "SELECT 1, id, type, 'ready', ?, 0 FROM events WHERE id > ?", (now, first))
    elapsed = time.perf_counter() - started
    connection.close()
    return len(raws) / elapsed


def bulk(directory: Path, raws: list[dict]) -> float:
    """The bulk ingest function, in requests of 1,000 events."""
    runtime, account_id, _ = fresh_runtime(directory / "bulk")
    started = time.perf_counter()
    for start in range(0, len(raws), BATCH):
        ingest_request(runtime.sessions, account_id, raws[start:start + BATCH])
    elapsed = time.perf_counter() - started
    runtime.close()
    return len(raws) / elapsed


def rest(directory: Path, raws: list[dict]) -> float:
    """POST /api/v1/events in batches of 1,000 against a running server."""
    runtime, _, api_key = fresh_runtime(directory / "rest")
    server = ServerThread(runtime, threads=4)
    url = server.url + "/api/v1/events"
    bodies = [json.dumps(raws[start:start + BATCH]).encode() for start in range(0, len(raws), BATCH)]
    with requests.Session() as http:
        http.headers.update({"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        started = time.perf_counter()
        for body in bodies:
            http.post(url, data=body).raise_for_status()
        elapsed = time.perf_counter() - started
    server.close()
    runtime.close()
    return len(raws) / elapsed


def cli_file(directory: Path, lines: int) -> tuple[float, float]:
    """`gateway ingest` of a JSONL file in a child process; returns events/s and the child's peak RSS in MB."""
    path = directory / "events.jsonl"
    with open(path, "w") as handle:
        for event in generate(lines, seed=7, prefix="file"):
            handle.write(json.dumps(event) + "\n")
    env = {**os.environ, "EVENTGW_HOME": str(directory / "cli")}
    gateway = str(Path(sys.executable).parent / "gateway")
    subprocess.run([gateway, "account", "create", "bench", "--password", "bench-password"], env=env, check=True,
                   capture_output=True)
    # The child reports its own high-water RSS (VmHWM): ru_maxrss of a forked child
    # would include the benchmark process it was forked from.
    probe = ("import atexit, sys; from gateway.cli import main; atexit.register(lambda: print("
             "open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)); "
             f"sys.argv = ['gateway', 'ingest', {str(path)!r}, '--account', 'bench']; main()")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"gateway ingest failed: {done.stderr}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return lines / elapsed, peak_kb / 1024


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--file-lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    raws = list(generate(args.events))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)

        def measure(round_: int) -> dict[str, float]:
            here = directory / f"round{round_}"
            here.mkdir()
            return {"baseline": baseline(here, raws), "bulk": bulk(here, raws), "rest": rest(here, raws)}

        medians = median_rates(args.rounds, measure)
        base, figure, over_http = medians["baseline"], medians["bulk"], medians["rest"]
        print(f"baseline sqlite3 executemany : {base:>10,.0f} events/s (median of {args.rounds})")
        print(f"bulk ingest function         : {figure:>10,.0f} events/s  "
              f"({figure / base:.0%} of baseline, goal >= 40%)")
        print(f"REST POST /api/v1/events     : {over_http:>10,.0f} events/s  "
              f"({over_http / base:.0%} of baseline, goal >= 20%)")
        rate, peak = cli_file(directory, args.file_lines)
        print(f"gateway ingest {args.file_lines:,}-line file: {rate:>10,.0f} events/s, peak RSS {peak:.0f} MB "
              f"(goal < 150 MB)")
    print(f"benchmark process peak RSS   : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
