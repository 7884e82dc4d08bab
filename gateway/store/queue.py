"""The queries pull and the dispatcher share: which rows are due, and the events behind rows."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from gateway import events as model
from gateway.store.models import PENDING, Event, QueueItem
from gateway.store.rows import EVENT_COLUMNS, to_event


def due_rows(destination_id: int, now: datetime, types: Sequence[str] = ()) -> Select[tuple[int]]:
    """Ids of the destination's waiting rows that are due now (optionally of some types), oldest first."""
    query = (
        select(QueueItem.id)
        .where(QueueItem.destination_id == destination_id, PENDING, QueueItem.due_at <= now)
        .order_by(QueueItem.id)
        # Without statistics SQLite would pick the due-time index and sort every waiting
        # row; walking the pending index in id order stops after the first LIMIT rows.
        .with_hint(QueueItem, "INDEXED BY ix_queue_pending", "sqlite")
    )
    if types:
        query = query.where(QueueItem.event_type.in_(list(types)))
    return query


def queued_events(session: Session, condition: ColumnElement[bool]) -> list[model.Event]:
    """The events behind the queue rows matching ``condition``, in queue order."""
    # Through the Core connection: the ORM's per-row bookkeeping would cost more than the
    # query when a batch holds thousands of events.
    rows = session.connection().execute(
        select(*EVENT_COLUMNS).join(QueueItem, QueueItem.event_id == Event.id).where(condition)
        .order_by(QueueItem.id)
    )
    return [to_event(row) for row in rows]
