"""Email delivery against a real SMTP server: what the recipient gets, and how failures read."""
from __future__ import annotations

import csv
import gzip
import io
from email.message import EmailMessage

import pytest

from gateway.errors import DeliveryError
from gateway.events import formats
from gateway.events import model as ev
from sinks.email import EmailSink, SmtpSettings
from tests.support.net import free_port
from tests.support.smtp import SmtpServer

EVENTS = ev.validate_all(
    [
        {"id": "e1", "type": "OPEN", "occurred_at": "2024-05-01T10:00:00Z", "email": "a@example.com"},
        {"id": "e2", "type": "OPEN", "occurred_at": "2024-05-01T09:00:00Z", "email": "b@example.com"},
        {"id": "e3", "type": "CLICK", "occurred_at": "2024-05-02T08:30:00+02:00", "email": "c@example.com",
         "url": "https://example.com/a,b", "data": {"note": 'says "hi"\nthere'}},
        {"id": "e4", "type": "SMSFAILED", "occurred_at": "2024-05-01T12:00:00Z", "phone": "+4915112345678",
         "error": "unreachable"},
    ]
)


def settings(server: SmtpServer, **changes: object) -> SmtpSettings:
    values: dict = dict(
        host=server.host, port=server.port, security="starttls" if server.user else "none",
        username=server.user, password=server.password, sender="gateway@eventgw.test",
        timeout=2.0, ca_file=server.ca_file,
    )
    return SmtpSettings(**{**values, **changes})


def sink(server: SmtpServer, **changes: object) -> EmailSink:
    return EmailSink(settings(server, **changes), recipients=["ops@example.com", "crm@example.com"], account="acme")


def attachment(message: EmailMessage) -> tuple[str, str, bytes]:
    (part,) = list(message.iter_attachments())
    return part.get_filename() or "", part.get_content_type(), part.get_payload(decode=True)


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def test_batch_arrives_with_summary_and_csv(smtp_server: SmtpServer) -> None:
    receipt = sink(smtp_server).deliver("batch-7", EVENTS)

    (message,) = smtp_server.messages
    assert message["Subject"] == "[eventgw] 4 events for acme"
    assert message["To"] == "ops@example.com, crm@example.com"
    assert message["Message-ID"] == "<eventgw.batch-7@eventgw.test>"
    body = message.get_body(("plain",)).get_content()
    assert "Account: acme" in body
    assert "Period: 2024-05-01T09:00:00Z to 2024-05-02T06:30:00Z" in body
    assert [line.split() for line in body.splitlines() if line.startswith("  ")] == [
        ["OPEN", "2"], ["CLICK", "1"], ["SMSFAILED", "1"]
    ]
    name, content_type, data = attachment(message)
    assert (name, content_type) == ("events-batch-7.csv", "text/csv")
    assert rows(data) == [list(formats.CSV_COLUMNS)] + [formats.to_csv_row(e) for e in EVENTS]
    assert smtp_server.envelopes == [("gateway@eventgw.test", ["ops@example.com", "crm@example.com"])]
    assert receipt.status == 250 and "queued as Q1" in receipt.excerpt


def test_a_retry_has_the_same_message_id(smtp_server: SmtpServer) -> None:
    email = sink(smtp_server)
    email.deliver("batch-7", EVENTS)
    email.deliver("batch-7", EVENTS)

    first, second = smtp_server.messages
    assert first["Message-ID"] == second["Message-ID"]


def test_large_attachment_is_gzipped(smtp_server: SmtpServer) -> None:
    email = EmailSink(settings(smtp_server), recipients=["ops@example.com"], account="acme", gzip_threshold=100)
    email.deliver("batch-8", EVENTS)

    name, content_type, data = attachment(smtp_server.messages[0])
    assert (name, content_type) == ("events-batch-8.csv.gz", "application/gzip")
    assert rows(gzip.decompress(data))[1:] == [formats.to_csv_row(e) for e in EVENTS]


def test_implicit_tls(smtps_server: SmtpServer) -> None:
    sink(smtps_server, security="tls").deliver("batch-9", EVENTS)

    assert len(smtps_server.messages) == 1


def test_plain_server_without_login(smtp_plain_server: SmtpServer) -> None:
    sink(smtp_plain_server).deliver("batch-9", EVENTS)

    assert len(smtp_plain_server.messages) == 1


def test_notice_is_plain_text(smtp_server: SmtpServer) -> None:
    sink(smtp_server).send_notice("[eventgw] destination paused", "Too many failures.\n")

    (message,) = smtp_server.messages
    assert message["Subject"] == "[eventgw] destination paused"
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Too many failures.\n"


def test_wrong_password(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryError, match="refused the login as 'mailer': 535") as caught:
        sink(smtp_server, password="wrong").deliver("batch-1", EVENTS)
    assert caught.value.retryable and smtp_server.messages == []


def test_login_without_tls_is_explained(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryError, match="check the security and login settings"):
        sink(smtp_server, security="none").deliver("batch-1", EVENTS)


def test_untrusted_certificate(smtp_server: SmtpServer) -> None:
    with pytest.raises(DeliveryError, match="TLS certificate of 127.0.0.1:.* not accepted"):
        sink(smtp_server, ca_file=None).deliver("batch-1", EVENTS)


def test_every_recipient_refused(smtp_plain_server: SmtpServer) -> None:
    email = EmailSink(settings(smtp_plain_server), recipients=["nobody@example.com"], account="acme")
    with pytest.raises(DeliveryError, match="refused every recipient .nobody@example.com: 550"):
        email.deliver("batch-1", EVENTS)


def test_one_recipient_refused_is_noted(smtp_plain_server: SmtpServer) -> None:
    email = EmailSink(settings(smtp_plain_server), recipients=["nobody@example.com", "ops@example.com"], account="a")
    receipt = email.deliver("batch-1", EVENTS)

    assert "refused: nobody@example.com" in receipt.detail
    assert smtp_plain_server.envelopes[0][1] == ["ops@example.com"]


def test_server_down() -> None:
    port = free_port()
    email = EmailSink(
        SmtpSettings(host="127.0.0.1", port=port, security="none", sender="g@eventgw.test", timeout=1),
        recipients=["ops@example.com"], account="acme",
    )
    with pytest.raises(DeliveryError, match=f"connection refused by 127.0.0.1:{port}") as caught:
        email.deliver("batch-1", EVENTS)
    assert caught.value.retryable


def test_bad_settings_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="unknown SMTP security"):
        SmtpSettings(host="mx", security="ssl", sender="g@eventgw.test")
    with pytest.raises(ValueError, match="recipient"):
        EmailSink(SmtpSettings(host="mx", sender="g@eventgw.test"), recipients=[], account="acme")
    with pytest.raises(KeyError):
        EmailSink(SmtpSettings(host="mx", sender="g@x.test"), recipients=["a@x.test"], account="a",
                  subject_template="{counts}")
