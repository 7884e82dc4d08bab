"""The `gateway` console script, run as a real subprocess against SQLite and PostgreSQL."""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
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
from gateway.errors import AuthError
from tests.support.events import raw_event, write_jsonl
from tests.support.net import free_port
from tests.support.runtime import PASSWORD, make_runtime
from tests.support.smtp import SmtpServer

EXAMPLES = Path(__file__).parent.parent / "examples" / "events.jsonl"
CRASH_EVENTS = 60_000


def gateway_script() -> str:
    beside = Path(sys.executable).parent / "gateway"
    found = str(beside) if beside.is_file() else shutil.which("gateway")
    assert found, "the gateway console script is not installed"
    return found


def unconfigured(tmp_path: Path) -> dict[str, str]:
    """An environment without EVENTGW_* variables, whose default data directory is under ``tmp_path``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGW_")}
    return {**clean, "XDG_DATA_HOME": str(tmp_path / "xdg")}


def environment(url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway command on the store at ``url``."""
    return {**unconfigured(tmp_path), "EVENTGW_DATABASE_URL": url, "EVENTGW_HOME": str(tmp_path / "var")}


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway command on each database."""
    return environment(store_url, tmp_path)


@pytest.fixture
def sqlite_env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway command on SQLite, for what does not depend on the database."""
    return environment(sqlite_url, tmp_path)


def gateway(env: dict[str, str], *args: str, cwd: Path | None = None,
            input: str = "") -> subprocess.CompletedProcess[str]:
    """Run the console script to completion (``input`` on its standard input)."""
    return subprocess.run([gateway_script(), *args], env=env, cwd=cwd, input=input, capture_output=True, text=True,
                          timeout=120, check=False)


def ok(env: dict[str, str], *args: str, input: str = "") -> str:
    """Run the console script; it must succeed; its standard output."""
    done = gateway(env, *args, input=input)
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
    env = unconfigured(tmp_path)
    env["EVENTGW_HOME"] = str(tmp_path / "data")
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
    health = requests.get(f"{url}/healthz", timeout=5).json()
    assert health == {"status": "ok", "role": "web+dispatcher", "database": "sqlite"}
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
    database = tmp_path / "data" / "eventgw.db"
    assert f"eventgw listening on {url}, store sqlite:///{database} (in the data directory from EVENTGW_HOME)\n" in log
    assert "Traceback" not in log
    assert scalar(f"sqlite:///{database}", "SELECT uid FROM events") == "e1"


def test_version() -> None:
    done = gateway(dict(os.environ), "--version")

    assert (done.returncode, done.stdout) == (0, f"eventgw {importlib.metadata.version('eventgw')}\n")


# --- every mistake at start-up: one line naming the setting, a non-zero exit, no stack trace


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on standard error, the message; that line."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


def test_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = gateway(unconfigured(tmp_path), "serve", "--port", str(port))

    assert one_line_error(done) == (
        f"Error: cannot listen on 127.0.0.1:{port}: the port is already in use; stop whatever listens there, "
        "or choose another port (--port or EVENTGW_PORT; port is from --port)")


@pytest.mark.parametrize(("option", "variable"), [(["--port", "80999"], {}), ([], {"EVENTGW_PORT": "80999"})])
def test_a_port_out_of_range(tmp_path: Path, option: list[str], variable: dict[str, str]) -> None:
    done = gateway({**unconfigured(tmp_path), **variable}, "serve", *option)

    origin = "--port" if option else "EVENTGW_PORT"
    assert one_line_error(done) == f"Error: port must be between 1 and 65535 (it is 80999, from {origin})"
    assert not (tmp_path / "xdg").exists()


def test_an_unknown_database_scheme(tmp_path: Path) -> None:
    done = gateway(unconfigured(tmp_path), "--database-url", "foo://", "stats", "--account", "acme")

    message = one_line_error(done)
    assert message.startswith("Error: database_url 'foo://' (from --database-url): unknown database 'foo'")
    assert "sqlite:///" in message and "postgresql+psycopg://" in message


def test_a_postgresql_url_without_the_postgres_extra(tmp_path: Path) -> None:
    # psycopg as an installation without the extra has it: not importable.
    shadow = tmp_path / "without-psycopg" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    env = {**unconfigured(tmp_path), "PYTHONPATH": str(shadow.parent),
           "EVENTGW_DATABASE_URL": "postgresql+psycopg://eventgw@127.0.0.1/eventgw"}

    message = one_line_error(gateway(env, "db", "upgrade"))

    assert message.startswith("Error: cannot open the store postgresql+psycopg://eventgw@127.0.0.1/eventgw "
                              "(from EVENTGW_DATABASE_URL): its database driver (psycopg) is not installed")
    assert message.endswith(": pip install 'eventgw[postgres]'")


def test_a_gateway_url_without_a_scheme(tmp_path: Path) -> None:
    done = gateway(unconfigured(tmp_path), "pull", "--url", "127.0.0.1:8080", "--account", "acme",
                   "--password", PASSWORD, "--out", str(tmp_path / "out.csv"))

    assert one_line_error(done) == ("Error: url '127.0.0.1:8080' is not the gateway's base URL; give it with its "
                                    "scheme, e.g. http://127.0.0.1:8080")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("problem", ["missing", "a directory", "not UTF-8"])
def test_an_unreadable_configuration_file(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "eventgw.toml"
    if problem == "a directory":
        path.mkdir()
    elif problem == "not UTF-8":
        path.write_bytes('smtp_sender = "caf\u00e9@example.com"\n'.encode("latin-1"))

    done = gateway({**unconfigured(tmp_path), "EVENTGW_CONFIG": str(path)}, "serve")

    message = one_line_error(done)
    assert message.startswith(f"Error: cannot read configuration file {path}: ")
    assert message.endswith("(named by EVENTGW_CONFIG: fix the file, or unset the variable)")
    assert not (tmp_path / "xdg").exists()


# --- the store: the same from any directory, never created by a command that needs one


READING = [
    ["stats", "--account", "acme"],
    ["account", "list"],
    ["account", "rotate-key", "acme"],
    ["account", "delete", "acme", "--yes"],
    ["destination", "list", "--account", "acme"],
    ["export", "--destination", "1", "--date", "2026-11-20"],
    ["ingest", str(EXAMPLES), "--account", "acme"],
]


@pytest.mark.parametrize("command", READING, ids=lambda command: " ".join(command[:2]))
def test_commands_that_need_a_store_never_create_one(tmp_path: Path, command: list[str]) -> None:
    done = gateway(unconfigured(tmp_path), "--database-url", "sqlite:///nope/x.db", *command, cwd=tmp_path)

    assert one_line_error(done) == (
        f"Error: no store at sqlite:///nope/x.db (from --database-url): {tmp_path}/nope/x.db does not exist; "
        "create it with 'gateway db upgrade' or 'gateway account create', or name another store with "
        "--database-url, EVENTGW_DATABASE_URL or EVENTGW_HOME")
    assert not (tmp_path / "nope").exists()


def test_without_configuration_commands_look_in_the_default_data_directory(tmp_path: Path) -> None:
    done = gateway(unconfigured(tmp_path), "stats", "--account", "acme", cwd=tmp_path)

    store = tmp_path / "xdg" / "eventgw" / "eventgw.db"
    assert one_line_error(done).startswith(
        f"Error: no store at sqlite:///{store} (in the default data directory): the file does not exist; ")
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_an_empty_database_is_not_a_store(store_url: str, env: dict[str, str]) -> None:
    message = one_line_error(gateway(env, "account", "list"))

    if store_url.startswith("sqlite"):
        assert "does not exist" in message
        assert not Path(store_url.removeprefix("sqlite:///")).exists()
    else:
        assert message.endswith("(from EVENTGW_DATABASE_URL): the database has no eventgw tables; create them with "
                                "'gateway db upgrade', or name another store with --database-url, "
                                "EVENTGW_DATABASE_URL or EVENTGW_HOME")
        assert scalar(store_url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == 0
    assert ok(env, "db", "upgrade").startswith("database at revision ")
    assert ok(env, "account", "list") == "no accounts\n"


def test_every_directory_finds_the_same_default_store(tmp_path: Path) -> None:
    env = unconfigured(tmp_path)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    events = write_jsonl(tmp_path / "ev.jsonl", [raw_event("e1"), raw_event("e2")])

    assert gateway(env, "account", "create", "acme", "--password", PASSWORD, cwd=here).returncode == 0
    ingested = gateway(env, "ingest", str(events), "--account", "acme", cwd=there)

    assert (ingested.returncode, ingested.stdout) == (0, "2 lines: 2 stored, 0 duplicates, 0 rejected\n")
    assert list(here.iterdir()) == list(there.iterdir()) == []
    assert (tmp_path / "xdg" / "eventgw" / "eventgw.db").is_file()


def test_verbose_prints_the_store_in_use(sqlite_url: str, sqlite_env: dict[str, str], tmp_path: Path) -> None:
    create_acme(sqlite_env)

    done = gateway(sqlite_env, "-v", "account", "list", "--json")

    assert done.returncode == 0
    assert done.stderr == f"store: {sqlite_url} (from EVENTGW_DATABASE_URL)\n"
    assert [item["name"] for item in json.loads(done.stdout)["accounts"]] == ["acme"]
    home = {**unconfigured(tmp_path), "EVENTGW_HOME": str(tmp_path / "home")}
    assert gateway(home, "-v", "db", "upgrade").stderr == \
        f"store: sqlite:///{tmp_path}/home/eventgw.db (in the data directory from EVENTGW_HOME)\n"


# --- accounts


def test_account_list_password_rotate_key_and_delete(store_url: str, env: dict[str, str], tmp_path: Path) -> None:
    acme_id, old_key = create_acme(env)
    ok(env, "account", "create", "globex", "--password", PASSWORD)

    listed = ok(env, "account", "list")
    assert re.fullmatch(rf"#{acme_id} acme {{20}} created \d{{4}}-\d\d-\d\d  api keys: {old_key[:10]}\.\.\.\n"
                        rf"#\d+ globex {{18}} created .*\n", listed), listed
    shown = json.loads(ok(env, "account", "list", "--json"))["accounts"]
    assert [(a["name"], [k["prefix"] for k in a["api_keys"]]) for a in shown][0] == ("acme", [old_key[:10]])

    assert ok(env, "account", "password", "acme", "--password", "n3w-Secret") == "password of account acme changed\n"
    assert "password" in fails(env, "account", "password", "acme", "--password", "short")
    prompted = gateway(env, "account", "password", "globex", input="an0ther-one\nan0ther-one\n")
    assert prompted.returncode == 0, prompted.stderr

    rotated = ok(env, "account", "rotate-key", "acme")
    match = re.fullmatch(r"api key: (egw_[A-Za-z0-9_-]{20,})\n", rotated)
    assert match and match[1] != old_key
    runtime = make_runtime(store_url, tmp_path)
    try:
        assert check_password(runtime.sessions, "acme", "n3w-Secret") == acme_id
        assert check_password(runtime.sessions, "globex", "an0ther-one")
        with pytest.raises(AuthError):
            check_password(runtime.sessions, "acme", PASSWORD)
        with runtime.sessions() as session:
            assert check_api_key(session, match[1]) == acme_id
            with pytest.raises(AuthError):
                check_api_key(session, old_key)
    finally:
        runtime.close()

    kept = gateway(env, "account", "delete", "acme", input="n\n")
    assert kept.returncode == 1 and "Aborted" in kept.stderr
    assert ok(env, "account", "delete", "acme", input="y\n").endswith("account acme deleted\n")
    assert "unknown account 'acme'" in fails(env, "account", "delete", "acme", "--yes")
    assert [a["name"] for a in json.loads(ok(env, "account", "list", "--json"))["accounts"]] == ["globex"]
    assert scalar(store_url, "SELECT count(*) FROM destinations") == 1  # globex's pull queue


# --- destination tests say whose SMTP settings they used


def test_an_email_test_names_the_smtp_server_and_its_settings(
    sqlite_env: dict[str, str], smtp_plain_server: SmtpServer
) -> None:
    env = {**sqlite_env, "EVENTGW_SMTP_PORT": str(smtp_plain_server.port)}
    create_acme(env)

    created = gateway(env, "destination", "create", "--account", "acme", "--kind", "email",
                      "--recipient", "ops@example.com", "--events", "OPEN", "--test")

    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("destination #2 (email ")
    used = (f"testing by email through 127.0.0.1:{smtp_plain_server.port} (security none; smtp_host from the "
            "default, smtp_port from EVENTGW_SMTP_PORT, smtp_security from the default): this command's SMTP "
            "settings, a running gateway sends with its own\n")
    assert created.stderr == used
    assert len(smtp_plain_server.messages) == 1
    tested = gateway(env, "destination", "test", "--account", "acme", "2")
    assert tested.returncode == 0 and tested.stderr == used
    elsewhere = gateway({**env, "EVENTGW_SMTP_PORT": str(free_port())}, "destination", "test", "--account", "acme", "2")
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.startswith("testing by email through 127.0.0.1:")
    assert "\nError: test failed: " in elsewhere.stderr
