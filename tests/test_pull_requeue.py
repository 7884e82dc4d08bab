"""Putting back what a legacy client collected (gateway.pull.requeue_collected), over REST and the CLI, on both
databases.

A legacy client drains its queue with markAsReadInd=Y over /paint, the operator puts the window
back, and the client drains the same events again, once.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.eventgen import generate
from gateway.accounts import NewAccount
from gateway.events import formats, model
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from gateway.server import ServerThread
from gateway.store.models import utcnow
from tests.support.legacy_client import LegacyClient
from tests.support.runtime import PASSWORD

REQUEUE = "/api/v1/pull/requeue"


@pytest.fixture
def stored(runtime: Runtime, account: NewAccount) -> list[list[str]]:
    """120 events of acme, as legacy CSV rows in arrival order."""
    raws = list(generate(120, seed=7))
    assert ingest_request(runtime.sessions, account.id, raws).accepted == 120
    return [formats.to_legacy_row(event) for event in model.validate_all(raws)]


@pytest.fixture
def client(live_server: ServerThread, account: NewAccount) -> Iterator[LegacyClient]:
    """acme's legacy session."""
    legacy = LegacyClient(live_server.url, "acme", PASSWORD)
    yield legacy
    legacy.close()


def requeue(server: ServerThread, body: Any, auth: tuple[str, str] | None = ("acme", PASSWORD)) -> requests.Response:
    return requests.post(server.url + REQUEUE, json=body, auth=auth, timeout=30)


def drained_window(client: LegacyClient) -> tuple[list[list[str]], datetime, datetime]:
    """Drain with Y in batches of 50; the rows and a window around the drain."""
    since = utcnow()
    rows = client.drain(size=50)
    return rows, since, utcnow() + timedelta(milliseconds=1)


def test_requeue_over_rest_gives_the_same_events_back_once(live_server: ServerThread, client: LegacyClient,
                                                           stored: list[list[str]]) -> None:
    rows, since, until = drained_window(client)
    assert rows == stored
    assert client.get_batch() == []

    response = requeue(live_server, {"since": formats.iso(since), "until": formats.iso(until)})

    assert response.status_code == 200, response.text
    assert response.json() == {"requeued": len(stored)}
    assert client.drain(size=50) == stored
    assert client.get_batch() == []
    # Collected again since: the window is empty now.
    assert requeue(live_server, {"since": formats.iso(since), "until": formats.iso(until)}).json() == {"requeued": 0}


def test_requeue_only_some_types_until_now(live_server: ServerThread, client: LegacyClient,
                                           stored: list[list[str]]) -> None:
    rows, since, _ = drained_window(client)
    assert rows == stored

    response = requeue(live_server, {"since": formats.iso(since), "types": ["open", "Click"]})

    wanted = [row for row in stored if row[0] in ("OPEN", "CLICK")]
    assert response.json() == {"requeued": len(wanted)}
    assert client.drain() == wanted


def test_only_what_was_collected_in_the_window_comes_back(live_server: ServerThread, client: LegacyClient,
                                                          stored: list[list[str]]) -> None:
    first = client.get_batch(size=30, mark="Y")
    between = utcnow() + timedelta(milliseconds=1)
    rest = client.drain()
    assert first + rest == stored

    response = requeue(live_server, {"since": formats.iso(between - timedelta(minutes=1)),
                                     "until": formats.iso(between)})

    assert response.json() == {"requeued": 30}
    assert client.drain() == first


def problems_of(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    return {problem["field"]: problem["message"] for problem in response.json()["problems"]}


def test_bad_requests_name_the_field(live_server: ServerThread, client: LegacyClient,
                                     stored: list[list[str]]) -> None:
    now = utcnow()
    recent = formats.iso(now - timedelta(hours=1))

    too_old = problems_of(requeue(live_server, {"since": formats.iso(now - timedelta(days=6))}))
    assert "recovery window" in too_old["since"] and "5 days" in too_old["since"]
    assert set(problems_of(requeue(live_server, {"since": recent, "markAsReadInd": "Y", "type": "OPEN"}))) == {
        "markAsReadInd", "type"}
    assert set(problems_of(requeue(live_server, {"until": recent}))) == {"since"}
    assert set(problems_of(requeue(live_server, {"since": recent, "until": formats.iso(now - timedelta(hours=2))}))) \
        == {"since"}
    assert set(problems_of(requeue(live_server, {"since": "yesterday"}))) == {"since"}
    assert set(problems_of(requeue(live_server, {"since": recent, "types": ["NOPE"]}))) == {"types"}
    assert set(problems_of(requeue(live_server, ["since"]))) == {"body"}
    assert requeue(live_server, {"since": recent}, auth=None).status_code == 401
    # Nothing was put back by any of them.
    assert client.drain() == stored


def gateway(store_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "gateway"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")},
           "EVENTGW_DATABASE_URL": store_url, "EVENTGW_HOME": str(tmp_path / "var")}
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_requeue_from_the_command_line(live_server: ServerThread, client: LegacyClient, stored: list[list[str]],
                                       store_url: str, tmp_path: Path) -> None:
    rows, since, until = drained_window(client)
    assert rows == stored

    done = gateway(store_url, tmp_path, "requeue", "--account", "acme", "--since", formats.iso(since),
                   "--until", formats.iso(until), "--types", "OPEN,CLICK")

    wanted = [row for row in stored if row[0] in ("OPEN", "CLICK")]
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{len(wanted)} events put back into the pull queue of acme\n"
    assert client.drain() == wanted

    old = gateway(store_url, tmp_path, "requeue", "--account", "acme", "--since",
                  formats.iso(utcnow() - timedelta(days=30)))
    assert old.returncode == 1
    assert old.stderr.startswith("Error: --since: is before the recovery window") and old.stderr.count("\n") == 1
    unknown = gateway(store_url, tmp_path, "requeue", "--account", "nobody", "--since", formats.iso(since))
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1, unknown.stderr
    assert client.get_batch() == []
