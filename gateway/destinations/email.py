"""The ``email`` kind: its settings, their defaults and checks, its public view and its sink; the SMTP server."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from gateway.config import Settings
from gateway.destinations.checks import check_address, check_keys, check_number, check_text, check_whole, problem
from gateway.limits import MAX_BATCH_EVENTS
from sinks.email import DEFAULT_GZIP_THRESHOLD, DEFAULT_SUBJECT, EmailSink, SmtpSettings

# A message carries as many events as a batch may hold: few, large messages, each with a CSV attachment.
DEFAULT_BATCH_EVENTS = MAX_BATCH_EVENTS
MAX_RECIPIENTS = 50


def smtp_settings(config: Settings) -> SmtpSettings:
    """The SMTP server every email destination and operational notice uses."""
    return SmtpSettings(host=config.smtp_host, port=config.smtp_port, security=config.smtp_security,
                        username=config.smtp_username or None, password=config.smtp_password or None,
                        sender=config.smtp_sender, verify_tls=config.smtp_verify_tls,
                        ca_file=config.smtp_ca_file or None, deadline=config.delivery_deadline_seconds)


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    """Who receives a destination's batches by email, and how. A setting left as None was never given:
    its default applies."""

    kind: ClassVar[str] = "email"
    # The settings a request may give, as the error for any other lists them.
    KEYS: ClassVar[tuple[str, ...]] = ("recipients", "subject", "interval_seconds", "batch_max_events",
                                       "gzip_threshold")

    recipients: tuple[str, ...]
    subject: str | None = None
    interval_seconds: float | None = None
    batch_max_events: int = DEFAULT_BATCH_EVENTS
    gzip_threshold: int | None = None

    @classmethod
    def parse(cls, payload: Mapping[str, Any], current: EmailSettings | None) -> EmailSettings:
        """The settings a create (``current`` None) or change request gives, over the current ones;
        ValidationError naming the first bad field, or a key that is not a setting."""
        check_keys(payload, cls.KEYS, cls.kind)
        changes: dict[str, Any] = {}
        if "recipients" in payload or current is None:
            recipients = payload.get("recipients")
            if isinstance(recipients, str):
                recipients = [recipients]
            if not isinstance(recipients, list) or not recipients or len(recipients) > MAX_RECIPIENTS:
                raise problem("recipients", f"must be a list of 1 to {MAX_RECIPIENTS} email addresses")
            changes["recipients"] = tuple(dict.fromkeys(check_address(r, "recipients") for r in recipients))
        if "subject" in payload:
            subject = check_text(payload, "subject", limit=200)
            try:
                (subject or DEFAULT_SUBJECT).format(count=0, account="")
            except (KeyError, IndexError, ValueError):
                raise problem("subject", "may use only the placeholders {count} and {account}") from None
            changes["subject"] = subject
        if "interval_seconds" in payload:
            changes["interval_seconds"] = check_number(payload, "interval_seconds", 0, 86_400)
        if "batch_max_events" in payload:
            changes["batch_max_events"] = check_whole(payload, "batch_max_events", 1, MAX_BATCH_EVENTS)
        if "gzip_threshold" in payload:
            changes["gzip_threshold"] = check_whole(payload, "gzip_threshold", 0, 50_000_000)
        return replace(current, **changes) if current else cls(**changes)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> EmailSettings:
        """The settings as the store holds them (checked when they were stored, so not again)."""
        return cls(recipients=tuple(stored["recipients"]), subject=stored.get("subject"),
                   interval_seconds=stored.get("interval_seconds"),
                   batch_max_events=stored.get("batch_max_events", DEFAULT_BATCH_EVENTS),
                   gzip_threshold=stored.get("gzip_threshold"))

    def stored(self) -> dict[str, Any]:
        """The settings as the store keeps them (JSON): the settings given, and the batch size."""
        shown: dict[str, Any] = {"recipients": list(self.recipients), "batch_max_events": self.batch_max_events}
        for key in ("subject", "interval_seconds", "gzip_threshold"):
            if (value := getattr(self, key)) is not None:
                shown[key] = value
        return shown

    def view(self) -> dict[str, Any]:
        """The settings as the API shows them, defaults filled in."""
        return {"recipients": list(self.recipients), "subject": self.subject or DEFAULT_SUBJECT,
                "interval_seconds": 0 if self.interval_seconds is None else self.interval_seconds,
                "batch_max_events": self.batch_max_events,
                "gzip_threshold": DEFAULT_GZIP_THRESHOLD if self.gzip_threshold is None else self.gzip_threshold}

    @property
    def name(self) -> str:
        """How lists name the destination: its recipients."""
        return ", ".join(self.recipients)[:200]

    @property
    def batch_limit(self) -> int:
        """Events per message at most."""
        return self.batch_max_events

    @property
    def interval(self) -> float:
        """Seconds between the starts of two rounds of messages at least (0: no pause)."""
        return float(self.interval_seconds or 0)

    @property
    def batch_wait(self) -> float:
        """Email batches never wait to fill up."""
        return 0.0

    def sink(self, config: Settings, account: str) -> EmailSink:
        """The sink that mails the batches, naming ``account`` in the subject and the text."""
        return EmailSink(smtp_settings(config), recipients=self.recipients, account=account,
                         subject_template=self.subject or DEFAULT_SUBJECT,
                         gzip_threshold=DEFAULT_GZIP_THRESHOLD if self.gzip_threshold is None else self.gzip_threshold)
