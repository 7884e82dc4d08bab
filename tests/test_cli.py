"""The `gateway` console script, run as a real subprocess against SQLite and PostgreSQL."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from bench.eventgen import generate
from gateway.accounts import check_api_key, check_password
from tests.support.events import raw_event, write_jsonl
from tests.support.net import free_port
from tests.support.runtime import PASSWORD, make_runtime

EXAMPLES = Path(__file__).parent.parent / "examples" / "events.jsonl"
CRASH_EVENTS = 60_000


def gateway_script() -> str:
    beside = Path(sys.executable).parent / "gateway"
    found = str(beside) if beside.is_file() else shutil.which("gateway")
    assert found, "the gateway console script is not installed"
    return found


def environment(url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway command on the store at ``url``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")}
    return {**clean, "EVENTGW_DATABASE_URL": url, "EVENTGW_DATA_DIR": str(tmp_path / "var")}


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway command on each database."""
    return environment(store_url, tmp_path)


@pytest.fixture
def sqlite_env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway command on SQLite, for what does not depend on the database."""
    return environment(sqlite_url, tmp_path)


def gateway(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script to completion."""
    return subprocess.run([gateway_script(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def ok(env: dict[str, str], *args: str) -> str:
    """Run the console script; it must succeed; its standard output."""
    done = gateway(env, *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def fails(env: dict[str, str], *args: str) -> str:
    """Run the console script; it must exit 1 with a message and no stack trace; its standard error."""
    done = gateway(env, *args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: ")
    return done.stderr


def create_acme(env: dict[str, str]) -> tuple[int, str]:
    out = ok(env, "account", "create", "acme", "--password", PASSWORD)
    match = re.fullmatch(r"account acme created with id (\d+)\napi key: (egw_[A-Za-z0-9_-]{20,})\n", out)
    assert match, out
    return int(match[1]), match[2]


def scalar(url: str, query: str) -> Any:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query)).scalar()
    finally:
        engine.dispose()


def test_account_create_prints_id_and_api_key(store_url: str, env: dict[str, str], tmp_path: Path) -> None:
    account_id, api_key = create_acme(env)
    runtime = make_runtime(store_url, tmp_path)
    try:
        with runtime.sessions() as session:
            assert check_api_key(session, api_key) == account_id
        assert check_password(runtime.sessions, "acme", PASSWORD) == account_id
    finally:
        runtime.close()
    # Only hashes are stored.
    assert PASSWORD not in scalar(store_url, "SELECT password_hash FROM accounts")
    assert api_key not in scalar(store_url, "SELECT key_hash FROM api_keys")
    assert "already exists" in fails(env, "account", "create", "acme", "--password", PASSWORD)
    assert "password" in fails(env, "account", "create", "globex", "--password", "short")


def test_database_url_option(sqlite_url: str, sqlite_env: dict[str, str]) -> None:
    del sqlite_env["EVENTGW_DATABASE_URL"]
    create = gateway(sqlite_env, "--database-url", sqlite_url, "account", "create", "acme", "--password", PASSWORD)
    assert create.returncode == 0, create.stderr
    assert scalar(sqlite_url, "SELECT name FROM accounts") == "acme"


def test_ingest_the_example_file_twice_and_show_stats(store_url: str, env: dict[str, str]) -> None:
    types = Counter(json.loads(line)["type"] for line in EXAMPLES.read_text().splitlines())
    create_acme(env)
    assert ok(env, "ingest", str(EXAMPLES), "--account", "acme") == \
        "3000 lines: 3000 stored, 0 duplicates, 0 rejected\n"
    assert ok(env, "ingest", str(EXAMPLES), "--account", "acme") == \
        "3000 lines: 0 stored, 3000 duplicates, 0 rejected\n"
    figures = json.loads(ok(env, "stats", "--account", "acme", "--json"))
    assert figures["events"] == dict(types)
    assert figures["total"] == 3000
    assert [(p["kind"], p["pending"]) for p in figures["pending"].values()] == [("pull", 3000)]
    text = ok(env, "stats", "--account", "acme")
    assert "events stored for acme: 3000" in text
    assert re.search(rf"CLICK\s+{types['CLICK']}\n", text)
    assert re.search(r"#\d+ pull\s+pull queue\s+3000\n", text)
    assert scalar(store_url, "SELECT count(*) FROM queue") == 3000


def test_ingest_a_csv_file(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    create_acme(sqlite_env)
    path = tmp_path / "events.csv"
    path.write_text("id,type,occurred_at,email,url,data.esp_name\n"
                    "c1,open,2026-11-24T10:15:00Z,a@example.com,,SES\n"
                    "c2,click,1795515300,b@example.com,https://example.com/x,SES\n", encoding="utf-8")
    assert ok(sqlite_env, "ingest", str(path), "--account", "acme") == "2 lines: 2 stored, 0 duplicates, 0 rejected\n"
    assert json.loads(ok(sqlite_env, "stats", "--account", "acme", "--json"))["events"] == {"CLICK": 1, "OPEN": 1}


def test_ingest_of_a_bad_file_lists_the_bad_lines_and_stores_nothing(
    store_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    create_acme(env)
    path = write_jsonl(tmp_path / "events.jsonl", [
        raw_event("e1"), raw_event("e2", type="nope"), raw_event("e3"), "{not json", raw_event("e5", email="")])
    message = fails(env, "ingest", str(path), "--account", "acme")
    assert "line 2, field 'type'" in message and "'nope'" in message
    assert "line 4" in message and "invalid JSON" in message
    assert "line 5, field 'email'" in message
    assert "record line 1," not in message and "record line 3," not in message
    assert scalar(store_url, "SELECT count(*) FROM events") == 0


def test_ingest_of_a_file_that_is_not_utf8(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    create_acme(sqlite_env)
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(raw_event("e1", message_name="Caf\u00e9"), ensure_ascii=False).encode("latin-1"))
    assert "UTF-8" in fails(sqlite_env, "ingest", str(path), "--account", "acme")


def test_ingest_for_an_unknown_account(sqlite_env: dict[str, str]) -> None:
    create_acme(sqlite_env)
    assert "unknown account 'globex'" in fails(sqlite_env, "ingest", str(EXAMPLES), "--account", "globex")


def test_skip_invalid_writes_the_rejects(store_url: str, env: dict[str, str], tmp_path: Path) -> None:
    create_acme(env)
    path = write_jsonl(tmp_path / "events.jsonl", [
        raw_event("e1"), raw_event("e2", type="nope"), "{not json", raw_event("e4")])
    out = ok(env, "ingest", str(path), "--account", "acme", "--skip-invalid")
    rejects = tmp_path / "events.jsonl.rejects.jsonl"
    assert out == f"4 lines: 2 stored, 0 duplicates, 2 rejected\nrejected lines and their errors: {rejects}\n"
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["record"]) for r in written] == [(2, raw_event("e2", type="nope")), (3, None)]
    assert [e["field"] for e in written[0]["errors"]] == ["type"]
    assert "invalid JSON" in written[1]["errors"][0]["message"]
    assert scalar(store_url, "SELECT count(*) FROM events") == 2

    elsewhere = tmp_path / "out" / "bad.jsonl"
    elsewhere.parent.mkdir()
    out = ok(env, "ingest", str(path), "--account", "acme", "--skip-invalid", "--rejects", str(elsewhere))
    assert out.startswith("4 lines: 0 stored, 2 duplicates, 2 rejected\n")
    assert elsewhere.read_text() == rejects.read_text()


def test_skip_invalid_leaves_no_rejects_file_for_a_clean_file(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    create_acme(sqlite_env)
    path = write_jsonl(tmp_path / "events.jsonl", [raw_event("e1")])
    assert ok(sqlite_env, "ingest", str(path), "--account", "acme", "--skip-invalid") == \
        "1 lines: 1 stored, 0 duplicates, 0 rejected\n"
    assert not (tmp_path / "events.jsonl.rejects.jsonl").exists()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSON Lines file of CRASH_EVENTS generated events."""
    path = tmp_path_factory.mktemp("big") / "events.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for event in generate(CRASH_EVENTS, prefix="crash"):
            handle.write(json.dumps(event) + "\n")
    return path


def test_an_interrupted_import_completes_when_run_again(
    store_url: str, env: dict[str, str], tmp_path: Path, big_file: Path
) -> None:
    create_acme(env)
    engine = sa.create_engine(store_url)
    count = sa.text("SELECT count(*) FROM events")
    try:
        with (tmp_path / "killed.log").open("w") as log:
            process = subprocess.Popen([gateway_script(), "ingest", str(big_file), "--account", "acme"],
                                       env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                with engine.connect() as connection:
                    if connection.execute(count).scalar():
                        break
                time.sleep(0.005)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL, "the import ended before it could be interrupted"
        with engine.connect() as connection:
            stored = connection.execute(count).scalar()
            queued = connection.execute(sa.text("SELECT count(*) FROM queue")).scalar()
        assert 0 < stored < CRASH_EVENTS
        # Whatever was committed came with its queue rows.
        assert queued == stored

        out = ok(env, "ingest", str(big_file), "--account", "acme")
        assert out == f"{CRASH_EVENTS} lines: {CRASH_EVENTS - stored} stored, {stored} duplicates, 0 rejected\n"
        with engine.connect() as connection:
            events, distinct = connection.execute(sa.text("SELECT count(*), count(DISTINCT uid) FROM events")).one()
            queued_once = connection.execute(sa.text(
                "SELECT count(*) FROM events e WHERE (SELECT count(*) FROM queue q JOIN destinations d "
                "ON d.id = q.destination_id WHERE q.event_id = e.id AND d.kind = 'pull') = 1")).scalar()
            queue_rows = connection.execute(sa.text("SELECT count(*) FROM queue")).scalar()
    finally:
        engine.dispose()
    assert (events, distinct) == (CRASH_EVENTS, CRASH_EVENTS)
    assert queued_once == CRASH_EVENTS
    assert queue_rows == CRASH_EVENTS


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[bytes]]]:
    """`gateway serve` on a fresh SQLite data directory; its URL, environment and process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")}
    env["EVENTGW_DATA_DIR"] = str(tmp_path / "data")
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen([gateway_script(), "serve", "--port", str(port)], env=env, cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not answer /healthz"
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        yield url, env, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve(served: tuple[str, dict[str, str], subprocess.Popen[bytes]], tmp_path: Path) -> None:
    url, env, process = served
    assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    _, api_key = create_acme(env)
    response = requests.post(f"{url}/api/v1/events", json=[raw_event("e1")],
                             headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    response = requests.post(f"{url}/api/v1/events", json=[raw_event("e1")], auth=("acme", PASSWORD), timeout=10)
    assert response.json() == {"accepted": 0, "duplicates": 1}
    process.terminate()
    process.wait(timeout=10)
    log = (tmp_path / "serve.log").read_text()
    assert f"eventgw listening on {url}" in log
    assert "Traceback" not in log
    database = tmp_path / "data" / "eventgw.db"
    assert scalar(f"sqlite:///{database}", "SELECT uid FROM events") == "e1"
