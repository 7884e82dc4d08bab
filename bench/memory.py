"""Ingest memory benchmark: peak and lasting RSS of a real `gateway serve` under concurrent large bodies.

Run: `.venv/bin/python -m bench.memory [--requests 8] [--megabytes 30] [--goal 300]`.
Starts `gateway serve` on a fresh SQLite store, posts ``--requests`` bodies of about
``--megabytes`` MB each at once (10,000 events with a few KB of data each), and prints the
server's peak RSS (VmHWM) and its RSS a few seconds after the last answer, against the goal.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from bench.eventgen import generate
from tests.support.net import free_port

EVENTS_PER_REQUEST = 10_000
SETTLE_SECONDS = 5.0


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of process ``pid`` from /proc, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def extra_data(shape: str, size: int) -> dict[str, Any]:
    """About ``size`` bytes of JSON for an event's data: ``text``, a few long texts (a message's subject,
    user agent, custom fields); ``items``, many small objects (order lines), the costliest shape
    once parsed."""
    if shape == "items":
        item = {"sku": "sku-00000", "qty": 0, "note": "x" * 20}
        count = size // (len(json.dumps(item)) + 2)
        return {"items": [{**item, "sku": f"sku-{i:05d}", "qty": i % 7} for i in range(count)]}
    field = f"value 00 {'y' * 240}"
    count = max(1, round(size / (len(json.dumps({"custom_00": field})) + 1)))
    return {f"custom_{i:02d}": f"value {i:02d} " + "y" * 240 for i in range(count)}


def bodies(count: int, megabytes: float, shape: str) -> list[bytes]:
    """``count`` JSON array bodies of about ``megabytes`` MB each, with distinct event ids."""
    per_event = int(megabytes * 1_000_000 / EVENTS_PER_REQUEST)
    made = []
    for number in range(count):
        events = list(generate(EVENTS_PER_REQUEST, seed=number, prefix=f"r{number}"))
        data = extra_data(shape, max(0, per_event - len(json.dumps(events[0])) - 2))
        for event in events:
            event["data"].update(data)
        made.append(json.dumps(events).encode())
    return made


def start_server(home: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """A `gateway serve` child on a new store with one account; returns it and the account's API key."""
    env = {**os.environ, "EVENTGW_HOME": str(home)}
    gateway = str(Path(sys.executable).parent / "gateway")
    created = subprocess.run([gateway, "account", "create", "bench", "--password", "bench-password"],
                             env=env, check=True, capture_output=True, text=True)
    api_key = created.stdout.split("api key:")[1].split()[0]
    server = subprocess.Popen([gateway, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return server, api_key
        except requests.ConnectionError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("gateway serve did not start")


def post_all(url: str, api_key: str, payloads: list[bytes]) -> tuple[Counter[int], float]:
    """Post every body at once, one thread each; returns the answers' status counts and the seconds taken."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def post(body: bytes) -> None:
        status = 0
        try:
            status = requests.post(url, data=body, timeout=600, headers={
                "Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}).status_code
        except requests.RequestException:
            pass
        with lock:
            statuses[status] += 1

    threads = [threading.Thread(target=post, args=(body,)) for body in payloads]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, time.perf_counter() - started


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--megabytes", type=float, default=30.0)
    parser.add_argument("--shape", choices=("text", "items"), default="text",
                        help="what fills each event's data: long texts, or many small objects")
    parser.add_argument("--goal", type=float, default=300.0, help="peak RSS goal in MB")
    args = parser.parse_args()
    payloads = bodies(args.requests, args.megabytes, args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server, api_key = start_server(Path(tmp), port)
        try:
            idle = rss_mb(server.pid)
            statuses, seconds = post_all(f"http://127.0.0.1:{port}/api/v1/events", api_key, payloads)
            peak = rss_mb(server.pid, "VmHWM")
            time.sleep(SETTLE_SECONDS)
            after = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    size = sum(len(p) for p in payloads) / len(payloads) / 1e6
    print(f"{args.requests} concurrent requests of {size:.1f} MB ({EVENTS_PER_REQUEST} events each, "
          f"{args.shape} data), "
          f"answered in {seconds:.1f} s: {dict(sorted(statuses.items()))}")
    met = peak < args.goal and statuses == Counter({200: args.requests})
    print(f"server RSS: idle {idle:.0f} MB, peak {peak:.0f} MB, {SETTLE_SECONDS:.0f} s after {after:.0f} MB; "
          f"goal: every request stored with a peak under {args.goal:.0f} MB -> {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
