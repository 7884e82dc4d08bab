"""Management of email and file (FTP, FTPS, SFTP) destinations: create, list, change, test, activate, delete.

Such a destination is a destination of the account plus the routes of its event types,
as a webhook is (``gateway/destinations/webhooks.py``). The checks and operations that do not depend
on the kind (event types, number ranges, probing, activation, the attempt log) live here
once. Every function works only on the caller's account, inside the caller's transaction,
except those that reach the destination (``create_tested``, ``check_now``): they open their
own sessions and hold no transaction while it answers.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import paramiko
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.delivery.export import FilePlan
from gateway.destinations import routing
from gateway.destinations.kinds import DEFAULT_SUBJECT, FILE_KINDS, file_target, sink_for
from gateway.errors import DeliveryError, NotFound, Problem, ValidationError
from gateway.events import formats, model
from gateway.notices import check_address
from gateway.runtime import Runtime
from gateway.store import queue
from gateway.store.models import Account, Attempt, Destination, Notice, utcnow
from sinks.ftp import DEFAULT_PORTS, known_host_entries, load_private_key, uploader_for

MANAGED_KINDS = ("email", "ftp", "sftp")
SECRETS = ("password", "private_key", "private_key_passphrase")
MAX_RECIPIENTS = 50
EMAIL_SETTINGS = ("recipients", "subject", "interval_seconds", "batch_max_events", "gzip_threshold")
FILE_SETTINGS = ("host", "port", "username", "password", "remote_dir", "timeout_seconds",
                 "period", "at", "file_name", "line_format", "gzip")
KIND_SETTINGS = {
    "email": EMAIL_SETTINGS,
    "ftp": (*FILE_SETTINGS, "protocol", "verify_tls", "ca_file"),
    "sftp": (*FILE_SETTINGS, "private_key", "private_key_passphrase", "known_hosts"),
}
# Keys of a create or change request that are not settings.
REQUEST_KEYS = ("kind", "events", "test")


def problem(field: str, message: str) -> ValidationError:
    """A ValidationError about one field of a management request."""
    return ValidationError([Problem(None, field, message)])


def check_events(value: Any) -> list[str]:
    """The event types a destination receives: a non-empty list of known types."""
    if not isinstance(value, list):
        raise problem("events", "must be a non-empty list of event types")
    try:
        types = model.parse_types(value)
    except ValueError as exc:
        raise problem("events", str(exc)) from None
    if not types:  # parse_types skips blank names, so [""] would route nothing
        raise problem("events", "must be a non-empty list of event types")
    return types


def check_number(payload: Mapping[str, Any], key: str, low: float, high: float, *,
                 whole: bool = False) -> float | int:
    """``payload[key]`` as a number (with ``whole``, an int) from ``low`` to ``high``; ValidationError naming
    ``key`` otherwise."""
    value = payload[key]
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise problem(key, f"must be a {'whole ' if whole else ''}number from {low:g} to {high:g}")
    return value


def _check_text(payload: Mapping[str, Any], key: str, *, required: bool = False, limit: int = 1000) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise problem(key, "is required")
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise problem(key, f"must be a string of at most {limit} characters")
    return value


def _check_flag(payload: Mapping[str, Any], key: str) -> bool:
    value = payload[key]
    if not isinstance(value, bool):
        raise problem(key, "must be true or false")
    return value


def _email_settings(payload: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    settings = dict(current)
    if "recipients" in payload or "recipients" not in settings:
        recipients = payload.get("recipients")
        if isinstance(recipients, str):
            recipients = [recipients]
        if not isinstance(recipients, list) or not recipients or len(recipients) > MAX_RECIPIENTS:
            raise problem("recipients", f"must be a list of 1 to {MAX_RECIPIENTS} email addresses")
        settings["recipients"] = list(dict.fromkeys(check_address(r, "recipients") for r in recipients))
    if "subject" in payload:
        subject = _check_text(payload, "subject", limit=200)
        try:
            (subject or DEFAULT_SUBJECT).format(count=0, account="")
        except (KeyError, IndexError, ValueError):
            raise problem("subject", "may use only the placeholders {count} and {account}") from None
        settings["subject"] = subject
    for key, low, high, whole in (("interval_seconds", 0, 86_400, False), ("batch_max_events", 1, 10_000, True),
                                  ("gzip_threshold", 0, 50_000_000, True)):
        if key in payload:
            settings[key] = check_number(payload, key, low, high, whole=whole)
    settings.setdefault("batch_max_events", 10_000)
    return settings


def _file_settings(kind: str, payload: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    settings = dict(current)
    for key in ("host", "username"):
        if key in payload or key not in settings:
            settings[key] = _check_text(payload, key, required=True, limit=255)
    if any(c.isspace() or c in "/@" for c in settings["host"]):
        raise problem("host", f"{settings['host']!r} is not a host name or address")
    if kind == "ftp" and "protocol" in payload:
        if payload["protocol"] not in ("ftp", "ftps"):
            hint = " (SFTP destinations have kind sftp)" if payload["protocol"] == "sftp" else ""
            raise problem("protocol", f"{payload['protocol']!r} is not one of ftp, ftps{hint}")
        settings["protocol"] = payload["protocol"]
    for key in ("remote_dir", "file_name", *SECRETS, "known_hosts", "ca_file"):
        if key in payload and key in KIND_SETTINGS[kind]:
            settings[key] = _check_text(payload, key, limit=20_000)
            if settings[key] is None:
                del settings[key]
    if "port" in payload:
        settings["port"] = check_number(payload, "port", 1, 65_535, whole=True) if payload["port"] is not None else None
    if "timeout_seconds" in payload:
        settings["timeout_seconds"] = check_number(payload, "timeout_seconds", 1, 300)
    for key in ("period", "at", "line_format"):
        if key in payload:
            settings[key] = payload[key]
            if payload[key] is None:
                del settings[key]
    for key in ("gzip", "verify_tls"):
        if key in payload and key in KIND_SETTINGS[kind]:
            settings[key] = _check_flag(payload, key)
    FilePlan.from_settings(settings)
    if settings.get("ca_file") and not os.path.isfile(settings["ca_file"]):
        raise problem("ca_file", f"{settings['ca_file']!r} is not a file on the gateway")
    if kind == "sftp":
        _check_ssh(settings)
    return settings


def _check_ssh(settings: dict[str, Any]) -> None:
    if not settings.get("password") and not settings.get("private_key"):
        raise problem("password", "an SFTP destination needs a password or a private_key")
    if settings.get("private_key"):
        try:
            load_private_key(settings["private_key"], settings.get("private_key_passphrase"))
        except ValueError as exc:
            raise problem("private_key", str(exc)) from None
    text = settings.get("known_hosts")
    if not text:
        raise problem("known_hosts", "is required: the server's known_hosts line (ssh-keyscan prints it)")
    try:
        entries = known_host_entries(text)
    except ValueError as exc:
        raise problem("known_hosts", str(exc)) from None
    keys = paramiko.HostKeys()
    for hostname, key in entries:
        keys.add(hostname, key.get_name(), key)
    port = settings.get("port") or DEFAULT_PORTS["sftp"]
    name = settings["host"] if port == DEFAULT_PORTS["sftp"] else f"[{settings['host']}]:{port}"
    if keys.lookup(name) is None:
        raise problem("known_hosts", f"has no key for {name}")


def _settings(kind: str, payload: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a request's settings over the current ones; ValidationError naming the first bad field."""
    allowed = KIND_SETTINGS[kind]
    for key in payload:
        if key not in allowed and key not in REQUEST_KEYS:
            raise problem(key, f"is not a setting of {kind} destinations (they have {', '.join(allowed)})")
    return _email_settings(payload, current) if kind == "email" else _file_settings(kind, payload, current)


def _name(destination: Destination) -> str:
    if destination.kind == "email":
        return ", ".join(destination.settings["recipients"])[:200]
    return file_target(destination).url(FilePlan.from_settings(destination.settings).file_name)[:200]


def view(session: Session, destination: Destination) -> dict[str, Any]:
    """A destination as the API shows it: its settings with every secret left out (only whether it is set)."""
    options = destination.settings
    shown: dict[str, Any] = {
        "id": destination.id, "kind": destination.kind, "name": destination.name,
        "events": routing.types_of(session, destination.id), "active": destination.active,
        "deactivated_at": formats.iso(destination.deactivated_at),
        "failing_since": formats.iso(destination.failing_since), "created_at": formats.iso(destination.created_at),
    }
    if destination.kind == "email":
        shown.update(recipients=options["recipients"], subject=options.get("subject") or DEFAULT_SUBJECT,
                     interval_seconds=options.get("interval_seconds", 0),
                     batch_max_events=options.get("batch_max_events", 10_000),
                     gzip_threshold=options.get("gzip_threshold", 1_000_000))
        return shown
    target, plan = file_target(destination), FilePlan.from_settings(options)
    shown.update(protocol=target.protocol, host=target.host, port=target.port or DEFAULT_PORTS[target.protocol],
                 username=target.username, remote_dir=target.remote_dir, period=plan.period,
                 file_name=plan.file_name, line_format=plan.line_format, gzip=plan.gzip,
                 timeout_seconds=target.timeout, has_password=bool(target.password))
    if plan.period == "daily":
        shown["at"] = plan.at.strftime("%H:%M")
    if target.protocol == "sftp":
        shown.update(known_hosts=target.known_hosts, has_private_key=bool(target.private_key))
    else:
        shown.update(verify_tls=target.verify_tls, ca_file=target.ca_file)
    return shown


def get(session: Session, account_id: int, destination_id: int) -> Destination:
    """The caller's email or file destination with this id; NotFound for any other (including other accounts')."""
    destination = session.get(Destination, destination_id)
    if destination is None or destination.account_id != account_id or destination.kind not in MANAGED_KINDS:
        raise NotFound("destination", destination_id)
    return destination


def prepare(account_id: int, payload: Mapping[str, Any]) -> Destination:
    """A validated email or file destination, not stored yet (so that it can be tested first)."""
    kind = payload.get("kind")
    if kind not in MANAGED_KINDS:
        raise problem("kind", f"{kind!r} is not one of {', '.join(MANAGED_KINDS)} (webhooks: /api/v1/webhooks)")
    check_events(payload.get("events"))
    destination = Destination(account_id=account_id, kind=kind, settings=_settings(kind, payload, {}))
    destination.name = _name(destination)
    return destination


def create(session: Session, account_id: int, payload: Mapping[str, Any],
           prepared: Destination | None = None) -> Destination:
    """Store a destination (``prepared`` from this payload, or made now) and route its event types to it,
    taking them out of the pull queue's defaults."""
    destination = prepared or prepare(account_id, payload)
    session.add(destination)
    session.flush()
    routing.add_routes(session, account_id, destination.id, check_events(payload.get("events")))
    return destination


def create_tested(runtime: Runtime, account_id: int, payload: Mapping[str, Any], test: bool) -> dict[str, Any]:
    """Create a destination and return its view; with ``test``, first test it and refuse one that
    fails (nothing is stored then)."""
    destination = prepare(account_id, payload)
    if test:
        # Before the transaction: the store is not held while the server takes its time.
        outcome = probe(destination, runtime.settings, _account_name(runtime, account_id))
        if not outcome["ok"]:
            raise problem("test", f"the destination failed its test: {outcome['error']}")
    with runtime.sessions.begin() as session:
        create(session, account_id, payload, destination)
        return view(session, destination)


def check_now(runtime: Runtime, account_id: int, destination_id: int) -> dict[str, Any]:
    """Test one of the caller's destinations now (no transaction is open meanwhile)."""
    with runtime.read_sessions() as session:
        destination = get(session, account_id, destination_id)
    return probe(destination, runtime.settings, _account_name(runtime, account_id))


def _account_name(runtime: Runtime, account_id: int) -> str:
    with runtime.read_sessions() as session:
        return session.scalar(select(Account.name).where(Account.id == account_id)) or ""


def change(session: Session, account_id: int, destination_id: int, payload: Mapping[str, Any]) -> Destination:
    """Change a destination's settings or event types (its kind stays); secrets not given are kept."""
    destination = get(session, account_id, destination_id)
    if "kind" in payload and payload["kind"] != destination.kind:
        raise problem("kind", "cannot be changed; create a new destination instead")
    destination.settings = _settings(destination.kind, payload, destination.settings)
    destination.name = _name(destination)
    if "events" in payload:
        routing.replace_routes(session, account_id, destination_id, check_events(payload["events"]))
    destination.updated_at = utcnow()
    return destination


def list_destinations(session: Session, account_id: int, kind: str | None = None) -> list[Destination]:
    """The caller's email and file destinations, optionally of one kind."""
    if kind is not None and kind not in MANAGED_KINDS:
        raise problem("kind", f"{kind!r} is not one of {', '.join(MANAGED_KINDS)}")
    kinds = [kind] if kind else list(MANAGED_KINDS)
    return list(session.scalars(select(Destination).where(Destination.account_id == account_id,
                                                          Destination.kind.in_(kinds)).order_by(Destination.id)))


def remove(session: Session, destination: Destination) -> None:
    """Delete a destination; its types go back to the pull queue if nothing else receives them."""
    routing.remove_routes(session, destination.account_id, destination.id)
    session.delete(destination)
    session.flush()


def probe(destination: Destination, settings: Settings, account: str = "") -> dict[str, Any]:
    """Check a destination now: a push destination gets one test event, a file destination a test file
    (uploaded and removed). ``ok`` says whether it went through; nothing is recorded. ``account``
    names the account in a test email."""
    now = utcnow()
    try:
        if destination.kind in FILE_KINDS:
            receipt = uploader_for(file_target(destination)).probe()
        else:
            sample: model.Event = {
                "id": f"test-{int(now.timestamp())}", "type": "OPEN", "occurred_at": now,
                "email": "test@example.com", "message_id": "test", "message_name": "eventgw test event",
                "data": {"test": True},
            }
            sink = sink_for(destination, settings, account=account)
            try:
                receipt = sink.deliver(f"msg_test_{int(now.timestamp() * 1000)}", [sample])
            finally:
                if hasattr(sink, "close"):
                    sink.close()
    except DeliveryError as exc:
        return {"ok": False, "status": exc.status, "answer": exc.excerpt, "detail": None, "error": str(exc)}
    return {"ok": True, "status": receipt.status, "answer": receipt.excerpt, "detail": receipt.detail, "error": None}


def activate(session: Session, destination: Destination, replay: bool) -> dict[str, Any]:
    """Activate a (deactivated) destination; with ``replay`` what accumulated is delivered, else dropped.

    A file destination's rows keep the period they arrived in: only periods already cut are
    retried at once, the others are cut as usual.
    """
    now = utcnow()
    dropped = 0
    if replay:
        queue.requeue_pending(session, destination.id, now, assigned_only=destination.kind in FILE_KINDS)
    elif not destination.active:
        dropped = queue.drop_pending(session, destination.id, now)
    destination.active = True
    destination.deactivated_at = None
    destination.failing_since = None
    destination.consecutive_failures = 0
    destination.paused_until = None
    label = "webhook" if destination.kind == "http" else f"{destination.kind} destination"
    session.add(Notice(account_id=destination.account_id, destination_id=destination.id, kind="activated",
                       message=f"{label} #{destination.id} activated"
                       + (" with replay" if replay else "")
                       + (f"; {dropped} accumulated events dropped" if dropped else "")))
    return {"id": destination.id, "active": True, "queued": queue.count_pending(session, destination.id),
            "dropped": dropped}


def attempts(session: Session, destination_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """A destination's most recent delivery attempts, newest first."""
    rows = session.scalars(select(Attempt).where(Attempt.destination_id == destination_id)
                           .order_by(Attempt.id.desc()).limit(max(1, min(limit, 1000))))
    return [{"message_id": a.message_id, "started_at": formats.iso(a.started_at), "duration_ms": a.duration_ms,
             "events": a.event_count, "outcome": a.outcome, "status": a.status, "detail": a.detail} for a in rows]

