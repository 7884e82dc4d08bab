"""`gateway webhook` and `gateway failed`, run as the real console script against SQLite and PostgreSQL, with a
real receiver and the delivery engine working on the same store."""
from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.accounts import NewAccount
from gateway.delivery.engine import Dispatcher
from gateway.runtime import Runtime
from tests.support.delivery import deliveries
from tests.support.events import ingest, raw_event
from tests.support.http_receiver import Receiver
from tests.support.parking import park
from tests.support.processes import gateway_env, gateway_script


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway command on each database, with the secret key (in ``tmp_path``) and the
    outbound policy of the in-process runtime the other fixtures share."""
    return gateway_env(store_url, tmp_path, outbound_allow_networks="127.0.0.0/8")


def _run(env: dict[str, str], args: tuple[str, ...], code: int) -> str:
    done = subprocess.run([gateway_script(), *args], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == code, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout if code == 0 else done.stderr


def ok(env: dict[str, str], *args: str) -> str:
    """What the command printed; it must succeed."""
    return _run(env, args, 0)


def fails(env: dict[str, str], *args: str) -> str:
    """The one-line error the command printed; it must exit 1."""
    return _run(env, args, 1)


@pytest.fixture
def dispatcher(runtime: Runtime) -> Iterator[Dispatcher]:
    """A delivery engine on the same store, run by the test."""
    engine = Dispatcher(runtime)
    yield engine
    engine.stop()


def test_webhook_commands_manage_a_webhook(env: dict[str, str], account: NewAccount, http_receiver: Receiver,
                                           runtime: Runtime, dispatcher: Dispatcher) -> None:
    created = ok(env, "webhook", "create", "--account", "acme", "--url", http_receiver.url, "--events", "open,click",
                 "--app", "crm", "--header", "X-Env: test")
    match = re.fullmatch(r"webhook #(\d+) created for OPEN, CLICK; its signing secret \(shown once\): whsec_\S+\n",
                         created)
    assert match, created
    hook = match[1]
    assert ok(env, "webhook", "list", "--account", "acme").startswith(f"#{hook} {http_receiver.url}  [OPEN,CLICK]")
    shown = json.loads(ok(env, "webhook", "show", "--account", "acme", hook, "--json"))
    assert (shown["app"], shown["headers"], shown["active"]) == ("crm", {"X-Env": "test"}, True)
    assert "[BOUNCE]" in ok(env, "webhook", "update", "--account", "acme", hook, "--events", "BOUNCE")
    assert "field 'events': unknown event type 'nope'" in fails(env, "webhook", "update", "--account", "acme", hook,
                                                                "--events", "nope")
    assert "999" in fails(env, "webhook", "show", "--account", "acme", "999")

    assert "deactivated; its events are kept" in ok(env, "webhook", "deactivate", "--account", "acme", hook)
    assert "was deactivated already" in ok(env, "webhook", "deactivate", "--account", "acme", hook)
    assert "is deactivated: activate it" in fails(env, "webhook", "retry", "--account", "acme", hook)
    ingest(runtime, account.id, [raw_event("b1", "BOUNCE")])
    dispatcher.drain()
    assert http_receiver.requests == []
    activated = ok(env, "webhook", "activate", "--account", "acme", hook, "--replay")
    assert activated == f"webhook #{hook} activated; 1 events to deliver\n"
    assert "already active; nothing changed" in ok(env, "webhook", "activate", "--account", "acme", hook)
    dispatcher.drain()
    assert deliveries(http_receiver.requests) == Counter(["b1"])
    (attempt,) = json.loads(ok(env, "webhook", "attempts", "--account", "acme", hook, "--json"))["attempts"][:1]
    assert (attempt["outcome"], attempt["status"]) == ("delivered", 200)

    assert ok(env, "webhook", "delete", "--account", "acme", hook) == f"webhook #{hook} deleted\n"
    assert ok(env, "webhook", "list", "--account", "acme") == ""


def test_retry_now_failed_list_and_redrive_from_the_command_line(
    env: dict[str, str], account: NewAccount, http_receiver: Receiver, runtime: Runtime, dispatcher: Dispatcher
) -> None:
    hook = re.search(r"#(\d+)", ok(env, "webhook", "create", "--account", "acme", "--url", http_receiver.url,
                                   "--events", "OPEN"))[1]  # type: ignore[index]
    http_receiver.respond(503, b"busy")
    ingest(runtime, account.id, [raw_event("e1"), raw_event("e2")])
    dispatcher.drain()
    ingest(runtime, account.id, [raw_event("e3")])  # waits behind the batch in backoff

    listed = ok(env, "failed", "list", "--account", "acme")
    assert f"http #{hook} failed, 2 events:" in listed and "busy" in listed
    http_receiver.respond(200)
    assert ok(env, "webhook", "retry", "--account", "acme", hook).startswith(f"webhook #{hook}: 2 waiting events due")
    dispatcher.drain()
    assert deliveries(http_receiver.requests[1:]) == Counter(["e1", "e2", "e3"])

    ingest(runtime, account.id, [raw_event("p1")])
    park(runtime, int(hook), "p1", "cannot be rendered")
    (parked,) = [f for f in json.loads(ok(env, "failed", "list", "--account", "acme", "--json"))["failed"]
                 if f["failure"] == "parked"]
    assert parked["event"] == "p1"
    out = ok(env, "failed", "redrive", "--account", "acme", "--event", str(parked["event_id"]))
    assert out == "1 parked events queued again\n"
    dispatcher.drain()
    assert deliveries(http_receiver.requests[-1:]) == Counter(["p1"])


def test_destination_commands_deactivate_retry_and_activate(env: dict[str, str], account: NewAccount) -> None:
    created = ok(env, "destination", "create", "--account", "acme", "--kind", "email", "--events", "BOUNCE",
                 "--recipient", "ops@example.com")
    email = re.search(r"#(\d+)", created)[1]  # type: ignore[index]
    retried = ok(env, "destination", "retry", "--account", "acme", email)
    assert retried.startswith(f"destination #{email}: 0 waiting events due now")
    assert "already active" in ok(env, "destination", "activate", "--account", "acme", email)
    assert "deactivated; its events are kept" in ok(env, "destination", "deactivate", "--account", "acme", email)
    assert "(deactivated)" in ok(env, "destination", "list", "--account", "acme")
    assert "is deactivated" in fails(env, "destination", "retry", "--account", "acme", email)
    assert ok(env, "destination", "activate", "--account", "acme", email, "--replay") == (
        f"destination #{email} activated; 0 events to deliver\n")
