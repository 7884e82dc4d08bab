"""Pull benchmark: getBatch of 10,000 with mark-as-read on the legacy and typed endpoints, against baselines.

Run: `.venv/bin/python -m bench.pull [--events 100000] [--rounds 5]`.
For each endpoint it prints the median server-side time (the pull core plus rendering the
response, in this process) and end-to-end time (a real client over HTTP to a `gateway serve`
process on the same store), and a baseline measured in the same run: plain sqlite3
selecting and marking the same 10,000 rows, plus building the same CSV/base64 (legacy) or
the same XML with lxml (typed). Then `gateway pull` draining 100,000 events in batches of
10,000, and the memory one 10,000 batch adds.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import io
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import requests
from lxml import etree

from bench.eventgen import generate
from gateway import pull
from gateway.accounts import create_account
from gateway.config import load_settings
from gateway.events import model
from gateway.ingest import ingest_request
from gateway.pull_client import EventsClient
from gateway.runtime import Runtime, open_runtime
from gateway.soap import legacy, typed
from tests.support.net import free_port

BATCH = 10_000
PASSWORD = "bench-password"
ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns1="urn:localhost-paint"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:ns2="http://xml.apache.org/xml-soap" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"
 SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><SOAP-ENV:Body><ns1:handleRequest>
<contextId xsi:type="xsd:string">{context}</contextId>
<className xsi:type="xsd:string">{facade}</className><processName xsi:type="xsd:string">{process}</processName>
<entityData xsi:type="ns2:Map">{entity}</entityData><processData xsi:type="ns2:Map">{process_data}</processData>
</ns1:handleRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"""


def _item(key: str, value: object) -> str:
    kind = "xsd:int" if isinstance(value, int) else "xsd:string"
    return f'<item><key xsi:type="xsd:string">{key}</key><value xsi:type="{kind}">{value}</value></item>'


def wait_until_up(base_url: str) -> None:
    """Wait for a starting `gateway serve` to answer."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            requests.get(base_url + "/paint/ctrlPaint.wsdl", timeout=5)
            return
        time.sleep(0.1)
    raise RuntimeError(f"gateway serve did not answer at {base_url}")


def setup(directory: Path, events: int) -> tuple[Runtime, int]:
    """A fresh SQLite store holding ``events`` events of one account, all in its pull queue."""
    runtime = open_runtime(load_settings(environ={}, home=str(directory)))
    with runtime.sessions.begin() as session:
        account = create_account(session, "bench", PASSWORD)
    raws = list(generate(events, seed=5))
    for start in range(0, events, 5000):
        ingest_request(runtime.sessions, account.id, raws[start:start + 5000])
    return runtime, account.id


def unread(runtime: Runtime) -> None:
    """Put every event back in the queue (between rounds, outside the clock)."""
    with runtime.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE queue SET state = 'ready', lease_id = NULL, done_at = NULL")


def median_of(rounds: int, runtime: Runtime, work: Callable[[], object]) -> float:
    """Median seconds of ``work`` over ``rounds`` runs, each on a full queue."""
    times = []
    for _ in range(rounds):
        unread(runtime)
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _baseline_take(db: sqlite3.Connection) -> list[tuple]:
    rows = db.execute(
        "SELECT q.id, e.uid, e.type, e.occurred_at, e.email, e.phone, e.message_id, e.message_name, e.list_id, "
        "e.delivered_at, e.url, e.category, e.reason, e.error, e.source, e.data FROM queue q "
        "JOIN events e ON e.id = q.event_id WHERE q.destination_id = 1 AND q.state != 'done' "
        "ORDER BY q.id LIMIT ?", (BATCH,)).fetchall()
    db.execute("UPDATE queue SET state = 'done' WHERE id IN (SELECT id FROM queue WHERE destination_id = 1 "
               "AND state != 'done' ORDER BY id LIMIT ?)", (BATCH,))
    db.commit()
    return rows


# The legacy CSV's columns by type, written out by hand for the baseline: a field's
# text, a time field as Unix seconds ("unix"), a key of data ("data"), the recipient
# (email, else phone) or the message type (data's message_type, else SMS or EMAIL).
_POSITION = {name: index for index, name in enumerate(model.FIELD_NAMES, start=1)}
_DELIVERY = [("text", "type"), ("data", "profile"), ("kind", ""), ("text", "message_name"), ("text", "message_id"),
             ("text", "list_id"), ("data", "scheduled_at"), ("unix", "delivered_at")]
_BOUNCE = [("text", "type"), ("text", "email"), ("text", "message_name"), ("unix", "delivered_at"),
           ("unix", "occurred_at"), ("text", "reason"), ("text", "category")]
_OPT = [("text", "type"), ("text", "email"), ("text", "phone"), ("unix", "occurred_at"), ("text", "list_id"),
        ("text", "source")]
_SMS = [("text", "type"), ("text", "phone"), ("text", "message_name"), ("unix", "delivered_at"),
        ("unix", "occurred_at")]
_LEGACY_CELLS = {
    "DELIVERYSTART": _DELIVERY, "DELIVERY": [*_DELIVERY, ("unix", "occurred_at"), ("data", "emails_sent")],
    "OPEN": [("text", "type"), ("to", ""), ("text", "message_name"), ("unix", "delivered_at")],
    "CLICK": [("text", "type"), ("to", ""), ("text", "message_name"), ("unix", "delivered_at"), ("text", "url"),
              ("unix", "occurred_at")],
    "BOUNCE": _BOUNCE, "SOFTBOUNCE": _BOUNCE, "BLOCKED": _BOUNCE, "OPTIN": _OPT, "OPTOUT": _OPT,
    "SMSOPTOUT": _SMS, "SMSFAILED": [*_SMS, ("text", "error")],
    "COMPLAINT": [("text", "type"), ("text", "email"), ("text", "message_name"), ("unix", "delivered_at"),
                  ("unix", "occurred_at")],
}
_LEGACY_BY_POSITION = {etype: [(kind, _POSITION.get(name, name)) for kind, name in cells]
                       for etype, cells in _LEGACY_CELLS.items()}


def _legacy_row(row: tuple) -> list[str]:
    cells = []
    data = None
    for kind, where in _LEGACY_BY_POSITION[row[2]]:
        if kind == "text":
            cells.append(row[where] or "")
        elif kind == "unix":
            value = row[where]
            cells.append("" if value is None else str(int(datetime.fromisoformat(value + "+00:00").timestamp())))
        elif kind == "to":
            cells.append(row[_POSITION["email"]] or row[_POSITION["phone"]] or "")
        else:
            if data is None:
                data = json.loads(row[-1]) if row[-1] else {}
            if kind == "data":
                cells.append(str(data.get(where, "")))
            else:
                cells.append(str(data.get("message_type") or ("SMS" if row[_POSITION["phone"]] else "EMAIL")))
    return cells


def baseline_legacy(db: sqlite3.Connection) -> bytes:
    """Select and mark 10,000 rows, build the same CSV (the legacy columns of each type) and its base64."""
    rows = _baseline_take(db)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(map(_legacy_row, rows))
    return base64.b64encode(buffer.getvalue().encode())


def baseline_typed(db: sqlite3.Connection) -> bytes:
    """Select and mark 10,000 rows and write their fields as XML with lxml.

    Cheaper than the real answer (no envelope or namespaces, values as stored), so the
    typed ratio errs against the gateway.
    """
    rows = _baseline_take(db)
    names = model.FIELD_NAMES
    out = io.BytesIO()
    with etree.xmlfile(out, encoding="UTF-8") as xf, xf.element("events"):
        for row in rows:
            with xf.element("TypedEvent"):
                for name, value in zip(names, row[1:], strict=False):
                    if value is not None:
                        with xf.element(name):
                            xf.write(str(value))
    return out.getvalue()


def main() -> None:
    """Run every measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        runtime, account_id = setup(directory, args.events)
        db_path = runtime.engine.url.database
        db = sqlite3.connect(db_path, timeout=30)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gateway"), "serve", "--port", str(port), "--no-dispatcher"],
            env={**os.environ, "EVENTGW_HOME": str(directory)}, stdout=subprocess.DEVNULL)
        stack.callback(server.wait)
        stack.callback(server.terminate)  # runs first, on any way out
        wait_until_up(base_url)

        def core(render: Callable[[pull.Batch], bytes]) -> Callable[[], object]:
            return lambda: pull.get_batch(runtime.sessions, account_id, [], BATCH, "read", render)

        unread(runtime)
        by_hand = baseline_legacy(db)
        unread(runtime)
        answer = etree.fromstring(pull.get_batch(runtime.sessions, account_id, [], BATCH, "peek",
                                                 lambda b: legacy.render_batch(b, "encoded")))
        assert answer.xpath("//item[key='eventData']/value/text()")[0].encode() == by_hand, "baselines differ"
        legacy_server = median_of(args.rounds, runtime, core(lambda b: legacy.render_batch(b, "encoded")))
        legacy_base = median_of(args.rounds, runtime, lambda: baseline_legacy(db))
        typed_server = median_of(args.rounds, runtime, core(typed.write_batch))
        typed_base = median_of(args.rounds, runtime, lambda: baseline_typed(db))

        http = requests.Session()
        login = http.post(base_url + "/paint", data=ENVELOPE.format(
            context="", facade="bus_facade_context", process="login",
            entity=_item("userName", "bench") + _item("password", PASSWORD), process_data=""))
        context = etree.fromstring(login.content).xpath("//item[key='beanId']/value/text()")[0]
        get_batch = ENVELOPE.format(context=context, facade="bus_facade_eventNotification", process="getBatch",
                                    entity="", process_data=_item("maxNotifications", BATCH)
                                    + _item("markAsReadInd", "Y"))
        legacy_e2e = median_of(args.rounds, runtime, lambda: http.post(base_url + "/paint", data=get_batch).content)
        with EventsClient(base_url) as client:
            session_id = client.login("bench", PASSWORD)
            typed_e2e = median_of(args.rounds, runtime,
                                  lambda: client.get_batch(session_id, [], BATCH, mark_as_read=True))

        print(f"legacy getBatch 10,000 (Y): server {legacy_server * 1000:7.1f} ms, end-to-end "
              f"{legacy_e2e * 1000:7.1f} ms; baseline {legacy_base * 1000:7.1f} ms -> server "
              f"{legacy_server / legacy_base:.2f}x, end-to-end {legacy_e2e / legacy_base:.2f}x (goal <= 2x)")
        print(f"typed  getBatch 10,000     : server {typed_server * 1000:7.1f} ms, end-to-end "
              f"{typed_e2e * 1000:7.1f} ms; baseline {typed_base * 1000:7.1f} ms -> server "
              f"{typed_server / typed_base:.2f}x, end-to-end {typed_e2e / typed_base:.2f}x (goal <= 3x)")

        unread(runtime)
        tracemalloc.start()
        pull.get_batch(runtime.sessions, account_id, [], BATCH, "read", typed.write_batch)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"memory one 10,000 batch adds (typed, traced peak): {peak / 2**20:.1f} MB (goal < 64 MB)")

        unread(runtime)
        gateway = str(Path(sys.executable).parent / "gateway")
        started = time.perf_counter()
        subprocess.run([gateway, "pull", "--url", base_url, "--account", "bench", "--max", str(BATCH),
                        "--out", str(directory / "drained.csv")], check=True, capture_output=True,
                       env={**os.environ, "EVENTGW_PASSWORD": PASSWORD})
        drained = time.perf_counter() - started
        with open(directory / "drained.csv") as handle:
            lines = sum(1 for _ in handle) - 1
        print(f"gateway pull drained {lines:,} events in batches of {BATCH:,}: {drained:.1f} s (goal < 10 s)")
        http.close()
        db.close()


if __name__ == "__main__":
    main()
