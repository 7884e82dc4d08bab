"""`gateway pull`, the zeep client of the typed service, and concurrent pullers of one account."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from gateway import pull
from gateway.accounts import NewAccount, create_account
from gateway.events import formats, model
from gateway.ingest import store_events
from gateway.limits import MAX_BATCH_EVENTS
from gateway.pull_client import EventsClient, pull_to_csv
from gateway.runtime import Runtime
from gateway.server import ServerThread
from tests.support.events import raw_events
from tests.support.runtime import PASSWORD, make_runtime

GATEWAY = Path(sys.executable).with_name("gateway")


def make_events(count: int, types: tuple[str, ...] = ("OPEN", "CLICK"), prefix: str = "e") -> list[model.Event]:
    """``count`` validated events, alternating between ``types``, a second apart, with text the CSV must quote."""
    return model.validate_all(raw_events(count, types, prefix, message_name='Spring, "sale"', data={"n": 1}))


def store(runtime: Runtime, account_id: int, events: list[model.Event], chunk: int = 10_000) -> None:
    for start in range(0, len(events), chunk):
        with runtime.sessions.begin() as session:
            store_events(session, account_id, events[start:start + chunk])


def waiting(runtime: Runtime, account_id: int) -> list[str]:
    """Ids of the events that a puller could take now (a peek, which changes nothing)."""
    return pull.get_batch(runtime.sessions, account_id, [], MAX_BATCH_EVENTS, "peek",
                          lambda batch: [event["id"] for event in batch.events])


def gateway_pull(url: str, out: Path, *options: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GATEWAY), "pull", "--url", url, "--account", "acme", "--out", str(out), *options],
                          env={**os.environ, "EVENTGW_PASSWORD": password}, capture_output=True, text=True,
                          timeout=120)


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def test_gateway_pull_drains_the_queue_into_a_csv(runtime: Runtime, account: NewAccount, live_server: ServerThread,
                                                  tmp_path: Path) -> None:
    wanted = make_events(25_000)
    store(runtime, account.id, wanted + make_events(10, ("BOUNCE",), "b"))
    out = tmp_path / "events.csv"
    started = time.perf_counter()
    done = gateway_pull(live_server.url, out, "--types", "OPEN,CLICK", "--max", "10000")
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "25000 events in 3 batches" in done.stdout
    header, rows = read_csv(out)
    assert header == list(formats.CSV_COLUMNS)
    assert Counter(row[0] for row in rows) == Counter(event["id"] for event in wanted)
    assert rows[0] == formats.to_csv_row(wanted[0])
    assert sorted(waiting(runtime, account.id)) == [f"b-{i}" for i in range(10)]
    assert elapsed < 30


def test_gateway_pull_peek_changes_nothing(runtime: Runtime, account: NewAccount, live_server: ServerThread,
                                           tmp_path: Path) -> None:
    store(runtime, account.id, make_events(30))
    done = gateway_pull(live_server.url, tmp_path / "peek.csv", "--peek", "--max", "10")
    assert done.returncode == 0, done.stderr
    _, rows = read_csv(tmp_path / "peek.csv")
    assert [row[0] for row in rows] == [f"e-{i}" for i in range(10)]
    assert len(waiting(runtime, account.id)) == 30


@pytest.mark.parametrize(("options", "password", "expected"), [
    ((), "wrong-password", "wrong account name or password"),
    (("--max", "0"), PASSWORD, "field 'max': must be between 1 and 10000 (got 0)"),
    (("--types", "OPEN,NOPE"), PASSWORD, "unknown event type 'NOPE'"),
])
def test_gateway_pull_reports_errors_clearly(runtime: Runtime, account: NewAccount, live_server: ServerThread,
                                             tmp_path: Path, options: tuple[str, ...], password: str,
                                             expected: str) -> None:
    store(runtime, account.id, make_events(3))
    done = gateway_pull(live_server.url, tmp_path / "x.csv", *options, password=password)
    assert done.returncode == 1
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert len(waiting(runtime, account.id)) == 3


class CrashingClient(EventsClient):
    """A client that dies after writing its second batch and before acknowledging it."""

    acknowledged = 0

    def acknowledge(self, session_id: str, batch_id: str) -> int:
        if self.acknowledged == 1:
            raise KeyboardInterrupt
        self.acknowledged += 1
        return super().acknowledge(session_id, batch_id)


def test_a_crashed_pull_loses_nothing(store_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(store_url, tmp_path, pull_lease_seconds=1)
    server = ServerThread(runtime)
    try:
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
        events = make_events(25)
        store(runtime, account.id, events)
        out = tmp_path / "events.csv"
        with CrashingClient(server.url) as client, pytest.raises(KeyboardInterrupt):
            pull_to_csv(client, "acme", PASSWORD, [], out, limit=10)
        time.sleep(1.2)
        with EventsClient(server.url) as client:
            summary = pull_to_csv(client, "acme", PASSWORD, [], out, limit=10)
        assert (summary.batches, summary.events) == (2, 15)
        header, rows = read_csv(out)
        assert header == list(formats.CSV_COLUMNS)
        ids = Counter(row[0] for row in rows)
        assert set(ids) == {event["id"] for event in events}
        assert [name for name, seen in ids.items() if seen > 1] == [f"e-{i}" for i in range(10, 20)]
        assert waiting(runtime, account.id) == []
    finally:
        server.close()
        runtime.close()


def test_concurrent_pullers_get_every_event_exactly_once(runtime: Runtime, account: NewAccount) -> None:
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers; concurrent pullers are a PostgreSQL concern")
    events = make_events(100_000, ("OPEN",))
    store(runtime, account.id, events)
    received: list[list[str]] = []
    failures: list[Exception] = []

    def puller() -> None:
        mine: list[str] = []
        try:
            while batch := pull.get_batch(runtime.sessions, account.id, ["OPEN"], MAX_BATCH_EVENTS, "read",
                                          lambda b: [event["id"] for event in b.events]):
                mine.extend(batch)
        except Exception as exc:
            failures.append(exc)
        received.append(mine)

    threads = [threading.Thread(target=puller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    everything: Counter[str] = Counter(name for mine in received for name in mine)
    assert len(everything) == 100_000 and set(everything.values()) == {1}
    assert sum(1 for mine in received if mine) > 1, "the pullers did not run side by side"
