"""Destination kinds, their settings, and what each delivers through: a sink (push) or a file target (export)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.store.models import Account, Destination
from sinks.email import EmailSink, SmtpSettings
from sinks.ftp import FileTarget
from sinks.http import HttpSink

KINDS = ("pull", "http", "email", "ftp", "sftp")
# Kinds the dispatcher delivers batch by batch; pull is collected by clients, and file
# destinations are uploaded per period by the exporter.
PUSH_KINDS = ("http", "email")
FILE_KINDS = ("ftp", "sftp")
DEFAULT_SUBJECT = "[eventgw] {count} events for {account}"
DEFAULT_FILE_TIMEOUT = 30.0


def smtp_settings(settings: Settings) -> SmtpSettings:
    """The SMTP server every email destination and operational notice uses."""
    return SmtpSettings(host=settings.smtp_host, port=settings.smtp_port, security=settings.smtp_security,
                        username=settings.smtp_username or None, password=settings.smtp_password or None,
                        sender=settings.smtp_sender, verify_tls=settings.smtp_verify_tls,
                        ca_file=settings.smtp_ca_file or None)


def sink_for(destination: Destination, settings: Settings, *, account: str | None = None) -> Any:
    """The sink that delivers to a push destination, configured from its settings.

    An email names the account (``account``, else looked up through the destination's session).
    """
    options: dict[str, Any] = destination.settings
    if destination.kind == "http":
        auth = options.get("basic_auth")
        return HttpSink(
            options["url"], format=options.get("format", "json"), secrets=options.get("secrets", ()),
            headers=options.get("headers") or {}, basic_auth=(auth[0], auth[1]) if auth else None,
            timeout=float(options.get("timeout_seconds") or settings.http_timeout_seconds),
            verify_tls=bool(options.get("verify_tls", True)),
            max_retry_after=settings.max_retry_after_seconds,
            max_bytes=int(options["batch_max_bytes"]) if options.get("batch_max_bytes") else None,
        )
    if destination.kind == "email":
        if account is None:
            session = Session.object_session(destination)
            account = session.scalar(select(Account.name).where(Account.id == destination.account_id)) \
                if session else ""
        return EmailSink(smtp_settings(settings), recipients=options["recipients"], account=account or "",
                         subject_template=options.get("subject") or DEFAULT_SUBJECT,
                         gzip_threshold=int(options.get("gzip_threshold", 1_000_000)))
    raise ValueError(f"destination kind {destination.kind!r} is not delivered by the dispatcher")


def file_target(destination: Destination) -> FileTarget:
    """Where a file destination's uploads go, from its settings (kind ``ftp`` is FTP or FTPS, ``sftp`` SFTP)."""
    options: dict[str, Any] = destination.settings
    if destination.kind not in FILE_KINDS:
        raise ValueError(f"destination kind {destination.kind!r} does not upload files")
    return FileTarget(
        protocol="sftp" if destination.kind == "sftp" else options.get("protocol", "ftp"),
        host=options["host"], port=options.get("port"), username=options["username"],
        password=options.get("password"), private_key=options.get("private_key"),
        private_key_passphrase=options.get("private_key_passphrase"),
        remote_dir=options.get("remote_dir") or ".", known_hosts=options.get("known_hosts") or "",
        verify_tls=bool(options.get("verify_tls", True)), ca_file=options.get("ca_file"),
        timeout=float(options.get("timeout_seconds") or DEFAULT_FILE_TIMEOUT),
    )
