"""Managing email and file destinations over REST and the CLI: validation, secrets, tests, routes and isolation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from gateway.accounts import NewAccount, create_account
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.store.models import Account, Destination, QueueItem, utcnow
from tests.support.events import ingest, raw_event
from tests.support.ftp import FtpServer
from tests.support.openpgp import key_pair
from tests.support.runtime import LOOPBACK_NETWORKS, PASSWORD, make_runtime
from tests.support.smtp import SmtpServer
from tests.support.sshd import SshdServer


class Answer:
    """What the API answered, read the way requests reads it."""

    def __init__(self, response: TestResponse) -> None:
        self.status_code = response.status_code
        self.text = response.get_data(as_text=True)

    def json(self) -> Any:
        return json.loads(self.text)


class Api:
    """REST calls to the whole WSGI application as one account (Bearer API key)."""

    def __init__(self, runtime: Runtime, api_key: str) -> None:
        self.client = create_app(runtime).test_client()
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Answer:
        return Answer(self.client.open(f"/api/v1{path}", method=method, json=body, query_string=params,
                                       headers=self.headers))


@pytest.fixture
def api(runtime: Runtime, account: NewAccount) -> Api:
    return Api(runtime, account.api_key)


@pytest.fixture
def other_api(runtime: Runtime, other_account: NewAccount) -> Api:
    return Api(runtime, other_account.api_key)


@pytest.fixture
def sqlite_api(sqlite_url: str, tmp_path: Path) -> Iterator[Api]:
    """The API on SQLite only, for checks that do not depend on the database."""
    runtime = make_runtime(sqlite_url, tmp_path)
    with runtime.sessions.begin() as session:
        created = create_account(session, "acme", PASSWORD)
    yield Api(runtime, created.api_key)
    runtime.close()


def sftp_body(server: SshdServer, remote_dir: Path, **changes: Any) -> dict[str, Any]:
    return {"kind": "sftp", "events": ["OPEN", "CLICK"], "host": server.host, "port": server.port,
            "username": server.username, "private_key": server.private_key, "known_hosts": server.known_hosts,
            "remote_dir": str(remote_dir), "timeout_seconds": 3, **changes}


def ftp_body(server: FtpServer, **changes: Any) -> dict[str, Any]:
    return {"kind": "ftp", "events": ["OPEN"], "host": server.host, "port": server.port, "username": server.user,
            "password": server.password, "timeout_seconds": 3, **changes}


def routed(api: Api, event_type: str) -> list[tuple[str, int]]:
    answer = api.call("GET", "/routes")
    assert answer.status_code == 200
    return [(d["kind"], d["id"]) for d in answer.json()["routes"][event_type]]


def test_create_show_change_test_and_delete_an_sftp_destination(
    runtime: Runtime, account: NewAccount, api: Api, sshd_server: SshdServer
) -> None:
    directory = sshd_server.fresh_dir(f"api-{os.getpid()}-{runtime.engine.dialect.name}")
    body = sftp_body(sshd_server, directory, line_format="csv", gzip=True, at="06:00",
                     private_key_passphrase=None)
    if sshd_server.password:
        body["password"] = sshd_server.password

    created = api.call("POST", "/destinations", body)

    assert created.status_code == 201, created.text
    shown = created.json()
    ident = shown["id"]
    assert {k: shown[k] for k in ("kind", "events", "protocol", "host", "port", "username", "remote_dir", "period",
                                  "at", "file_name", "line_format", "gzip", "has_private_key", "active")} == {
        "kind": "sftp", "events": ["OPEN", "CLICK"], "protocol": "sftp", "host": "127.0.0.1",
        "port": sshd_server.port, "username": sshd_server.username, "remote_dir": str(directory),
        "period": "daily", "at": "06:00", "file_name": "events-{start:%Y%m%d}.{ext}", "line_format": "csv",
        "gzip": True, "has_private_key": True, "active": True}
    assert (shown["zip"], shown["empty_files"], shown["trigger"], shown["pgp_fingerprint"]) == (False, True, None, None)
    assert shown["name"] == f"sftp://{sshd_server.username}@127.0.0.1:{sshd_server.port}" \
                            f"{directory}/events-{{start:%Y%m%d}}.{{ext}}"
    assert shown["known_hosts"] == sshd_server.known_hosts
    assert routed(api, "OPEN") == [("sftp", ident)] and routed(api, "BOUNCE")[0][0] == "pull"
    for answer in (created, api.call("GET", f"/destinations/{ident}"), api.call("GET", "/destinations")):
        assert "PRIVATE KEY" not in answer.text and '"private_key"' not in answer.text
        assert not sshd_server.password or sshd_server.password not in answer.text
    assert [d["id"] for d in api.call("GET", "/destinations").json()["destinations"]] == [ident]
    assert api.call("GET", "/destinations", kind="email").json()["destinations"] == []

    changed = api.call("PUT", f"/destinations/{ident}", {"events": ["CLICK"], "line_format": "jsonl"})

    assert changed.status_code == 200, changed.text
    assert (changed.json()["events"], changed.json()["line_format"]) == (["CLICK"], "jsonl")
    assert routed(api, "OPEN")[0][0] == "pull"
    # The key was kept: the destination still logs in.
    tested = api.call("POST", f"/destinations/{ident}/test")
    assert tested.status_code == 200 and tested.json()["ok"] is True, tested.text
    assert "uploaded and removed" in tested.json()["detail"]
    assert list(directory.iterdir()) == []

    assert api.call("DELETE", f"/destinations/{ident}").status_code == 204
    assert api.call("GET", f"/destinations/{ident}").status_code == 404
    assert routed(api, "CLICK")[0][0] == "pull"


def test_test_of_a_failing_destination_says_why(runtime: Runtime, api: Api, ftp_server: FtpServer) -> None:
    ident = api.call("POST", "/destinations", ftp_body(ftp_server, password="wrong")).json()["id"]

    tested = api.call("POST", f"/destinations/{ident}/test")

    assert tested.status_code == 200
    assert tested.json()["ok"] is False and "530" in tested.json()["error"]
    refused = api.call("POST", "/destinations", ftp_body(ftp_server, password="wrong", test=True))
    assert refused.status_code == 400 and refused.json()["problems"][0]["field"] == "test"
    assert "530" in refused.json()["message"]
    assert len(api.call("GET", "/destinations").json()["destinations"]) == 1


def test_email_destination_test_sends_a_test_message(tmp_path: Path, sqlite_url: str,
                                                     smtp_server: SmtpServer) -> None:
    runtime = make_runtime(sqlite_url, tmp_path, smtp_host=smtp_server.host, smtp_port=smtp_server.port,
                           smtp_security="starttls", smtp_username=smtp_server.user,
                           smtp_password=smtp_server.password, smtp_ca_file=smtp_server.ca_file)
    try:
        with runtime.sessions.begin() as session:
            api = Api(runtime, create_account(session, "acme", PASSWORD).api_key)
        created = api.call("POST", "/destinations", {"kind": "email", "events": ["BOUNCE", "COMPLAINT"],
                                                     "recipients": "ops@example.com", "interval_seconds": 600,
                                                     "test": True})
        assert created.status_code == 201, created.text
        shown = created.json()
        assert (shown["recipients"], shown["interval_seconds"], shown["batch_max_events"]) == (
            ["ops@example.com"], 600, 10_000)
        assert shown["subject"] == "[eventgw] {count} events for {account}"

        tested = api.call("POST", f"/destinations/{shown['id']}/test")

        assert tested.json()["ok"] is True
        assert [m["Subject"] for m in smtp_server.messages] == ["[eventgw] 1 events for acme"] * 2
    finally:
        runtime.close()


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"kind": "fax"}, "kind", "not one of email, ftp, sftp"),
    ({"kind": "http"}, "kind", "/api/v1/webhooks"),
    ({"host": None}, "host", "is required"),
    ({"host": "ftp.example.com/in"}, "host", "not a host name"),
    ({"protocol": "sftp"}, "protocol", "SFTP destinations have kind sftp"),
    ({"protocol": "scp"}, "protocol", "not one of ftp, ftps"),
    ({"period": "weekly"}, "period", "not one of daily, hourly"),
    ({"at": "24:00"}, "at", "HH:MM"),
    ({"line_format": "xml"}, "line_format", "not one of form, csv, jsonl"),
    ({"gzip": "yes"}, "gzip", "true or false"),
    ({"file_name": "in/events-%Y%m%d.log"}, "file_name", "plain file name"),
    ({"file_name": "{account}_{kind}_{start:%Y%m%d}.csv"}, "file_name", "{kind} is not a field of file names"),
    ({"file_name": "events.{ext}"}, "file_name", "names every daily file alike"),
    ({"zip": True, "gzip": True}, "zip", "not both"),
    ({"trigger": "ok"}, "trigger", "not one of done_file, manifest"),
    ({"empty_files": "no"}, "empty_files", "true or false"),
    ({"pgp_public_key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnope\n"}, "pgp_public_key", "no OpenPGP public key"),
    ({"port": 70000}, "port", "from 1 to 65535"),
    ({"port": 22.5}, "port", "whole number"),
    ({"events": ["NOPE"]}, "events", "unknown event type"),
    ({"events": []}, "events", "non-empty list"),
    ({"hostname": "x"}, "hostname", "not a field of this request (its fields: kind, events, test, host,"),
    ({"ca_file": "/nonexistent/ca.pem"}, "ca_file", "not a file on the gateway"),
    ({"kind": "sftp", "known_hosts": None}, "known_hosts", "is required"),
    ({"kind": "sftp", "known_hosts": "not a known_hosts line"}, "known_hosts", "line 1 is not"),
    ({"kind": "sftp", "known_hosts": "other.example.com ssh-ed25519 "
      "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}, "known_hosts", "has no key for"),
    ({"kind": "sftp", "password": None}, "password", "a password or a private_key"),
    ({"kind": "sftp", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n"}, "private_key", "not an Ed25519"),
    ({"kind": "email", "recipients": ["not-an-address"]}, "recipients", "not an email address"),
    ({"kind": "email", "recipients": []}, "recipients", "list of 1 to 50"),
    ({"kind": "email", "recipients": ["a@example.com"], "subject": "{nope}"}, "subject", "{count} and {account}"),
    ({"kind": "email", "recipients": ["a@example.com"], "batch_max_events": 0}, "batch_max_events", "from 1"),
    ({"kind": "email", "recipients": ["a@example.com"], "batch_max_events": 2.5}, "batch_max_events", "whole number"),
])
def test_bad_input_is_a_400_naming_the_field(sqlite_api: Api, changes: dict[str, Any], field: str,
                                             message: str) -> None:
    api = sqlite_api
    body: dict[str, Any] = {"kind": "ftp", "events": ["OPEN"], "host": "ftp.example.com", "username": "u",
                            "password": "p", "known_hosts": "[ftp.example.com]:2222 ssh-ed25519 "
                            "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}
    if changes.get("kind") == "sftp":
        body["port"] = 2222
    if changes.get("kind") == "email":
        body = {"events": ["OPEN"]}
    body.update(changes)
    if body.get("kind") == "ftp":
        body.pop("known_hosts")
    body = {k: v for k, v in body.items() if v is not None}

    answer = api.call("POST", "/destinations", body)

    assert answer.status_code == 400, answer.text
    problem = answer.json()["problems"][0]
    assert problem["field"] == field and message in problem["message"], problem
    assert api.call("GET", "/destinations").json()["destinations"] == []


def test_a_bad_change_changes_nothing(sqlite_api: Api, ftp_server: FtpServer) -> None:
    api = sqlite_api
    ident = api.call("POST", "/destinations", ftp_body(ftp_server)).json()["id"]

    for body, field in (({"kind": "sftp"}, "kind"), ({"line_format": "xml"}, "line_format"),
                        ({"events": "OPEN"}, "events")):
        answer = api.call("PUT", f"/destinations/{ident}", body)
        assert answer.status_code == 400 and answer.json()["problems"][0]["field"] == field

    assert api.call("GET", f"/destinations/{ident}").json()["line_format"] == "form"
    assert api.call("POST", f"/destinations/{ident}/test").json()["ok"] is True


def test_accounts_never_see_each_others_destinations(runtime: Runtime, account: NewAccount, api: Api,
                                                     other_api: Api, ftp_server: FtpServer) -> None:
    ident = api.call("POST", "/destinations", ftp_body(ftp_server)).json()["id"]
    hook = api.call("POST", "/webhooks", {"url": "https://example.com/hook", "events": ["BOUNCE"]}).json()["id"]

    assert other_api.call("GET", "/destinations").json()["destinations"] == []
    for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/test"), ("POST", "/activate"),
                         ("GET", "/attempts"), ("POST", "/export")):
        answer = other_api.call(method, f"/destinations/{ident}{path}", {"events": ["OPEN"]}, date="2026-11-20")
        assert answer.status_code == 404, (method, path, answer.text)
    assert other_api.call("POST", "/destinations", ftp_body(ftp_server)).status_code == 201
    assert routed(other_api, "OPEN")[0][1] != ident
    # Neither webhooks nor the pull queue are managed here.
    assert api.call("GET", f"/destinations/{hook}").status_code == 404
    assert api.call("GET", f"/destinations/{account.pull_destination_id}").status_code == 404
    assert api.call("GET", f"/destinations/{ident}").status_code == 200


def test_export_activate_and_attempts_over_rest(runtime: Runtime, account: NewAccount, api: Api,
                                                ftp_server: FtpServer) -> None:
    ident = api.call("POST", "/destinations", ftp_body(ftp_server, line_format="jsonl")).json()["id"]
    ingest(runtime, account.id, [raw_event("a")])
    arrived = utcnow() - timedelta(days=2)
    with runtime.sessions.begin() as session:
        session.execute(update(QueueItem).where(QueueItem.destination_id == ident).values(due_at=arrived))
    day = arrived.date()

    exported = api.call("POST", f"/destinations/{ident}/export", date=str(day))

    assert exported.status_code == 200 and exported.json()["ok"] is True, exported.text
    assert (ftp_server.home / f"events-{day:%Y%m%d}.jsonl").read_text().startswith('{"id":"a"')
    assert api.call("POST", f"/destinations/{ident}/export", date="2026-13-01").json()["problems"][0]["field"] == "date"
    ftp_server.disk_full = True
    failed = api.call("POST", f"/destinations/{ident}/export", date=str(day))
    assert failed.status_code == 502 and "552" in failed.json()["error"]
    log = api.call("GET", f"/destinations/{ident}/attempts").json()["attempts"]
    assert [a["outcome"] for a in log] == ["failed", "delivered"]
    activated = api.call("POST", f"/destinations/{ident}/activate", replay="true")
    assert activated.status_code == 200 and activated.json()["active"] is True


def test_flush_over_rest_uploads_the_current_period_and_export_takes_its_start(
    runtime: Runtime, account: NewAccount, api: Api, ftp_server: FtpServer
) -> None:
    ident = api.call("POST", "/destinations", ftp_body(ftp_server, line_format="csv", trigger="done_file")).json()["id"]
    ingest(runtime, account.id, [raw_event("a")])
    today = utcnow().date()

    flushed = api.call("POST", f"/destinations/{ident}/flush")

    assert flushed.status_code == 200, flushed.text
    assert flushed.json()["detail"].startswith(f"1 events of {today}T00:00:00Z..")
    name = f"events-{today:%Y%m%d}-0000.csv"
    assert sorted(p.name for p in ftp_server.home.iterdir()) == [name, name + ".done"]
    assert (ftp_server.home / name).read_text().splitlines()[1].startswith("a,OPEN,")
    (ftp_server.home / name).unlink()
    again = api.call("POST", f"/destinations/{ident}/export", start=f"{today}T00:00")
    assert again.status_code == 200, again.text
    assert (ftp_server.home / name).read_text().splitlines()[1].startswith("a,OPEN,")
    assert api.call("POST", f"/destinations/{ident}/export", start="27.11.").json()["problems"][0]["field"] == "start"
    assert api.call("POST", f"/destinations/{ident + 100}/flush").status_code == 404


def test_cli_manages_destinations(sqlite_url: str, tmp_path: Path, sshd_server: SshdServer) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")},
           "EVENTGW_DATABASE_URL": sqlite_url, "EVENTGW_HOME": str(tmp_path),
           "EVENTGW_OUTBOUND_ALLOW_NETWORKS": LOOPBACK_NETWORKS}
    script = str(Path(sys.executable).parent / "gateway")

    def gateway(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in done.stderr
        return done

    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    key.write_text(sshd_server.private_key)
    known.write_text(sshd_server.known_hosts + "\n")
    directory = sshd_server.fresh_dir(f"cli-{os.getpid()}")
    assert gateway("account", "create", "acme", "--password", PASSWORD, "--email", "owner@example.com").returncode == 0

    created = gateway("destination", "create", "--account", "acme", "--kind", "sftp", "--host", sshd_server.host,
                      "--port", str(sshd_server.port), "--username", sshd_server.username,
                      "--private-key-file", str(key), "--known-hosts-file", str(known),
                      "--remote-dir", str(directory), "--events", "OPEN,CLICK", "--line-format", "csv", "--test")

    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("destination #2 (sftp sftp://") and created.stdout.endswith("for OPEN, CLICK\n")
    listed = gateway("destination", "list", "--account", "acme", "--json")
    (shown,) = json.loads(listed.stdout)["destinations"]
    assert shown["line_format"] == "csv" and "PRIVATE KEY" not in listed.stdout
    assert gateway("destination", "test", "--account", "acme", "2").stdout.startswith("test passed: uploaded and")
    flushed = gateway("destination", "flush", "--account", "acme", "2")
    today = utcnow().date()
    assert flushed.returncode == 0 and flushed.stdout.startswith(f"no events (an empty file) of {today}"), \
        flushed.stderr
    assert [p.name for p in directory.iterdir()] == [f"events-{today:%Y%m%d}-0000.csv"]
    bad = gateway("destination", "create", "--account", "acme", "--kind", "sftp", "--host", sshd_server.host,
                  "--username", "u", "--password", "p", "--events", "OPEN")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: invalid input:\n  field 'known_hosts': is required")
    assert gateway("destination", "delete", "--account", "acme", "2").stdout == "destination #2 deleted\n"
    runtime = make_runtime(sqlite_url, tmp_path)
    try:
        with runtime.sessions() as session:
            assert session.scalar(select(Account.notify_email).where(Account.name == "acme")) == "owner@example.com"
            assert session.scalar(select(func.count()).select_from(Destination)) == 1  # the pull queue
    finally:
        runtime.close()



def test_cli_creates_a_file_destination_with_a_template_zip_trigger_and_a_binary_pgp_key(sqlite_url: str,
                                                                                      tmp_path: Path) -> None:
    gpg, fingerprint = key_pair(tmp_path / "consumer")
    key_file = tmp_path / "consumer.gpg"
    key_file.write_bytes(gpg.export_keys(fingerprint, armor=False))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")},
           "EVENTGW_DATABASE_URL": sqlite_url, "EVENTGW_HOME": str(tmp_path)}
    script = str(Path(sys.executable).parent / "gateway")

    def gateway(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, *args], env=env, capture_output=True, text=True, timeout=60)

    assert gateway("account", "create", "acme", "--password", PASSWORD).returncode == 0
    created = gateway("destination", "create", "--account", "acme", "--kind", "ftp", "--host", "files.example.com",
                      "--username", "u", "--password", "p", "--events", "OPEN", "--line-format", "csv", "--zip",
                      "--trigger", "manifest", "--file-name", "{account}_{type}_{start:%Y%m%d}.{ext}",
                      "--pgp-key-file", str(key_file))

    assert created.returncode == 0, created.stderr
    (shown,) = json.loads(gateway("destination", "list", "--account", "acme", "--json").stdout)["destinations"]
    assert {k: shown[k] for k in ("file_name", "zip", "trigger", "empty_files", "pgp_fingerprint")} == {
        "file_name": "{account}_{type}_{start:%Y%m%d}.{ext}", "zip": True, "trigger": "manifest",
        "empty_files": True, "pgp_fingerprint": fingerprint}
    bad = gateway("destination", "create", "--account", "acme", "--kind", "ftp", "--host", "files.example.com",
                  "--username", "u", "--password", "p", "--events", "OPEN", "--file-name", "{account}.csv")
    assert bad.returncode == 1 and "field 'file_name'" in bad.stderr and "Traceback" not in bad.stderr
