"""Control of deliveries by the account: retry now, deactivate, the failed deliveries across its
destinations and their re-drive.

The REST API, the CLI and the console call these; each works only on the caller's account,
inside the caller's transaction. What the delivery engine does by itself (retry with backoff,
park, deactivate after repeated failures) is ``gateway.delivery.outcomes``'s.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.destinations import management as admin
from gateway.destinations.http import HttpSettings
from gateway.destinations.kinds import FILE_KINDS, PUSH_KINDS
from gateway.errors import Conflict
from gateway.events import formats
from gateway.store import queue
from gateway.store.models import Attempt, Destination, utcnow

MAX_LIMIT = 1000
NEVER = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Scope:
    """Which of an account's destinations a call may name (another id is NotFound, naming ``what``)."""

    kinds: tuple[str, ...]
    what: str


# The kinds the gateway delivers to itself (a pull queue waits for its client: there is nothing to retry),
# and those each API manages.
DELIVERED = Scope((*PUSH_KINDS, *FILE_KINDS), "destination")
WEBHOOKS = Scope((HttpSettings.kind,), "webhook")
MANAGED = Scope(admin.MANAGED_KINDS, "destination")


def _delivered(session: Session, account_id: int, destination_id: int, scope: Scope = DELIVERED) -> Destination:
    return admin.find(session, account_id, destination_id, scope.kinds, scope.what)


def retry_now(session: Session, account_id: int, destination_id: int, scope: Scope = DELIVERED) -> int:
    """Make the destination's waiting retries due at once and end its pause (a backoff or rate-limit spacing);
    returns how many events became due. Conflict for a deactivated destination: activate it instead."""
    destination = _delivered(session, account_id, destination_id, scope)
    if not destination.active:
        raise Conflict(f"{admin.label(destination)} is deactivated: activate it (with replay to deliver what "
                       "accumulated) instead of retrying")
    destination.paused_until = None
    return queue.hasten(session, destination.id, utcnow())


def deactivate(session: Session, account_id: int, destination_id: int, scope: Scope = DELIVERED) -> bool:
    """Deactivate one of the account's destinations by hand: nothing is delivered to it until it is
    activated again, and its events keep accumulating for a replay. Returns False (and records nothing)
    when it was deactivated already."""
    destination = _delivered(session, account_id, destination_id, scope)
    if not destination.active:
        return False
    admin.mark_deactivated(session, destination, f"{admin.label(destination)} ({destination.name}) was deactivated "
                           "by the account; its events are kept and delivered if it is activated with replay")
    return True


def _destinations(session: Session, account_id: int, destination_id: int | None) -> dict[int, Destination]:
    """The account's delivered-to destinations by id, or just the one asked for (NotFound for another's)."""
    if destination_id is not None:
        return {destination_id: _delivered(session, account_id, destination_id)}
    found = session.scalars(select(Destination).where(Destination.account_id == account_id,
                                                      Destination.kind.in_(DELIVERED.kinds)))
    return {destination.id: destination for destination in found}


def failed_deliveries(session: Session, account_id: int, *, limit: int = 100, before: datetime | None = None,
                      destination_id: int | None = None) -> list[dict[str, Any]]:
    """The account's failed deliveries across its destinations (or one), newest first: failed attempts
    (``"failure": "attempt"``, what the receiver answered) and parked events (``"failure": "parked"``,
    why they cannot be rendered; ``redrive`` queues them again). ``before`` pages back in time."""
    limit = max(1, min(limit, MAX_LIMIT))
    destinations = _destinations(session, account_id, destination_id)
    if not destinations:
        return []
    query = (select(Attempt).where(Attempt.destination_id.in_(list(destinations)), Attempt.outcome == "failed")
             .order_by(Attempt.started_at.desc(), Attempt.id.desc()).limit(limit))
    if before is not None:
        query = query.where(Attempt.started_at < before)
    found: list[tuple[datetime | None, dict[str, Any]]] = []
    for attempt in session.scalars(query):
        found.append((attempt.started_at, {
            "failure": "attempt", "at": formats.iso(attempt.started_at),
            **_about(destinations[attempt.destination_id]),
            "message_id": attempt.message_id, "events": attempt.event_count, "status": attempt.status,
            "duration_ms": attempt.duration_ms, "error": attempt.detail}))
    for owner, parked_at, error, event_id, uid, event_type in queue.parked_rows(session, list(destinations), limit,
                                                                                 before):
        found.append((parked_at, {
            "failure": "parked", "at": formats.iso(parked_at), **_about(destinations[owner]),
            "event_id": event_id, "event": uid, "type": event_type, "error": error}))
    found.sort(key=lambda item: item[0] or NEVER, reverse=True)
    return [entry for _, entry in found[:limit]]


def _about(destination: Destination) -> dict[str, Any]:
    return {"destination_id": destination.id, "kind": destination.kind, "name": destination.name,
            "active": destination.active}


def redrive(session: Session, account_id: int, *, destination_id: int | None = None,
            event_ids: Sequence[int] = ()) -> int:
    """Queue the account's parked events again (of one destination, or only ``event_ids``, when given),
    due now; returns how many. One that still cannot be rendered is parked again at its next try."""
    destinations = _destinations(session, account_id, destination_id)
    if not destinations:
        return 0
    return queue.unpark(session, list(destinations), utcnow(), event_ids)
