"""What an account has: stored events per type, and what waits and what is parked for each destination."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.store import queue
from gateway.store.models import Destination, Event, utcnow


def account_stats(session: Session, account_id: int) -> dict[str, Any]:
    """``{"events": {TYPE: n}, "pending": {destination id: {...}}}`` for one account.

    ``oldest_age_seconds`` is how long ago the oldest waiting event arrived (not when its next
    try is due: it grows during a retry's backoff). ``parked`` counts a destination's events
    set aside because they cannot be rendered (the attempt log says why); they no longer wait.
    """
    events = dict(
        session.execute(
            select(Event.type, func.count()).where(Event.account_id == account_id).group_by(Event.type)
        ).all()
    )
    now = utcnow()
    pending: dict[str, Any] = {}
    destinations = session.scalars(
        select(Destination).where(Destination.account_id == account_id).order_by(Destination.id)).all()
    waiting = queue.waiting(session, [d.id for d in destinations])
    parked = queue.count_parked(session, [d.id for d in destinations])
    for destination in destinations:
        count, oldest = waiting.get(destination.id, (0, None))
        pending[str(destination.id)] = {
            "kind": destination.kind,
            "name": destination.name,
            "active": destination.active,
            "pending": count,
            "oldest_age_seconds": _age(now, oldest),
            "parked": parked.get(destination.id, 0),
        }
    return {"events": {etype: events[etype] for etype in sorted(events)}, "total": sum(events.values()),
            "pending": pending}


def _age(now: datetime, oldest: datetime | None) -> float | None:
    return None if oldest is None else max(0.0, round((now - oldest).total_seconds(), 3))
