"""Email delivery: one message per batch, a short summary and the events as a CSV attachment, over SMTP.

The SMTP relay is the operator's (from configuration), so the outbound address policy does not
apply to it; each message must still be sent within the delivery deadline (``sinks.deadline``).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import smtplib
import socket
import ssl
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from gateway.errors import DeliveryError
from gateway.events import formats
from gateway.events import model as ev
from gateway.events.model import Event
from sinks import deadline
from sinks.base import Receipt, excerpt, network_error, tls_context

SECURITY_MODES = ("none", "starttls", "tls")
_MSGID_SAFE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,100}$")


@dataclass(frozen=True, kw_only=True)
class SmtpSettings:
    """How to reach the SMTP server; ``security`` is ``none``, ``starttls`` or ``tls`` (implicit TLS, port 465).

    ``timeout`` bounds each wait for the server; ``deadline`` a whole small message (a large one gets
    more, see ``deadline.for_transfer``).
    """

    host: str
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str
    timeout: float = 30.0
    deadline: float = 30.0
    verify_tls: bool = True
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"unknown SMTP security {self.security!r}; expected one of {', '.join(SECURITY_MODES)}")


class _SMTP(smtplib.SMTP):
    """Remembers the server's answer to DATA (it names the queue id), which ``sendmail`` throws away;
    its connection is watched by the running attempt's deadline."""

    data_reply: tuple[int, bytes] = (0, b"")

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        return deadline.watch(sock)

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_reply = super().data(msg)
        return self.data_reply


class _SMTPS(_SMTP, smtplib.SMTP_SSL):
    """``_SMTP`` over implicit TLS."""


DEFAULT_SUBJECT = "[eventgw] {count} events for {account}"
# Attachments larger than this are sent gzip-compressed.
DEFAULT_GZIP_THRESHOLD = 1_000_000


class EmailSink:
    """Mails each batch to fixed recipients."""

    def __init__(
        self,
        smtp: SmtpSettings,
        *,
        recipients: Sequence[str],
        account: str,
        subject_template: str = DEFAULT_SUBJECT,
        gzip_threshold: int = DEFAULT_GZIP_THRESHOLD,
    ) -> None:
        if not recipients:
            raise ValueError("an email destination needs at least one recipient")
        self.smtp = smtp
        self.recipients = list(recipients)
        self.account = account
        self.subject_template = subject_template
        self.gzip_threshold = gzip_threshold
        subject_template.format(count=0, account=account)  # a bad template fails here, not at delivery

    def deliver(self, message_id: str, events: Sequence[Event]) -> Receipt:
        """Send the batch as one message whose Message-ID is derived from ``message_id``."""
        message = self._message(self.subject_template.format(count=len(events), account=self.account), message_id)
        message.set_content(summary(self.account, events))
        data = csv_bytes(events)
        if len(data) > self.gzip_threshold:
            data = gzip.compress(data, mtime=0)
            message.add_attachment(data, maintype="application", subtype="gzip", filename=f"events-{message_id}.csv.gz")
        else:
            message.add_attachment(data, maintype="text", subtype="csv", filename=f"events-{message_id}.csv")
        return self._send(message, len(data))

    def send_notice(self, subject: str, body: str) -> Receipt:
        """Send a plain-text operational notice (a destination deactivated, say) to the recipients."""
        message = self._message(subject, None)
        message.set_content(body)
        return self._send(message)

    def _message(self, subject: str, message_id: str | None) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(timezone.utc))
        if message_id is not None:
            message["Message-ID"] = message_id_header(message_id, self.smtp.sender)
        return message

    def _send(self, message: EmailMessage, size: int = 0) -> Receipt:
        """Send ``message`` (about ``size`` bytes of attachment) within the deadline."""
        peer = f"{self.smtp.host}:{self.smtp.port}"
        # Base64 makes an attachment a third larger on the wire.
        with deadline.Deadline(deadline.for_transfer(self.smtp.deadline, size * 4 // 3)) as limit:
            try:
                return self._exchange(message, peer)
            except DeliveryError as exc:
                if limit.expired:
                    raise DeliveryError(
                        f"{peer} did not take the message within the delivery deadline of {round(limit.seconds, 1):g} s"
                    ) from exc
                raise

    def _exchange(self, message: EmailMessage, peer: str) -> Receipt:
        settings = self.smtp
        try:
            with self._connect() as client:
                if settings.username:
                    client.login(settings.username, settings.password or "")
                refused = client.send_message(message, settings.sender, self.recipients)
                code, answer = client.data_reply
        except smtplib.SMTPAuthenticationError as exc:
            raise _error(f"{peer} refused the login as {settings.username!r}", exc) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            refusals = "; ".join(f"{rcpt}: {code} {excerpt(text)}" for rcpt, (code, text) in exc.recipients.items())
            raise DeliveryError(f"{peer} refused every recipient ({refusals})") from exc
        except smtplib.SMTPSenderRefused as exc:
            raise _error(f"{peer} refused the sender {settings.sender!r}", exc) from exc
        except smtplib.SMTPResponseException as exc:
            raise _error(f"{peer} refused the message", exc) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"{peer}: {exc} (check the security and login settings)") from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise DeliveryError(f"{peer} closed the connection: {exc}") from exc
        except OSError as exc:
            raise network_error(exc, peer, settings.timeout, trusted=True) from exc
        detail = f"mailed to {', '.join(self.recipients)} via {peer}"
        if refused:
            detail += "; refused: " + ", ".join(sorted(refused))
        return Receipt(code, excerpt(answer), detail)

    def _connect(self) -> _SMTP | _SMTPS:
        settings = self.smtp
        if settings.security == "tls":
            return _SMTPS(settings.host, settings.port, timeout=settings.timeout, context=self._tls_context())
        client = _SMTP(settings.host, settings.port, timeout=settings.timeout)
        if settings.security == "starttls":
            try:
                client.starttls(context=self._tls_context())
            except BaseException:
                client.close()
                raise
        return client

    def _tls_context(self) -> ssl.SSLContext:
        return tls_context(self.smtp.ca_file, self.smtp.verify_tls)


def _error(message: str, exc: smtplib.SMTPResponseException) -> DeliveryError:
    answer = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return DeliveryError(f"{message}: {exc.smtp_code} {excerpt(answer)}", status=exc.smtp_code, excerpt=excerpt(answer))


def message_id_header(message_id: str, sender: str) -> str:
    """A Message-ID that is the same for every retry of a batch: ``<eventgw.<id>@<sender's domain>>``."""
    local = message_id if _MSGID_SAFE.match(message_id) else hashlib.sha256(message_id.encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2].strip("> ") or "eventgw.invalid"
    return f"<eventgw.{local}@{domain}>"


def csv_bytes(events: Sequence[Event]) -> bytes:
    """The events as the generic CSV (header row first), UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(formats.CSV_COLUMNS)
    writer.writerows(formats.to_csv_row(e) for e in events)
    return out.getvalue().encode("utf-8")


def summary(account: str, events: Sequence[Event]) -> str:
    """The plain-text body: account, the period the events cover, and how many of each type."""
    counts = Counter(e["type"] for e in events)
    lines = [f"Account: {account}", f"Events: {len(events)}"]
    if events:
        times = [e["occurred_at"] for e in events]
        lines.append(f"Period: {formats.iso(min(times))} to {formats.iso(max(times))}")
    lines += ["", "By type:"]
    lines += [f"  {etype:<12} {counts[etype]}" for etype in ev.ALL_TYPES if counts[etype]]
    lines += ["", "The events are attached as CSV."]
    return "\n".join(lines) + "\n"
