"""Webhook management: create, list, change, verify, activate (with replay), replay a window, delete.

A webhook is an ``http`` destination of the account plus the routes of its event types.
The checks and operations webhooks share with the other destinations (event types, number
ranges, probing, activation, the attempt log, deletion) are ``gateway.destinations.management``'s.
Every function works only on the caller's account, inside the caller's transaction, except
those that reach the endpoint (``create_verified``, ``verify``): they take a session factory
and hold no transaction while the endpoint answers.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.delivery.outcomes import batch_size
from gateway.destinations import management as admin
from gateway.destinations import routing
from gateway.destinations.kinds import sink_for
from gateway.errors import NotFound
from gateway.events import formats, model
from gateway.store import queue
from gateway.store.models import Destination, Event, Notice, utcnow
from sinks.http import FORMATS, generate_secret, parse_secret

MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 60.0
# Number settings: name, lowest, highest, whether it must be whole.
NUMBERS = (("batch_max_events", 1, 10_000, True), ("interval_seconds", 0, 86_400, False),
           ("batch_max_wait_seconds", 0, 86_400, False), ("batch_max_bytes", 1024, 100_000_000, True),
           ("timeout_seconds", MIN_TIMEOUT, MAX_TIMEOUT, False))
# What verifying a webhook reports (the webhook APIs have no ``detail``).
VERIFY_KEYS = ("ok", "status", "answer", "error")


def _check_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise admin.problem("url", "is required")
    try:
        return model.check_url(value)
    except ValueError as exc:
        raise admin.problem("url", str(exc)) from None


def _check_app(value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and len(value) <= 200):
        raise admin.problem("app", "must be a string of at most 200 characters")
    return value


def _check_settings(payload: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """Merge and validate the http settings a request gives over the current ones."""
    settings = dict(current)
    if "url" in payload or "url" not in settings:
        settings["url"] = _check_url(payload.get("url"))
    if "format" in payload:
        if payload["format"] not in FORMATS:
            raise admin.problem("format", f"{payload['format']!r} is not one of {', '.join(FORMATS)}")
        settings["format"] = payload["format"]
    settings.setdefault("format", "json")
    if "secret" in payload:
        secret = payload["secret"]
        try:
            parse_secret(secret if isinstance(secret, str) else "")
        except ValueError as exc:
            raise admin.problem("secret", str(exc)) from None
        # The previous secret keeps signing too during rotation, until the next change.
        settings["secrets"] = [secret] + [s for s in settings.get("secrets", [])[:1] if s != secret]
    settings.setdefault("secrets", [generate_secret()])
    if "headers" in payload:
        headers = payload["headers"] or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise admin.problem("headers", "must be an object of header names to string values")
        settings["headers"] = headers
    if "basic_auth" in payload:
        auth = payload["basic_auth"]
        if auth is not None and not (isinstance(auth, dict) and isinstance(auth.get("username"), str)
                                     and isinstance(auth.get("password"), str)):
            raise admin.problem("basic_auth", "must be {\"username\": ..., \"password\": ...} or null")
        settings["basic_auth"] = [auth["username"], auth["password"]] if auth else None
    for key, low, high, whole in NUMBERS:
        if key in payload:
            settings[key] = admin.check_number(payload, key, low, high, whole=whole)
    if "verify_tls" in payload:
        settings["verify_tls"] = bool(payload["verify_tls"])
    try:
        sink_for(Destination(kind="http", settings=settings), Settings()).close()
    except ValueError as exc:
        raise admin.problem("headers" if "header" in str(exc) else "url", str(exc)) from None
    return settings


def view(session: Session, destination: Destination, *, with_secret: bool = False) -> dict[str, Any]:
    """A webhook as the API shows it (the secret only when just created or asked for)."""
    options = destination.settings
    shown: dict[str, Any] = {
        "id": destination.id, "url": options["url"], "events": routing.types_of(session, destination.id),
        "format": options.get("format", "json"), "app": destination.app, "active": destination.active,
        "deactivated_at": formats.iso(destination.deactivated_at),
        "failing_since": formats.iso(destination.failing_since),
        "headers": options.get("headers") or {},
        "basic_auth": bool(options.get("basic_auth")),
        "batch_max_events": batch_size(destination),
        "interval_seconds": options.get("interval_seconds", 0),
        "batch_max_bytes": options.get("batch_max_bytes"),
        "created_at": formats.iso(destination.created_at),
    }
    if with_secret:
        shown["secret"] = options["secrets"][0]
    return shown


def get(session: Session, account_id: int, webhook_id: int) -> Destination:
    """The caller's webhook with this id; NotFound for any other (including other accounts')."""
    destination = session.get(Destination, webhook_id)
    if destination is None or destination.account_id != account_id or destination.kind != "http":
        raise NotFound("webhook", webhook_id)
    return destination


def prepare(account_id: int, payload: Mapping[str, Any]) -> Destination:
    """A validated webhook, not stored yet (so that it can be probed first); ValidationError names the field."""
    admin.check_events(payload.get("events"))
    settings = _check_settings(payload, {})
    return Destination(account_id=account_id, kind="http", name=settings["url"][:200],
                       app=_check_app(payload.get("app")), settings=settings)


def create_verified(sessions: sessionmaker[Session], account_id: int, payload: Mapping[str, Any],
                    settings: Settings, verify: bool) -> dict[str, Any]:
    """Create a webhook and return its view with the secret; with ``verify``, first send a test
    event and refuse a URL that does not answer 2xx (nothing is stored then)."""
    destination = prepare(account_id, payload)
    if verify:
        # Before the transaction: the store is not held while the endpoint takes its time.
        outcome = admin.probe(destination, settings)
        if not outcome["ok"]:
            raise admin.problem("url", f"the URL did not accept a test event: {outcome['error']}")
    with sessions.begin() as session:
        create(session, account_id, payload, destination)
        return view(session, destination, with_secret=True)


def create(session: Session, account_id: int, payload: Mapping[str, Any],
           prepared: Destination | None = None) -> Destination:
    """Store a webhook (``prepared`` from this payload, or made now) and route its event types to it.

    Routing a type to it takes the type out of the pull queue's defaults.
    """
    return admin.create(session, account_id, payload, prepared or prepare(account_id, payload))


def update_webhook(session: Session, account_id: int, webhook_id: int, payload: Mapping[str, Any]) -> Destination:
    """Change a webhook's URL, types, format, secret or options without deactivating it."""
    destination = get(session, account_id, webhook_id)
    destination.settings = _check_settings(payload, destination.settings)
    destination.name = destination.settings["url"][:200]
    if "app" in payload:
        destination.app = _check_app(payload["app"])
    if "events" in payload:
        routing.replace_routes(session, account_id, webhook_id, admin.check_events(payload["events"]))
    destination.updated_at = utcnow()
    return destination


def list_webhooks(session: Session, account_id: int, app: str | None = None, event: str | None = None
                  ) -> list[Destination]:
    """The caller's webhooks, optionally only those of an app or receiving an event type."""
    query = select(Destination).where(Destination.account_id == account_id, Destination.kind == "http")
    if app is not None:
        query = query.where(Destination.app == app)
    found = list(session.scalars(query.order_by(Destination.id)))
    if event is not None:
        try:
            wanted = model.normalize_type(event)
        except ValueError as exc:
            raise admin.problem("event", str(exc)) from None
        found = [d for d in found if wanted in routing.types_of(session, d.id)]
    return found


def delete_webhook(session: Session, account_id: int, webhook_id: int) -> None:
    """Delete a webhook; its types go back to the pull queue if nothing else receives them."""
    admin.remove(session, get(session, account_id, webhook_id))


def verify(sessions: sessionmaker[Session], account_id: int, webhook_id: int, settings: Settings) -> dict[str, Any]:
    """Send a test event to the webhook now and report what it answered.

    ``sessions`` may be read-only: the webhook is only read, and the session is closed
    before the test event goes out, so a slow endpoint holds nothing up.
    """
    with sessions() as session:
        destination = get(session, account_id, webhook_id)
    outcome = admin.probe(destination, settings)
    return {key: outcome[key] for key in VERIFY_KEYS}


def activate(session: Session, account_id: int, webhook_id: int, replay: bool) -> dict[str, Any]:
    """Activate a (deactivated) webhook; with ``replay`` what accumulated is delivered, else dropped."""
    return admin.activate(session, get(session, account_id, webhook_id), replay)


def replay(session: Session, account_id: int, webhook_id: int, since: datetime, until: datetime) -> int:
    """Queue again every event of the webhook's types that occurred in [since, until); returns how many."""
    if since >= until:
        raise admin.problem("since", "must be before until")
    get(session, account_id, webhook_id)
    now = utcnow()
    types = routing.types_of(session, webhook_id)
    window = and_(Event.account_id == account_id, Event.type.in_(types), Event.occurred_at >= since,
                  Event.occurred_at < until)
    return queue.requeue_events(session, webhook_id, window, now)


def attempts(session: Session, account_id: int, webhook_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The webhook's most recent delivery attempts, newest first."""
    return admin.attempts(session, get(session, account_id, webhook_id).id, limit)


def notices(session: Session, account_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The account's operational notices (deactivations, activations), newest first."""
    rows = session.scalars(select(Notice).where(Notice.account_id == account_id)
                           .order_by(Notice.id.desc()).limit(max(1, min(limit, 1000))))
    return [{"id": n.id, "created_at": formats.iso(n.created_at), "kind": n.kind, "destination_id": n.destination_id,
             "message": n.message} for n in rows]
