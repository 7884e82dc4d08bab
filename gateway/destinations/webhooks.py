"""Webhooks: ``http`` destinations, as /api/v1/webhooks and the typed SOAP service manage them.

What a webhook shares with the other destinations (checking and merging its settings, which
are ``HttpSettings``; routing, testing, activation, deletion, the attempt log) is
``gateway.destinations.management``'s. Here is what only webhooks have: the app they belong
to, a view with the secret, lists by app or event type, and replaying a window of events.
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
from gateway.destinations import management as admin
from gateway.destinations import outbound, routing
from gateway.destinations.checks import problem
from gateway.destinations.http import HttpSettings
from gateway.events import formats, model
from gateway.store import queue
from gateway.store.models import Destination, Event, utcnow

# What verifying a webhook reports (the webhook APIs have no ``detail``).
VERIFY_KEYS = ("ok", "status", "answer", "error")


def _check_app(value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and len(value) <= 200):
        raise problem("app", "must be a string of at most 200 characters")
    return value


def view(session: Session, destination: Destination, *, with_secret: bool = False) -> dict[str, Any]:
    """A webhook as the API shows it (the secret only when just created or asked for)."""
    settings = HttpSettings.from_stored(destination.settings)
    shown = settings.view()
    webhook: dict[str, Any] = {
        "id": destination.id, "url": shown.pop("url"), "events": routing.types_of(session, destination.id),
        "format": shown.pop("format"), "app": destination.app, "active": destination.active,
        "deactivated_at": formats.iso(destination.deactivated_at),
        "failing_since": formats.iso(destination.failing_since),
        **shown,
        "created_at": formats.iso(destination.created_at),
    }
    if with_secret:
        webhook["secret"] = settings.secret
    return webhook


def get(session: Session, account_id: int, webhook_id: int) -> Destination:
    """The caller's webhook with this id; NotFound for any other (including other accounts')."""
    return admin.find(session, account_id, webhook_id, (HttpSettings.kind,), "webhook")


def prepare(account_id: int, payload: Mapping[str, Any]) -> Destination:
    """A validated webhook, not stored yet (so that it can be probed first); ValidationError names the field."""
    destination = admin.build(account_id, HttpSettings.kind, payload)
    destination.app = _check_app(payload.get("app"))
    return destination


def create_verified(sessions: sessionmaker[Session], account_id: int, payload: Mapping[str, Any],
                    settings: Settings, verify: bool) -> dict[str, Any]:
    """Create a webhook and return its view with the secret; refuse a URL the outbound policy does not
    let the gateway reach, and with ``verify``, first send a test event and refuse a URL that does not
    answer 2xx (nothing is stored then)."""
    destination = prepare(account_id, payload)
    outbound.check_target(destination, settings)
    if verify:
        # Before the transaction: the store is not held while the endpoint takes its time.
        outcome = admin.probe(destination, settings)
        if not outcome["ok"]:
            raise problem("url", f"the URL did not accept a test event: {outcome['error']}")
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
    """Change a webhook's URL, types, format, secret or options without deactivating it (``outbound.check_change``
    first)."""
    destination = get(session, account_id, webhook_id)
    admin.reconfigure(destination, payload)
    if "app" in payload:
        destination.app = _check_app(payload["app"])
    admin.record_change(session, destination, payload)
    return destination


def list_webhooks(session: Session, account_id: int, app: str | None = None, event: str | None = None
                  ) -> list[Destination]:
    """The caller's webhooks, optionally only those of an app or receiving an event type."""
    query = select(Destination).where(Destination.account_id == account_id, Destination.kind == HttpSettings.kind)
    if app is not None:
        query = query.where(Destination.app == app)
    found = list(session.scalars(query.order_by(Destination.id)))
    if event is not None:
        try:
            wanted = model.normalize_type(event)
        except ValueError as exc:
            raise problem("event", str(exc)) from None
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
        raise problem("since", "must be before until")
    get(session, account_id, webhook_id)
    now = utcnow()
    types = routing.types_of(session, webhook_id)
    window = and_(Event.account_id == account_id, Event.type.in_(types), Event.occurred_at >= since,
                  Event.occurred_at < until)
    return queue.requeue_events(session, webhook_id, window, now)


def attempts(session: Session, account_id: int, webhook_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The webhook's most recent delivery attempts, newest first."""
    return admin.attempts(session, get(session, account_id, webhook_id).id, limit)
