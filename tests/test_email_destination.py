"""Email destinations through the real delivery engine and a real SMTP server (STARTTLS, AUTH); deactivation notices."""
from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.accounts import NewAccount, create_account
from gateway.delivery.engine import Dispatcher
from gateway.delivery.flush import flush
from gateway.destinations import management as admin
from gateway.destinations import webhooks
from gateway.events import formats
from gateway.ingest import ingest_request
from gateway.notices import notify_deactivated, set_notice_address
from gateway.runtime import Runtime
from gateway.store.models import Destination
from tests.support.events import raw_event
from tests.support.net import free_port
from tests.support.runtime import PASSWORD, make_runtime
from tests.support.smtp import SmtpServer

Opener = Callable[..., Runtime]


def smtp(server: SmtpServer, **changes: Any) -> dict[str, Any]:
    """Settings that send through ``server`` (STARTTLS and login when it has them)."""
    values = {"smtp_host": server.host, "smtp_port": server.port, "smtp_sender": "gateway@eventgw.test",
              "smtp_security": "starttls" if server.user else "none", "smtp_username": server.user or "",
              "smtp_password": server.password or "", "smtp_ca_file": server.ca_file or ""}
    return {**values, **changes}


@pytest.fixture
def opener(store_url: str, tmp_path: Path) -> Iterator[Opener]:
    """Open runtimes on one store (retries due at once), closing them and their dispatchers after the test."""
    opened: list[Runtime] = []

    def open_(**settings: Any) -> Runtime:
        opened.append(make_runtime(store_url, tmp_path, **{"retry_schedule": "0", **settings}))
        return opened[-1]

    yield open_
    for runtime in opened:
        runtime.close()


@pytest.fixture
def acme(opener: Opener) -> NewAccount:
    with opener().sessions.begin() as session:
        return create_account(session, "acme", PASSWORD)


def drain(runtime: Runtime, on_deactivate: Callable[[int], None] | None = None) -> None:
    dispatcher = Dispatcher(runtime, on_deactivate)
    try:
        dispatcher.drain()
    finally:
        dispatcher.stop()


def add_email(runtime: Runtime, account_id: int, **settings: Any) -> int:
    with runtime.sessions.begin() as session:
        payload = {"kind": "email", "recipients": ["ops@example.com", "crm@example.org"],
                   "events": ["OPEN", "CLICK"], **settings}
        return admin.create(session, account_id, payload).id


def attempt_log(runtime: Runtime, destination_id: int) -> list[dict[str, Any]]:
    with runtime.sessions() as session:
        return admin.attempts(session, destination_id)[::-1]


def attachment_rows(message: EmailMessage) -> tuple[str, list[dict[str, str]]]:
    (part,) = list(message.iter_attachments())
    data = part.get_payload(decode=True)
    if part.get_content_type() == "application/gzip":
        data = gzip.decompress(data)
    return part.get_filename() or "", list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_events_arrive_by_mail_over_starttls_with_summary_and_csv(
    opener: Opener, acme: NewAccount, smtp_server: SmtpServer
) -> None:
    runtime = opener(**smtp(smtp_server))
    destination = add_email(runtime, acme.id, subject="{count} new events for {account}")
    click = raw_event("c1", "CLICK", url="https://shop.example.com/offer?a=1", data={"note": 'a "quoted",\nline'})
    events = [raw_event(f"o{i}") for i in range(8)] + [click] + [raw_event("b1", "BOUNCE")]
    assert ingest_request(runtime.sessions, acme.id, events).accepted == 10

    drain(runtime)

    (message,) = smtp_server.messages
    assert smtp_server.envelopes == [("gateway@eventgw.test", ["ops@example.com", "crm@example.org"])]
    assert message["Subject"] == "9 new events for acme"
    body = message.get_body(("plain",)).get_content()
    assert "Account: acme" in body and "Events: 9" in body
    assert [line.split() for line in body.splitlines() if line.startswith("  ")] == [["OPEN", "8"], ["CLICK", "1"]]
    name, rows = attachment_rows(message)
    assert name.endswith(".csv")
    assert [row["id"] for row in rows] == [f"o{i}" for i in range(8)] + ["c1"]
    assert list(rows[0]) == list(formats.CSV_COLUMNS)
    assert rows[8]["url"] == "https://shop.example.com/offer?a=1"
    assert rows[8]["data"] == '{"note":"a \\"quoted\\",\\nline"}'
    (attempt,) = attempt_log(runtime, destination)
    assert attempt["outcome"] == "delivered" and attempt["status"] == 250 and attempt["events"] == 9
    assert message["Message-ID"] == f"<eventgw.{attempt['message_id']}@eventgw.test>"


def test_max_events_per_message_and_gzip_above_the_threshold(
    opener: Opener, acme: NewAccount, smtp_server: SmtpServer
) -> None:
    runtime = opener(**smtp(smtp_server))
    add_email(runtime, acme.id, batch_max_events=5, gzip_threshold=200)
    assert ingest_request(runtime.sessions, acme.id, [raw_event(f"e{i:02d}") for i in range(12)]).accepted == 12

    drain(runtime)

    assert len(smtp_server.messages) == 3
    sent = [attachment_rows(m) for m in smtp_server.messages]
    assert [row["id"] for _, rows in sent for row in rows] == [f"e{i:02d}" for i in range(12)]
    assert [len(rows) for _, rows in sent] == [5, 5, 2]
    assert all(name.endswith(".csv.gz") for name, _ in sent)


def test_an_interval_holds_further_messages_back(opener: Opener, acme: NewAccount, smtp_server: SmtpServer) -> None:
    runtime = opener(**smtp(smtp_server))
    destination = add_email(runtime, acme.id, interval_seconds=600)
    ingest_request(runtime.sessions, acme.id, [raw_event("first")])
    drain(runtime)
    ingest_request(runtime.sessions, acme.id, [raw_event("second"), raw_event("third")])

    drain(runtime)

    assert len(smtp_server.messages) == 1
    with runtime.sessions() as session:
        assert admin.view(session, session.get(Destination, destination))["interval_seconds"] == 600


def test_flush_sends_the_waiting_events_now_and_the_interval_counts_from_there(
    opener: Opener, acme: NewAccount, smtp_server: SmtpServer
) -> None:
    runtime = opener(**smtp(smtp_server))
    destination = add_email(runtime, acme.id, interval_seconds=600)
    ingest_request(runtime.sessions, acme.id, [raw_event("first")])
    drain(runtime)
    ingest_request(runtime.sessions, acme.id, [raw_event("second"), raw_event("third")])

    sent = flush(runtime, acme.id, destination)

    assert sent == {"id": destination, "kind": "email", "detail": "2 events sent in 1 messages"}
    assert len(smtp_server.messages) == 2
    assert [row["id"] for row in attachment_rows(smtp_server.messages[1])[1]] == ["second", "third"]
    ingest_request(runtime.sessions, acme.id, [raw_event("fourth")])
    drain(runtime)
    assert len(smtp_server.messages) == 2  # the interval starts again at the flush
    assert flush(runtime, acme.id, destination)["detail"] == "1 events sent in 1 messages"
    assert flush(runtime, acme.id, destination)["detail"] == "no events were waiting"


def test_a_wrong_password_is_retried_then_the_destination_is_deactivated(
    opener: Opener, acme: NewAccount, smtp_server: SmtpServer
) -> None:
    runtime = opener(**smtp(smtp_server, smtp_password="wrong"), deactivate_after_failures=3)
    destination = add_email(runtime, acme.id)
    ingest_request(runtime.sessions, acme.id, [raw_event("a"), raw_event("b")])
    told: list[int] = []

    drain(runtime, told.append)

    log = attempt_log(runtime, destination)
    assert [a["outcome"] for a in log] == ["failed", "failed", "failed", "deactivated"]
    assert all("refused the login as 'mailer'" in a["detail"] and a["status"] == 535 for a in log[:3])
    assert len({a["message_id"] for a in log[:3]}) == 1
    assert told == [destination]
    assert smtp_server.messages == []
    with runtime.sessions() as session:
        assert session.get(Destination, destination).active is False  # type: ignore[union-attr]


def test_a_server_that_is_down_is_retried_with_the_same_message_id(
    opener: Opener, acme: NewAccount, smtp_server: SmtpServer
) -> None:
    runtime = opener(**smtp(smtp_server, smtp_port=free_port()))
    destination = add_email(runtime, acme.id)
    ingest_request(runtime.sessions, acme.id, [raw_event("a")])
    dispatcher = Dispatcher(runtime)
    dispatcher.run_once()
    dispatcher.stop()  # waits for the one try in flight
    (failed,) = attempt_log(runtime, destination)
    assert failed["outcome"] == "failed" and "connection refused by 127.0.0.1:" in failed["detail"]

    drain(opener(**smtp(smtp_server)))

    (message,) = smtp_server.messages
    assert message["Message-ID"] == f"<eventgw.{failed['message_id']}@eventgw.test>"
    assert [a["outcome"] for a in attempt_log(runtime, destination)] == ["failed", "delivered"]


# --- deactivation notices


def test_a_deactivated_destination_is_mailed_to_the_account_owner(
    opener: Opener, acme: NewAccount, smtp_server: SmtpServer
) -> None:
    runtime = opener(**smtp(smtp_server), deactivate_after_failures=1)
    with runtime.sessions.begin() as session:
        set_notice_address(session, acme.id, "owner@example.com")
        hook = webhooks.create(session, acme.id, {"url": f"http://127.0.0.1:{free_port()}/hook",
                                                  "events": ["OPEN"]}).id
    ingest_request(runtime.sessions, acme.id, [raw_event("a")])

    drain(runtime, lambda destination_id: notify_deactivated(runtime, destination_id))

    (message,) = smtp_server.messages
    assert smtp_server.envelopes[0][1] == ["owner@example.com"]
    assert message["Subject"] == f"[eventgw] http destination #{hook} of acme was deactivated"
    text = message.get_content()
    assert f"destination #{hook} (http http://127.0.0.1:" in text and "could not connect to 127.0.0.1:" in text
    assert "activate it with replay" in text


def test_notices_are_not_mailed_without_an_address(opener: Opener, acme: NewAccount,
                                                   smtp_server: SmtpServer) -> None:
    runtime = opener(**smtp(smtp_server))
    destination = add_email(runtime, acme.id)

    assert notify_deactivated(runtime, destination) is False
    assert notify_deactivated(runtime, 999_999) is False
    assert smtp_server.messages == []


def test_a_failing_notice_is_logged_and_never_raised(opener: Opener, acme: NewAccount,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    runtime = opener(smtp_host="127.0.0.1", smtp_port=free_port())
    with runtime.sessions.begin() as session:
        set_notice_address(session, acme.id, "owner@example.com")
    destination = add_email(runtime, acme.id)

    with caplog.at_level(logging.WARNING, logger="gateway.notices"):
        assert notify_deactivated(runtime, destination) is False

    assert "could not mail the deactivation notice" in caplog.text and "connection refused" in caplog.text
