"""The management of destinations: what webhooks and the other kinds share, and the email and file destinations.

A destination is its kind's settings (``gateway.destinations.kinds``) plus the routes of its
event types. Creating, changing, testing, activating and deleting one, and its attempt log,
work alike for every kind and live here once; webhooks (``http`` destinations, served apart)
add what is theirs in ``gateway/destinations/webhooks.py``. Every function works only on the
caller's account, inside the caller's transaction, except those that reach the destination
(``create_tested``, ``check_now``, ``probe``): they hold no transaction while it answers.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.destinations import outbound, routing
from gateway.destinations.checks import check_events, problem
from gateway.destinations.email import EmailSettings
from gateway.destinations.http import HttpSettings
from gateway.destinations.kinds import FILE_KINDS, DestinationKind, file_settings, kind_named, settings_of, sink_for
from gateway.errors import DeliveryError, NotFound
from gateway.events import formats, model
from gateway.runtime import Runtime
from gateway.store import queue
from gateway.store.models import Account, Attempt, Destination, Notice, utcnow
from sinks.ftp import uploader_for

# The kinds of /api/v1/destinations: webhooks have their own API, and pull queues come with the account.
MANAGED_KINDS = (EmailSettings.kind, *FILE_KINDS)
# Keys of a create or change request that are not settings.
REQUEST_KEYS = ("kind", "events", "test")
# What a destination's view shows that no request sets.
VIEW_ONLY = ("id", "name", "active", "deactivated_at", "failing_since", "created_at")
# The fields a webhook's create request may give (a change request: all but ``verify``); the settings are
# ``HttpSettings``'s, the app and ``verify`` are handled by ``gateway.destinations.webhooks``.
WEBHOOK_FIELDS = ("events", "app", "verify", *HttpSettings.KEYS)
# The fields a create request for an email or file destination may give (a change request: all but ``test``);
# each kind refuses the settings of the others.
DESTINATION_FIELDS = tuple(dict.fromkeys(
    [*REQUEST_KEYS, *(key for kind in MANAGED_KINDS for key in kind_named(kind).KEYS)]))


def read_only(path: str) -> dict[str, str]:
    """What a destination's answer shows that no request sets, and what changes it (``path``: the
    destinations' or webhooks' REST path), for ``json_body``'s refusals."""
    return {**{name: "it is shown, not set" for name in VIEW_ONLY},
            "active": f"POST {path}/{{id}}/deactivate or /activate changes it"}


def request_fields(request: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a create request for an email or file destination may give: its kind's, or (when it names
    none of them) those of every kind."""
    kind = request.get("kind")
    return (*REQUEST_KEYS, *kind_named(kind).KEYS) if kind in MANAGED_KINDS else DESTINATION_FIELDS


def _settings_in(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in REQUEST_KEYS}


def _configure(destination: Destination, settings: DestinationKind) -> None:
    destination.settings = settings.stored()
    destination.name = settings.name


def build(account_id: int, kind: str, payload: Mapping[str, Any]) -> Destination:
    """A destination of ``kind`` as a create request describes it, checked but not stored yet (so that it
    can be tested first); ValidationError naming the first bad field."""
    check_events(payload.get("events"))
    destination = Destination(account_id=account_id, kind=kind)
    _configure(destination, kind_named(kind).parse(_settings_in(payload), None))
    return destination


def reconfigure(destination: Destination, payload: Mapping[str, Any]) -> None:
    """Give the destination the settings a change request gives, over its current ones (secrets not given
    are kept); ValidationError naming the first bad field."""
    current = settings_of(destination)
    _configure(destination, kind_named(destination.kind).parse(_settings_in(payload), current))


def record_change(session: Session, destination: Destination, payload: Mapping[str, Any]) -> None:
    """Route the event types a change request gives (if it does) to the destination instead of its
    current ones, and stamp the destination as changed."""
    if "events" in payload:
        routing.replace_routes(session, destination.account_id, destination.id, check_events(payload["events"]))
    destination.updated_at = utcnow()


def find(session: Session, account_id: int, destination_id: int, kinds: Collection[str], what: str) -> Destination:
    """The caller's destination with this id, if of one of ``kinds``; NotFound naming ``what`` for any other
    (including other accounts')."""
    destination = session.get(Destination, destination_id)
    if destination is None or destination.account_id != account_id or destination.kind not in kinds:
        raise NotFound(what, destination_id)
    return destination


def view(session: Session, destination: Destination) -> dict[str, Any]:
    """A destination as the API shows it: its settings with every secret left out (only whether it is set)."""
    return {
        "id": destination.id, "kind": destination.kind, "name": destination.name,
        "events": routing.types_of(session, destination.id), "active": destination.active,
        "deactivated_at": formats.iso(destination.deactivated_at),
        "failing_since": formats.iso(destination.failing_since), "created_at": formats.iso(destination.created_at),
        **settings_of(destination).view(),
    }


def get(session: Session, account_id: int, destination_id: int) -> Destination:
    """The caller's email or file destination with this id; NotFound for any other (including other accounts')."""
    return find(session, account_id, destination_id, MANAGED_KINDS, "destination")


def prepare(account_id: int, payload: Mapping[str, Any]) -> Destination:
    """A validated email or file destination, not stored yet (so that it can be tested first)."""
    kind = payload.get("kind")
    if kind not in MANAGED_KINDS:
        raise problem("kind", f"{kind!r} is not one of {', '.join(MANAGED_KINDS)} (webhooks: /api/v1/webhooks)")
    return build(account_id, kind, payload)


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
    outbound.check_target(destination, runtime.settings)
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
    reconfigure(destination, payload)
    record_change(session, destination, payload)
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


def probe(destination: Destination, config: Settings, account: str = "") -> dict[str, Any]:
    """Check a destination now: a push destination gets one test event, a file destination a test file
    (uploaded and removed). ``ok`` says whether it went through; nothing is recorded. ``account``
    names the account in a test email."""
    now = utcnow()
    try:
        if destination.kind in FILE_KINDS:
            receipt = uploader_for(outbound.reach(file_settings(destination).target(), config)).probe()
        else:
            sample: model.Event = {
                "id": f"test-{int(now.timestamp())}", "type": "OPEN", "occurred_at": now,
                "email": "test@example.com", "message_id": "test", "message_name": "eventgw test event",
                "data": {"test": True},
            }
            sink = sink_for(destination, config, account=account)
            try:
                receipt = sink.deliver(f"msg_test_{int(now.timestamp() * 1000)}", [sample])
            finally:
                if hasattr(sink, "close"):
                    sink.close()
    except DeliveryError as exc:
        return {"ok": False, "status": exc.status, "answer": exc.excerpt, "detail": None, "error": str(exc)}
    return {"ok": True, "status": receipt.status, "answer": receipt.excerpt, "detail": receipt.detail, "error": None}


def label(destination: Destination) -> str:
    """How notices and answers name a destination: ``webhook #2`` or ``email destination #3``."""
    what = "webhook" if destination.kind == HttpSettings.kind else f"{destination.kind} destination"
    return f"{what} #{destination.id}"


def mark_deactivated(session: Session, destination: Destination, message: str) -> None:
    """Deactivate a destination, saying why in a notice and in its attempt log: nothing is delivered to it until
    it is activated, and its events keep accumulating for a replay."""
    now = utcnow()
    destination.active = False
    destination.deactivated_at = now
    session.add(Notice(account_id=destination.account_id, destination_id=destination.id, kind="deactivated",
                       message=message))
    session.add(Attempt(destination_id=destination.id, message_id="-", started_at=now, duration_ms=0,
                        event_count=0, outcome="deactivated", status=None, detail=message))


def activate(session: Session, destination: Destination, replay: bool) -> dict[str, Any]:
    """Activate a deactivated destination; with ``replay`` what accumulated is delivered, else dropped.

    A file destination's rows keep the period they arrived in: only periods already cut are
    retried at once, the others are cut as usual. An active destination stays as it is (no
    notice; nothing is dropped), except that ``replay`` makes what waits for it due at once
    with its tries forgotten; ``activated`` says whether it was deactivated.
    """
    now = utcnow()
    was_active = destination.active
    dropped = 0
    if replay:
        queue.requeue_pending(session, destination.id, now, assigned_only=destination.kind in FILE_KINDS)
        destination.paused_until = None
    elif not was_active:
        dropped = queue.drop_pending(session, destination.id, now)
    if not was_active:
        destination.active = True
        destination.deactivated_at = None
        destination.failing_since = None
        destination.consecutive_failures = 0
        destination.paused_until = None
        session.add(Notice(account_id=destination.account_id, destination_id=destination.id, kind="activated",
                           message=f"{label(destination)} activated"
                           + (" with replay" if replay else "")
                           + (f"; {dropped} accumulated events dropped" if dropped else "")))
    answer: dict[str, Any] = {"id": destination.id, "active": True, "activated": not was_active,
                              "queued": queue.count_pending(session, destination.id), "dropped": dropped}
    if was_active:
        answer["message"] = (f"{label(destination)} was already active; nothing changed"
                             + (", and what waits for it is due now" if replay else
                                " (to send its waiting retries at once: retry now)"))
    return answer


def attempts(session: Session, destination_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """A destination's most recent delivery attempts, newest first."""
    rows = session.scalars(select(Attempt).where(Attempt.destination_id == destination_id)
                           .order_by(Attempt.id.desc()).limit(max(1, min(limit, 1000))))
    return [{"message_id": a.message_id, "started_at": formats.iso(a.started_at), "duration_ms": a.duration_ms,
             "events": a.event_count, "outcome": a.outcome, "status": a.status, "detail": a.detail} for a in rows]

