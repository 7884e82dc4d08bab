"""File destinations end to end: periods of stored events become complete files on real FTP, FTPS and SFTP servers."""
from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time as time_module
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from sqlalchemy import select, text, update

from gateway.accounts import NewAccount, create_account
from gateway.delivery import export
from gateway.delivery.export import Exporter
from gateway.destinations import management as admin
from gateway.destinations.file_names import NameFields
from gateway.destinations.files import FilePlan, Period
from gateway.errors import Conflict, DeliveryError, NotFound, ValidationError
from gateway.events import formats
from gateway.ingest import ingest_request
from gateway.notices import deactivation_message
from gateway.runtime import Runtime
from gateway.store.models import Destination, FilePeriod, QueueItem, utcnow
from gateway.store.models import Event as EventRow
from tests.support.events import raw_event
from tests.support.ftp import FtpServer
from tests.support.net import free_port
from tests.support.openpgp import key_pair
from tests.support.runtime import LOOPBACK_NETWORKS, PASSWORD, make_runtime
from tests.support.sshd import SshdServer

UTC = timezone.utc
# Arrivals are placed on past days, so every period in a test has closed by the time it runs.
DAY1 = (utcnow() - timedelta(days=3)).date()
DAY2 = DAY1 + timedelta(days=1)


def at(day: date, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), UTC)


# Fields every exported event carries, with text that each line format must quote or escape.
FILLED_IN = {"occurred_at": "2026-11-20T10:15:00Z", "delivered_at": "2026-11-20T09:00:00.250000+01:00",
             "message_name": "Winter sale, part 1 & 2", "data": {"esp": "in-house", "tags": ["a", "b"], "score": 1.5}}


def arrive(runtime: Runtime, account_id: int, uids: list[str], when: datetime, etype: str = "OPEN",
           **fields: Any) -> None:
    """Store events as if they had arrived at ``when`` (their queue rows' due_at)."""
    raws = [raw_event(u, etype, **FILLED_IN, **fields) for u in uids]
    assert ingest_request(runtime.sessions, account_id, raws).accepted == len(uids)
    with runtime.sessions.begin() as session:
        session.execute(update(QueueItem).where(QueueItem.event_id.in_(
            select(EventRow.id).where(EventRow.account_id == account_id, EventRow.uid.in_(uids)))).values(due_at=when))


def ids_in(path: Path, line_format: str) -> list[str]:
    """The producer ids of the events in a file, in file order, read with nothing but the standard library."""
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
    if line_format == "csv":
        return [row["id"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    lines = text.splitlines()
    if line_format == "form":
        return [dict(parse_qsl(line, strict_parsing=True))["eventId"] for line in lines]
    return [json.loads(line)["id"] for line in lines]


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


EXTENSIONS = {"form": "log", "csv": "csv", "jsonl": "jsonl"}


def name(day: date, line_format: str = "form") -> str:
    """The default name of a daily file."""
    return f"events-{day:%Y%m%d}.{EXTENSIONS[line_format]}"


def attempt_log(runtime: Runtime, destination_id: int) -> list[dict[str, Any]]:
    """The destination's attempts, oldest first."""
    with runtime.sessions() as session:
        return admin.attempts(session, destination_id)[::-1]


def create(runtime: Runtime, account_id: int, **payload: Any) -> int:
    with runtime.sessions.begin() as session:
        return admin.create(session, account_id, {"events": ["OPEN", "CLICK"], **payload}).id


def change(runtime: Runtime, account_id: int, destination_id: int, **payload: Any) -> None:
    with runtime.sessions.begin() as session:
        admin.change(session, account_id, destination_id, payload)


def ftp_settings(server: FtpServer, **changes: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"kind": "ftp", "host": server.host, "port": server.port, "username": server.user,
                                "password": server.password, "timeout_seconds": 3, "empty_files": False}
    if server.ca_file:
        settings.update(protocol="ftps", ca_file=server.ca_file)
    return {**settings, **changes}


def sftp_settings(server: SshdServer, remote_dir: Path, auth: str = "key", **changes: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"kind": "sftp", "host": server.host, "port": server.port,
                                "username": server.username, "known_hosts": server.known_hosts,
                                "remote_dir": str(remote_dir), "timeout_seconds": 3, "empty_files": False}
    if auth == "key":
        settings["private_key"] = server.private_key
    else:
        settings["password"] = server.password
    return {**settings, **changes}


@pytest.fixture
def tuned(sqlite_url: str, tmp_path: Path) -> Iterator[Callable[..., tuple[Runtime, NewAccount]]]:
    """Open an SQLite store with some settings changed (retries due at once by default), with acme in it."""
    opened: list[Runtime] = []

    def open_(**settings: Any) -> tuple[Runtime, NewAccount]:
        opened.append(make_runtime(sqlite_url, tmp_path, retry_schedule="0", **settings))
        with opened[-1].sessions.begin() as session:
            return opened[-1], create_account(session, "acme", PASSWORD)

    yield open_
    for runtime in opened:
        runtime.close()


@pytest.fixture
def acme(runtime: Runtime, account: NewAccount) -> tuple[Runtime, NewAccount]:
    return runtime, account


# --- periods and file names


def test_daily_periods_start_at_the_cut_time() -> None:
    plan = FilePlan.from_settings({"at": "06:30"})
    assert plan.period_of(datetime(2026, 11, 20, 6, 29, tzinfo=UTC)) == Period(
        datetime(2026, 11, 19, 6, 30, tzinfo=UTC), datetime(2026, 11, 20, 6, 30, tzinfo=UTC))
    assert plan.period_of(datetime(2026, 11, 20, 6, 30, tzinfo=UTC)).start == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    assert plan.period_starting(date(2026, 11, 20)).start == datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
    assert plan.remote_name(plan.period_starting(date(2026, 11, 20))) == "events-20261120.log"
    assert export.lease_id(7, plan.period_starting(date(2026, 11, 20))) == "file:7:2026-11-20T06:30Z"


def test_hourly_periods_and_their_default_name() -> None:
    plan = FilePlan.from_settings({"period": "hourly", "gzip": True})
    period = plan.period_of(datetime(2026, 11, 20, 13, 59, 59, tzinfo=UTC))
    assert period == Period(datetime(2026, 11, 20, 13, tzinfo=UTC), datetime(2026, 11, 20, 14, tzinfo=UTC))
    assert plan.remote_name(period) == "events-20261120-13.log.gz"
    assert plan.period_starting(date(2026, 11, 20), 13) == period


@pytest.mark.parametrize(("settings", "field", "message"), [
    ({"period": "weekly"}, "period", "not one of daily, hourly"),
    ({"at": "25:00"}, "at", "not a UTC time of day"),
    ({"at": "6:30"}, "at", "not a UTC time of day"),
    ({"period": "hourly", "at": "00:00"}, "at", "daily periods only"),
    ({"line_format": "xml"}, "line_format", "not one of form, csv, jsonl"),
    ({"gzip": "yes"}, "gzip", "true or false"),
    ({"file_name": "events.log"}, "file_name", "add {start:%Y%m%d}"),
    ({"period": "hourly", "file_name": "events-%Y%m%d.log"}, "file_name", "add {start:%Y%m%d-%H}"),
    ({"file_name": "{account}_{when:%Y}.csv"}, "file_name", "{when} is not a field"),
    ({"file_name": "{start.year}_{start:%Y%m%d}"}, "file_name", "is not a field"),
    ({"file_name": "{start:%Y%m%d"}, "file_name", "not a valid template"),
    ({"file_name": "{sequence:%Y}{start:%Y%m%d}"}, "file_name", "does not fit its fields"),
    ({"zip": True, "gzip": True}, "zip", "not both"),
    ({"trigger": "flag"}, "trigger", "not one of done_file, manifest"),
    ({"empty_files": 1}, "empty_files", "true or false"),
    ({"file_name": "out/%Y%m%d.log"}, "file_name", "plain file name"),
    ({"file_name": ".%Y%m%d"}, "file_name", "plain file name"),
])
def test_bad_file_settings_name_the_field(settings: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        FilePlan.from_settings(settings)
    assert caught.value.problems[0].field == field


# --- complete files on every server, in every line format


def test_each_period_becomes_one_complete_file_per_format_on_ftp(acme: tuple[Runtime, NewAccount],
                                                                 ftp_server: FtpServer) -> None:
    runtime, account = acme
    for fmt in ("form", "csv", "jsonl"):
        (ftp_server.home / fmt).mkdir()
    made = {fmt: create(runtime, account.id, **ftp_settings(ftp_server, remote_dir=fmt, line_format=fmt))
            for fmt in ("form", "csv", "jsonl")}
    arrive(runtime, account.id, [f"a{i}" for i in range(30)], at(DAY1, 9))
    arrive(runtime, account.id, [f"c{i}" for i in range(5)], at(DAY1, 23, 59), "CLICK",
           url="https://shop.example.com/offer?a=1&b=2")
    arrive(runtime, account.id, [f"b{i}" for i in range(20)], at(DAY2, 0, 0))
    arrive(runtime, account.id, [f"x{i}" for i in range(3)], at(DAY2, 1), "BOUNCE")  # not routed here

    assert export.run_due(runtime) == 6

    for fmt in made:
        directory = ftp_server.home / fmt
        assert listing(directory) == [name(DAY1, fmt), name(DAY2, fmt)]
        assert ids_in(directory / name(DAY1, fmt), fmt) == [f"a{i}" for i in range(30)] + [f"c{i}" for i in range(5)]
        assert ids_in(directory / name(DAY2, fmt), fmt) == [f"b{i}" for i in range(20)]
    form_line = (ftp_server.home / "form" / name(DAY1)).read_text().splitlines()[30]
    assert dict(parse_qsl(form_line))["clickUrl"] == "https://shop.example.com/offer?a=1&b=2"
    assert (ftp_server.home / "csv" / name(DAY2, "csv")).read_text().startswith("id,type,occurred_at,email,")
    assert json.loads((ftp_server.home / "jsonl" / name(DAY2, "jsonl")).read_text().splitlines()[0]) == {
        "id": "b0", "type": "OPEN", "occurred_at": "2026-11-20T10:15:00Z", "email": "b0@example.com",
        "message_name": "Winter sale, part 1 & 2", "delivered_at": "2026-11-20T08:00:00.250000Z",
        "data": {"esp": "in-house", "tags": ["a", "b"], "score": 1.5}}
    assert dict(parse_qsl(form_line))["Event_date"] == "1795169700"
    assert "tags[]=a&tags[]=b" in unquote(form_line)
    log = attempt_log(runtime, made["csv"])
    assert [(a["message_id"], a["outcome"], a["events"]) for a in log] == [
        (f"file:{made['csv']}:{DAY1}T00:00Z", "delivered", 35), (f"file:{made['csv']}:{DAY2}T00:00Z", "delivered", 20)]
    assert f"35 events of {DAY1}T00:00:00Z..{DAY2}T00:00:00Z: uploaded" in log[0]["detail"]
    # Nothing is left to export, and nothing is exported twice.
    assert export.run_due(runtime) == 0
    with runtime.sessions() as session:
        assert session.scalar(select(QueueItem.id).where(QueueItem.destination_id.in_(made.values()),
                                                         QueueItem.state != "done").limit(1)) is None


@pytest.mark.parametrize("server", ["ftps", "sftp-password", "sftp-key"])
def test_ftps_and_sftp_files_are_complete_and_gzip_works(
    runtime: Runtime, account: NewAccount, server: str, request: pytest.FixtureRequest
) -> None:
    if server == "ftps":
        ftps: FtpServer = request.getfixturevalue("ftps_server")
        directory = ftps.home
        settings = ftp_settings(ftps, line_format="jsonl", gzip=True)
    else:
        sshd: SshdServer = request.getfixturevalue("sshd_server")
        if server == "sftp-password" and sshd.password is None:
            pytest.skip("password login needs the tests to run as root")
        directory = sshd.fresh_dir(f"{server}-{os.getpid()}-{runtime.engine.dialect.name}")
        settings = sftp_settings(sshd, directory, server.removeprefix("sftp-"), line_format="csv", gzip=True)
    destination = create(runtime, account.id, **settings)
    arrive(runtime, account.id, [f"a{i}" for i in range(40)], at(DAY1))
    arrive(runtime, account.id, [f"b{i}" for i in range(7)], at(DAY2, 23))

    assert export.run_due(runtime) == 2

    fmt = settings["line_format"]
    assert listing(directory) == [name(DAY1, fmt) + ".gz", name(DAY2, fmt) + ".gz"]
    assert ids_in(directory / (name(DAY1, fmt) + ".gz"), fmt) == [f"a{i}" for i in range(40)]
    assert ids_in(directory / (name(DAY2, fmt) + ".gz"), fmt) == [f"b{i}" for i in range(7)]
    assert [a["outcome"] for a in attempt_log(runtime, destination)] == ["delivered", "delivered"]


def test_hourly_files(acme: tuple[Runtime, NewAccount], ftp_server: FtpServer) -> None:
    runtime, account = acme
    create(runtime, account.id, **ftp_settings(ftp_server, period="hourly"))
    arrive(runtime, account.id, ["a"], at(DAY1, 9, 59))
    arrive(runtime, account.id, ["b", "c"], at(DAY1, 10, 0))
    arrive(runtime, account.id, ["d"], at(DAY1, 13, 30))

    assert export.run_due(runtime) == 3

    hour = f"events-{DAY1:%Y%m%d}"
    assert listing(ftp_server.home) == [f"{hour}-09.log", f"{hour}-10.log", f"{hour}-13.log"]
    assert ids_in(ftp_server.home / f"{hour}-10.log", "form") == ["b", "c"]


def test_reading_in_chunks_loses_nothing(tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "READ_CHUNK", 7)
    runtime, account = tuned()
    create(runtime, account.id, **ftp_settings(ftp_server, line_format="csv"))
    arrive(runtime, account.id, [f"e{i:03d}" for i in range(100)], at(DAY1))

    export.run_due(runtime)

    assert ids_in(ftp_server.home / name(DAY1, "csv"), "csv") == [f"e{i:03d}" for i in range(100)]


# --- late events and re-runs


def test_late_events_go_into_the_next_file_and_none_is_in_two(
    tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer
) -> None:
    runtime, account = tuned()
    create(runtime, account.id, **ftp_settings(ftp_server))
    arrive(runtime, account.id, ["early1", "early2"], at(DAY1, 12))
    assert export.run_due(runtime) == 1
    # A row of DAY1 whose transaction committed only after DAY1 was cut, and one that truly
    # arrived on DAY2 although it happened on DAY1: both go into DAY2's file.
    arrive(runtime, account.id, ["straggler"], at(DAY1, 23, 59))
    arrive(runtime, account.id, ["late"], at(DAY2, 8))
    arrive(runtime, account.id, ["next"], at(DAY2, 9))

    assert export.run_due(runtime) == 1

    assert listing(ftp_server.home) == [name(DAY1), name(DAY2)]
    assert ids_in(ftp_server.home / name(DAY1), "form") == ["early1", "early2"]
    assert ids_in(ftp_server.home / name(DAY2), "form") == ["straggler", "late", "next"]


def test_open_period_waits_until_it_ends(tuned: Callable[..., tuple[Runtime, NewAccount]],
                                         ftp_server: FtpServer) -> None:
    runtime, account = tuned()
    destination = create(runtime, account.id, **ftp_settings(ftp_server, period="hourly"))
    arrive(runtime, account.id, ["a"], at(DAY1, 10, 20))
    exporter = Exporter(runtime)
    now = at(DAY1, 10, 30)
    cut = at(DAY1, 11) + timedelta(seconds=export.CUT_GRACE_SECONDS)

    assert exporter.run_due(now) == 0
    assert listing(ftp_server.home) == []
    # Polling it costs one query: it looks again only when the hour has ended (and a few
    # seconds more), or after RECHECK_SECONDS for work other processes may have left behind.
    assert exporter.due_destinations(now + timedelta(seconds=60)) == []
    recheck = now + timedelta(seconds=export.RECHECK_SECONDS)
    assert exporter.due_destinations(recheck) == [destination]
    assert exporter.run_due(recheck) == 0
    assert exporter.run_due(cut - timedelta(seconds=1)) == 0  # cut only a few seconds after the end
    assert exporter.due_destinations(cut) == [destination]
    assert exporter.run_due(cut) == 1
    assert listing(ftp_server.home) == [f"events-{DAY1:%Y%m%d}-10.log"]


def test_export_date_regenerates_and_uploads_the_same_file_again(
    tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer
) -> None:
    runtime, account = tuned()
    destination = create(runtime, account.id, **ftp_settings(ftp_server, line_format="csv"))
    arrive(runtime, account.id, ["a", "b"], at(DAY1))
    arrive(runtime, account.id, ["c"], at(DAY2))
    export.run_due(runtime)
    first = (ftp_server.home / name(DAY1, "csv")).read_bytes()
    (ftp_server.home / name(DAY1, "csv")).unlink()

    receipt = export.export_period(runtime, destination, DAY1)

    assert (ftp_server.home / name(DAY1, "csv")).read_bytes() == first
    assert receipt.detail.startswith(f"2 events of {DAY1}T00:00:00Z..")
    assert ids_in(ftp_server.home / name(DAY2, "csv"), "csv") == ["c"]
    with pytest.raises(ValidationError, match="has not ended yet"):
        export.export_period(runtime, destination, utcnow().date())
    assert export.export_period(runtime, destination, DAY1 - timedelta(days=1)).detail.endswith(
        "holds no events; no file was uploaded")
    with pytest.raises(NotFound):
        export.export_period(runtime, destination, DAY1, account_id=account.id + 1)


def test_export_date_cuts_a_period_the_exporter_has_not_reached(
    tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer
) -> None:
    runtime, account = tuned()
    destination = create(runtime, account.id, **ftp_settings(ftp_server))
    arrive(runtime, account.id, ["a"], at(DAY1))
    arrive(runtime, account.id, ["b"], at(DAY2))

    export.export_period(runtime, destination, DAY2)

    assert listing(ftp_server.home) == [name(DAY2)]
    assert export.run_due(runtime) == 1  # DAY1 was cut on the way and is left to the exporter
    assert ids_in(ftp_server.home / name(DAY1), "form") == ["a"]
    assert ids_in(ftp_server.home / name(DAY2), "form") == ["b"]


def test_gateway_export_command(store_url: str, tmp_path: Path, ftp_server: FtpServer) -> None:
    runtime = make_runtime(store_url, tmp_path)
    try:
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
        destination = create(runtime, account.id, **ftp_settings(ftp_server))
        arrive(runtime, account.id, ["a", "b"], at(DAY1))
        export.run_due(runtime)
        (ftp_server.home / name(DAY1)).unlink()
    finally:
        runtime.close()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")},
           "EVENTGW_DATABASE_URL": store_url, "EVENTGW_HOME": str(tmp_path),
           "EVENTGW_OUTBOUND_ALLOW_NETWORKS": LOOPBACK_NETWORKS}
    script = str(Path(sys.executable).parent / "gateway")

    done = subprocess.run([script, "export", "--destination", str(destination), "--date", str(DAY1)], env=env,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"2 events of {DAY1}T00:00:00Z..")
    assert ids_in(ftp_server.home / name(DAY1), "form") == ["a", "b"]
    (ftp_server.home / name(DAY1)).unlink()
    by_start = subprocess.run([script, "export", "--destination", str(destination), "--start", f"{DAY1}T00:00"],
                              env=env, capture_output=True, text=True, timeout=60)
    assert by_start.returncode == 0 and by_start.stdout.startswith(f"2 events of {DAY1}T00:00:00Z.."), by_start.stderr
    assert ids_in(ftp_server.home / name(DAY1), "form") == ["a", "b"]
    empty = subprocess.run([script, "export", "--destination", str(destination), "--date", str(DAY2)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.startswith(f"the period {DAY2}T00:00:00Z..") and "holds no events" in empty.stdout
    future = subprocess.run([script, "export", "--destination", str(destination), "--date", str(utcnow().date())],
                            env=env, capture_output=True, text=True, timeout=60)
    assert future.returncode == 1 and future.stderr.startswith("Error: ") and "Traceback" not in future.stderr


# --- failures: a clear attempt log, then complete files


def _ftp_case(fault: str, server: FtpServer) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Settings that fail, settings that fix it, and the error expected in the attempt log."""
    good = ftp_settings(server)
    if fault == "down":
        return {**good, "port": free_port()}, {"port": server.port}, "could not connect to 127.0.0.1:"
    if fault == "wrong password":
        return {**good, "password": "wrong"}, {"password": server.password}, r"530 .*\(wrong user name or password\)"
    if fault == "read-only":
        return ({**good, "username": server.readonly_user, "password": server.readonly_password},
                {"username": server.user, "password": server.password}, r"550 .*read-only")
    return good, {}, ""


@pytest.mark.parametrize("fault", ["down", "wrong password", "read-only", "disk full", "dropped mid-upload"])
def test_ftp_failures_are_logged_and_the_next_run_uploads_complete_files(
    tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer, fault: str
) -> None:
    runtime, account = tuned()
    failing, fix, expected = _ftp_case(fault, ftp_server)
    if fault == "disk full":
        ftp_server.disk_full, expected = True, r"552 .*\(disk full or quota exceeded\)"
    if fault == "dropped mid-upload":
        ftp_server.drop_after, expected = 32 * 1024, "closed|reset|during upload of"
    destination = create(runtime, account.id, **{**failing, "line_format": "csv"})
    uids = [f"e{i:04d}" for i in range(600)]
    arrive(runtime, account.id, uids, at(DAY1))

    assert export.run_due(runtime) == 0

    failed = attempt_log(runtime, destination)
    assert [(a["outcome"], a["events"]) for a in failed] == [("failed", 600)]
    assert failed[0]["message_id"] == f"file:{destination}:{DAY1}T00:00Z"
    assert re.search(expected, failed[0]["detail"]), failed[0]["detail"]
    assert "next try in" in failed[0]["detail"]
    assert [p for p in listing(ftp_server.home) if not p.endswith(".part")] == []
    ftp_server.disk_full, ftp_server.drop_after = False, None
    if fix:
        change(runtime, account.id, destination, **fix)
    arrive(runtime, account.id, ["day2"], at(DAY2))

    assert export.run_due(runtime) == 2

    assert listing(ftp_server.home) == [name(DAY1, "csv"), name(DAY2, "csv")]
    assert ids_in(ftp_server.home / name(DAY1, "csv"), "csv") == uids
    assert ids_in(ftp_server.home / name(DAY2, "csv"), "csv") == ["day2"]
    log = attempt_log(runtime, destination)
    assert [(a["message_id"], a["outcome"]) for a in log[1:]] == [
        (failed[0]["message_id"], "delivered"), (f"file:{destination}:{DAY2}T00:00Z", "delivered")]


@pytest.mark.parametrize("fault", ["wrong password", "read-only", "changed host key", "down"])
def test_sftp_failures_are_logged_and_the_next_run_uploads_complete_files(
    tuned: Callable[..., tuple[Runtime, NewAccount]], sshd_server: SshdServer, fault: str
) -> None:
    runtime, account = tuned()
    directory = sshd_server.fresh_dir(f"fault-{fault.replace(' ', '-')}-{os.getpid()}")
    good = sftp_settings(sshd_server, directory, line_format="jsonl")
    closed = free_port()
    # The key line of the same server, for a port nothing listens on.
    moved = f"[{sshd_server.host}]:{closed} " + " ".join(sshd_server.known_hosts.split()[1:])
    failing, fix, expected = {
        "wrong password": ({**good, "private_key": None, "password": "wrong"},
                           {"private_key": sshd_server.private_key, "password": None}, "refused the SSH login as"),
        "read-only": ({**good, "remote_dir": str(sshd_server.readonly)}, {"remote_dir": str(directory)},
                      "permission denied"),
        "changed host key": ({**good, "known_hosts": sshd_server.other_known_hosts},
                             {"known_hosts": sshd_server.known_hosts}, "does not match known_hosts"),
        "down": ({**good, "port": closed, "known_hosts": moved},
                 {"port": sshd_server.port, "known_hosts": sshd_server.known_hosts},
                 f"could not connect to 127.0.0.1:{closed}"),
    }[fault]
    destination = create(runtime, account.id, **failing)
    uids = [f"e{i:03d}" for i in range(50)]
    arrive(runtime, account.id, uids, at(DAY1))

    assert export.run_due(runtime) == 0

    failed = attempt_log(runtime, destination)
    assert [a["outcome"] for a in failed][0] == "failed"
    assert expected in failed[0]["detail"], failed[0]["detail"]
    change(runtime, account.id, destination, **fix)
    if fault == "changed host key":
        # Not retryable: the destination is deactivated at once, until someone checks the key.
        assert [a["outcome"] for a in failed] == ["failed", "deactivated"]
        with runtime.sessions.begin() as session:
            admin.activate(session, session.get(Destination, destination), replay=True)

    assert export.run_due(runtime) == 1

    assert listing(directory) == [name(DAY1, "jsonl")]
    assert ids_in(directory / name(DAY1, "jsonl"), "jsonl") == uids


def test_a_destination_that_keeps_failing_is_deactivated_and_its_owner_told(
    tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer
) -> None:
    runtime, account = tuned(deactivate_after_failures=2)
    destination = create(runtime, account.id, **ftp_settings(ftp_server, password="wrong"))
    arrive(runtime, account.id, ["a"], at(DAY1))
    told: list[int] = []
    exporter = Exporter(runtime, told.append)

    assert exporter.run_due() == 0 and told == []
    assert exporter.run_due() == 0 and told == [destination]

    assert [a["outcome"] for a in attempt_log(runtime, destination)] == ["failed", "failed", "deactivated"]
    assert exporter.due_destinations() == []
    change(runtime, account.id, destination, password=ftp_server.password)
    with runtime.sessions.begin() as session:
        assert admin.activate(session, session.get(Destination, destination), replay=True)["queued"] == 1
    assert exporter.run_due() == 1
    assert ids_in(ftp_server.home / name(DAY1), "form") == ["a"]


def test_export_period_reports_a_failed_upload(tuned: Callable[..., tuple[Runtime, NewAccount]],
                                               ftp_server: FtpServer) -> None:
    runtime, account = tuned()
    destination = create(runtime, account.id, **ftp_settings(ftp_server))
    arrive(runtime, account.id, ["a"], at(DAY1))
    export.run_due(runtime)
    ftp_server.disk_full = True

    with pytest.raises(DeliveryError, match="552"):
        export.export_period(runtime, destination, DAY1)

    assert [a["outcome"] for a in attempt_log(runtime, destination)] == ["delivered", "failed"]
    assert Counter(ids_in(ftp_server.home / name(DAY1), "form")) == Counter(["a"])


# --- periods of their own: moving the cut time, flushing, names that are never reused


def moment(day: date, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), UTC)


def test_moving_at_twice_in_one_day_keeps_every_file_and_each_can_be_exported_again(
    acme: tuple[Runtime, NewAccount], ftp_server: FtpServer
) -> None:
    runtime, account = acme
    destination = create(runtime, account.id, **ftp_settings(ftp_server, at="20:22", line_format="csv"))
    exporter = Exporter(runtime)
    day0 = DAY1 - timedelta(days=1)
    arrive(runtime, account.id, ["a1", "a2"], moment(DAY1, 12, 0))
    assert exporter.run_due(moment(DAY1, 20, 22, 10)) == 1
    arrive(runtime, account.id, ["b"], moment(DAY1, 20, 22, 30))
    change(runtime, account.id, destination, at="20:23")  # first move: one minute later
    arrive(runtime, account.id, ["c"], moment(DAY1, 20, 22, 50))
    assert exporter.run_due(moment(DAY1, 20, 23, 10)) == 1
    arrive(runtime, account.id, ["d"], moment(DAY1, 20, 24))
    change(runtime, account.id, destination, at="06:00")  # second move, the same day
    assert exporter.run_due(moment(DAY2, 6, 0, 10)) == 1
    arrive(runtime, account.id, ["e"], moment(DAY2, 7, 0))
    assert exporter.run_due(moment(DAY2 + timedelta(days=1), 6, 0, 10)) == 1

    files = {
        f"events-{day0:%Y%m%d}.csv": ["a1", "a2"],  # [day0 20:22, DAY1 20:22)
        f"events-{DAY1:%Y%m%d}-2022.csv": ["b", "c"],  # [DAY1 20:22, DAY1 20:23): the day's second period
        f"events-{DAY1:%Y%m%d}-2023.csv": ["d"],  # [DAY1 20:23, DAY2 06:00)
        f"events-{DAY2:%Y%m%d}.csv": ["e"],  # [DAY2 06:00, DAY3 06:00): a whole period again
    }
    assert listing(ftp_server.home) == sorted(files)
    assert {n: ids_in(ftp_server.home / n, "csv") for n in files} == files
    first = {n: (ftp_server.home / n).read_bytes() for n in files}
    for path in ftp_server.home.iterdir():
        path.unlink()

    starts = [moment(day0, 20, 22), moment(DAY1, 20, 22), moment(DAY1, 20, 23), moment(DAY2, 6, 0)]
    for start in starts:
        export.export_period(runtime, destination, start=start)

    assert {n: (ftp_server.home / n).read_bytes() for n in files} == first
    with pytest.raises(ValidationError, match=r"2 periods start that day .*20:22:00Z.*20:23:00Z") as caught:
        export.export_period(runtime, destination, DAY1)
    assert caught.value.problems[0].field == "date"
    assert export.export_period(runtime, destination, DAY2).detail.startswith("1 events of")  # one period that day
    with pytest.raises(ValidationError, match="no period of destination"):
        export.export_period(runtime, destination, start=moment(DAY1, 20, 21))


def test_an_upload_that_would_replace_another_periods_file_is_refused(
    tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer
) -> None:
    runtime, account = tuned()
    # Weekday names tell consecutive days apart, but a week later the name comes round again.
    destination = create(runtime, account.id, **ftp_settings(ftp_server, file_name="events-{start:%a}.log"))
    arrive(runtime, account.id, ["old"], at(DAY1 - timedelta(days=7)))
    arrive(runtime, account.id, ["new"], at(DAY1))

    assert export.run_due(runtime) == 1

    weekday = f"events-{DAY1:%a}.log"
    assert listing(ftp_server.home) == [weekday]
    assert ids_in(ftp_server.home / weekday, "form") == ["old"]
    log = attempt_log(runtime, destination)
    assert [a["outcome"] for a in log] == ["delivered", "failed", "deactivated"]
    assert f"refused to upload the file of {DAY1}T00:00:00Z" in log[1]["detail"]
    assert "which it would replace" in log[1]["detail"]
    change(runtime, account.id, destination, file_name="events-{start:%Y%m%d}.log")
    with runtime.sessions.begin() as session:
        admin.activate(session, session.get(Destination, destination), replay=True)
    assert export.run_due(runtime) == 1
    assert ids_in(ftp_server.home / name(DAY1), "form") == ["new"]


def test_name_templates_fill_in_account_type_times_sequence_and_extension() -> None:
    plan = FilePlan.from_settings({"file_name": "{account}_{type}_{start:%Y%m%d%H%M}.{ext}", "line_format": "csv"})
    fields = NameFields(account="acme", destination=7, type="open-click", sequence=2)
    period = plan.period_starting(date(2026, 11, 27))
    assert plan.remote_name(period, fields) == "acme_open-click_202611270000.csv"
    # The minute is in the template, so a short period needs nothing added.
    assert plan.remote_name(Period(period.start, period.start + timedelta(minutes=5)), fields) == \
        "acme_open-click_202611270000.csv"
    zipped = FilePlan.from_settings({"file_name": "d{destination}-{end:%Y%m%d}-{sequence:02d}.{ext}", "zip": True,
                                     "line_format": "jsonl"})
    assert zipped.remote_name(period, fields) == "d7-20261128-02.jsonl.zip"
    legacy = FilePlan.from_settings({"file_name": "out-%Y%m%d.txt", "gzip": True})
    assert legacy.file_name == "out-{start:%Y%m%d}.txt"
    assert legacy.remote_name(period) == "out-20261127.txt.gz"
    assert legacy.remote_name(Period(period.start + timedelta(seconds=90), period.end)) == "out-20261127-000130.txt.gz"
    assert FilePlan.from_settings({"line_format": "jsonl"}).remote_name(period) == "events-20261127.jsonl"


def test_an_empty_day_is_an_empty_file_with_a_manifest_on_ftps(runtime: Runtime, account: NewAccount,
                                                                  ftps_server: FtpServer) -> None:
    destination = create(runtime, account.id, **ftp_settings(ftps_server, line_format="csv", trigger="manifest",
                                                             empty_files=True))
    arrive(runtime, account.id, ["a"], at(DAY1))
    last = utcnow().date() - timedelta(days=1)

    assert export.run_due(runtime) == 3  # DAY1, DAY2 and yesterday, the last two without events

    days = [DAY1, DAY2, last]
    home = ftps_server.home
    assert listing(home) == sorted([name(d, "csv") for d in days] + [name(d, "csv") + ".manifest.json" for d in days])
    assert ids_in(home / name(DAY1, "csv"), "csv") == ["a"]
    assert (home / name(DAY2, "csv")).read_text().strip() == ",".join(
        next(csv.reader(io.StringIO((home / name(DAY1, "csv")).read_text()))))  # the header alone
    for day, rows in zip(days, [1, 0, 0], strict=True):
        manifest = json.loads((home / (name(day, "csv") + ".manifest.json")).read_text())
        data = (home / name(day, "csv")).read_bytes()
        assert manifest == {"file": name(day, "csv"), "rows": rows, "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(), "period_start": f"{day}T00:00:00Z",
                            "period_end": f"{day + timedelta(days=1)}T00:00:00Z", "sequence": 1}
    log = attempt_log(runtime, destination)
    assert "no events (an empty file)" in log[1]["detail"] and log[1]["detail"].endswith(".manifest.json")
    receipt = export.export_period(runtime, destination, DAY2)
    assert receipt.detail.startswith(f"no events (an empty file) of {DAY2}T00:00:00Z")


def test_hourly_destinations_upload_no_empty_files_and_a_done_file_follows(
    tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer
) -> None:
    runtime, account = tuned()
    settings = ftp_settings(ftp_server, period="hourly", trigger="done_file")
    del settings["empty_files"]  # the default: none for hourly periods
    create(runtime, account.id, **settings)
    arrive(runtime, account.id, ["a"], at(DAY1, 9))
    arrive(runtime, account.id, ["b"], at(DAY1, 12))

    assert export.run_due(runtime) == 2

    hour = f"events-{DAY1:%Y%m%d}"
    assert listing(ftp_server.home) == [f"{hour}-09.log", f"{hour}-09.log.done", f"{hour}-12.log",
                                        f"{hour}-12.log.done"]
    assert (ftp_server.home / f"{hour}-12.log.done").read_bytes() == b""


def test_flush_closes_the_current_period_now_and_the_next_starts_there(
    tuned: Callable[..., tuple[Runtime, NewAccount]], ftp_server: FtpServer
) -> None:
    runtime, account = tuned()
    destination = create(runtime, account.id, **ftp_settings(ftp_server, line_format="jsonl", empty_files=True))
    today = utcnow().date()
    arrive(runtime, account.id, ["y"], at(today - timedelta(days=1)))  # yesterday: a closed period
    arrive(runtime, account.id, ["a"], utcnow() - timedelta(seconds=5))

    flushed = export.flush_period(runtime, destination)

    assert flushed.detail.startswith(f"1 events of {today}T00:00:00Z..")
    mine = f"events-{today:%Y%m%d}-0000.jsonl"  # not a whole day: its name says which period of the day
    assert listing(ftp_server.home) == [mine]
    assert ids_in(ftp_server.home / mine, "jsonl") == ["a"]
    assert export.run_due(runtime) == 1  # yesterday keeps its own file
    assert ids_in(ftp_server.home / name(today - timedelta(days=1), "jsonl"), "jsonl") == ["y"]
    with runtime.sessions() as session:
        boundary = session.scalar(select(FilePeriod.ends_at).where(FilePeriod.destination_id == destination)
                                  .order_by(FilePeriod.ends_at.desc()).limit(1))
    assert boundary is not None
    with pytest.raises(Conflict, match="nothing to flush yet"):
        export.flush_period(runtime, destination, now=boundary)
    arrive(runtime, account.id, ["b"], boundary + timedelta(microseconds=1))
    second = export.flush_period(runtime, destination, now=boundary + timedelta(seconds=2))
    assert second.detail.startswith(f"1 events of {formats.iso(boundary)}..")
    after = f"events-{today:%Y%m%d}-{boundary:%H%M%S}.jsonl" if boundary.second else \
        f"events-{today:%Y%m%d}-{boundary:%H%M}.jsonl"
    assert ids_in(ftp_server.home / after, "jsonl") == ["b"]


@pytest.mark.parametrize("key_form", ["armored", "binary"])
def test_pgp_files_on_sftp_decrypt_with_the_consumers_private_key(
    runtime: Runtime, account: NewAccount, sshd_server: SshdServer, tmp_path: Path, key_form: str
) -> None:
    gpg, fingerprint = key_pair(tmp_path / "consumer")
    key = gpg.export_keys(fingerprint) if key_form == "armored" else \
        base64.b64encode(gpg.export_keys(fingerprint, armor=False)).decode()
    directory = sshd_server.fresh_dir(f"pgp-{key_form}-{os.getpid()}-{runtime.engine.dialect.name}")
    destination = create(runtime, account.id, **sftp_settings(
        sshd_server, directory, line_format="csv", zip=True, pgp_public_key=key, events=["CLICK", "OPEN"],
        file_name="{account}_{type}_{start:%Y%m%d%H%M}.{ext}"))
    arrive(runtime, account.id, [f"e{i}" for i in range(25)], at(DAY1))

    assert export.run_due(runtime) == 1

    inner = f"acme_open-click_{DAY1:%Y%m%d}0000.csv"  # the types in the event model's order
    encrypted = directory / (inner + ".zip.gpg")
    assert listing(directory) == [encrypted.name]
    assert b"e1" not in encrypted.read_bytes()
    plain = gpg.decrypt(encrypted.read_bytes())
    assert plain.ok, plain.status
    with zipfile.ZipFile(io.BytesIO(plain.data)) as archive:
        assert archive.namelist() == [inner]  # one file per period inside
        text = archive.read(inner).decode()
    assert [row["id"] for row in csv.DictReader(io.StringIO(text))] == [f"e{i}" for i in range(25)]
    with runtime.sessions() as session:
        shown = admin.view(session, session.get(Destination, destination))
    assert shown["pgp_fingerprint"] == fingerprint and "pgp_public_key" not in shown


def test_wrong_and_expired_pgp_keys_are_refused_when_the_destination_is_created(
    runtime: Runtime, account: NewAccount, ftp_server: FtpServer, tmp_path: Path
) -> None:
    gpg, fingerprint = key_pair(tmp_path / "expired", expire="seconds=1")
    expired = gpg.export_keys(fingerprint)
    private = gpg.export_keys(fingerprint, secret=True, expect_passphrase=False)
    time_module.sleep(1.5)
    for key, message in [(expired, "has expired"), ("not a key at all!", "neither an armored"),
                         (base64.b64encode(b"\x99\x00\x01junk").decode(), "holds no OpenPGP public key"),
                         (private, "private key")]:
        with pytest.raises(ValidationError, match=message) as caught:
            create(runtime, account.id, **ftp_settings(ftp_server, pgp_public_key=key))
        assert caught.value.problems[0].field == "pgp_public_key"


def test_an_event_no_line_can_be_made_of_is_parked_alone(tuned: Callable[..., tuple[Runtime, NewAccount]],
                                                         ftp_server: FtpServer) -> None:
    runtime, account = tuned()
    destination = create(runtime, account.id, **ftp_settings(ftp_server, line_format="jsonl"))
    arrive(runtime, account.id, ["a", "poison", "b"], at(DAY1))
    with runtime.sessions.begin() as session:  # nested too deep to be written, as an older version could store it
        session.execute(text("UPDATE events SET data = :data WHERE uid = 'poison'"),
                        {"data": '{"n": ' + "[" * 300 + "]" * 300 + "}"})

    assert export.run_due(runtime) == 1

    assert ids_in(ftp_server.home / name(DAY1, "jsonl"), "jsonl") == ["a", "b"]
    log = attempt_log(runtime, destination)
    assert [a["outcome"] for a in log] == ["parked", "delivered"]
    assert "'poison' parked" in log[0]["detail"]


def test_the_notice_of_a_single_refusal_says_what_was_refused() -> None:
    destination = Destination(id=3, kind="sftp", name="sftp://acme@files.example.com:22/in/events-{start:%Y%m%d}.csv")
    reason = "host key of files.example.com:22 does not match known_hosts"

    refused = deactivation_message(destination, reason, refused=True)
    repeated = deactivation_message(destination, "could not connect", refused=False)

    assert refused.startswith("destination #3 (sftp sftp://acme@files.example.com:22/in/events-{start:%Y%m%d}.csv) "
                              "was deactivated because a delivery was refused and trying again cannot change that: "
                              "host key of files.example.com:22 does not match known_hosts.")
    assert "repeated failures" not in refused
    assert "was deactivated after repeated failures: could not connect." in repeated
