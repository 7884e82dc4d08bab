"""What an account has: stored events per type and what waits for each destination."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.store.models import Destination, Event, QueueItem, utcnow
from gateway.store.queue import PENDING


def account_stats(session: Session, account_id: int) -> dict[str, Any]:
    """``{"events": {TYPE: n}, "pending": {destination id: {...}}}`` for one account."""
    events = dict(
        session.execute(
            select(Event.type, func.count()).where(Event.account_id == account_id).group_by(Event.type)
        ).all()
    )
    waiting = {
        destination_id: (count, oldest)
        for destination_id, count, oldest in session.execute(
            select(QueueItem.destination_id, func.count(), func.min(QueueItem.due_at))
            .join(Destination, Destination.id == QueueItem.destination_id)
            .where(Destination.account_id == account_id, PENDING)
            .group_by(QueueItem.destination_id)
        )
    }
    now = utcnow()
    pending: dict[str, Any] = {}
    for destination in session.scalars(
        select(Destination).where(Destination.account_id == account_id).order_by(Destination.id)
    ):
        count, oldest = waiting.get(destination.id, (0, None))
        pending[str(destination.id)] = {
            "kind": destination.kind,
            "name": destination.name,
            "active": destination.active,
            "pending": count,
            "oldest_age_seconds": _age(now, oldest),
        }
    return {"events": {etype: events[etype] for etype in sorted(events)}, "total": sum(events.values()),
            "pending": pending}


def _age(now: datetime, oldest: datetime | None) -> float | None:
    return None if oldest is None else max(0.0, round((now - oldest).total_seconds(), 3))
