"""Client pull: hand an account up to 10,000 of its oldest unread events, with mark-as-read, leases and recovery.

Three modes, one rule set for every API (legacy SOAP, typed SOAP, REST):
- ``read``: the events are marked as collected in the same transaction that builds the batch;
- ``lease``: they are hidden from other pullers until acknowledged or until the lease
  runs out, after which they come back (a queue's visibility timeout);
- ``peek``: they are returned and nothing changes.
Marked and leased batches get an id; a client that crashed after pulling can fetch the
same batch again by that id within the recovery window. Legacy answers carry no batch id,
so an operator puts what a legacy client collected in a window back into its queue instead
(``requeue_collected``).
"""
from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from sqlalchemy import and_, insert, literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.destinations.routing import pull_destination
from gateway.errors import NotFound, ValidationError
from gateway.events import model
from gateway.limits import MAX_BATCH_EVENTS
from gateway.store import queue
from gateway.store.models import Event, PullBatch, QueueItem, utcnow
from gateway.store.queue import QueueState, due_rows, events_behind, queued_events

Mode = Literal["read", "lease", "peek"]
T = TypeVar("T")


@dataclass(frozen=True)
class Batch:
    """Events handed to a puller, oldest first; ``id`` is None for a peek."""

    id: str | None
    events: list[model.Event]
    mode: Mode
    lease_until: datetime | None = None


def check_max(value: object, field: str) -> int:
    """The batch size asked for, as an int from 1 to 10,000; ValidationError naming ``field`` otherwise."""
    if isinstance(value, bool):
        raise ValidationError(f"must be a whole number from 1 to {MAX_BATCH_EVENTS}", field)
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValidationError(f"{str(value)[:40]!r} is not a whole number from 1 to {MAX_BATCH_EVENTS}",
                              field) from None
    if not 1 <= number <= MAX_BATCH_EVENTS:
        raise ValidationError(f"must be between 1 and {MAX_BATCH_EVENTS} (got {number})", field)
    return number


def check_types(value: str | Sequence[str] | None, field: str) -> list[str]:
    """The asked event types (a comma-separated string or a list); empty means every type."""
    try:
        return model.parse_types(value)
    except ValueError as exc:
        raise ValidationError(str(exc), field) from None


def new_batch_id() -> str:
    """A fresh, unguessable batch id."""
    return "b_" + secrets.token_urlsafe(18)


def get_batch(
    sessions: sessionmaker[Session],
    account_id: int,
    types: list[str],
    limit: int,
    mode: Mode,
    render: Callable[[Batch], T],
    *,
    lease_seconds: int = 300,
) -> T:
    """Take a batch and return ``render(batch)``.

    ``render`` runs inside the transaction, before it commits: if rendering fails or the
    process dies first, nothing is marked or leased.
    """
    now = utcnow()
    with sessions.begin() as session:
        destination_id = pull_destination(session, account_id)
        due = due_rows(destination_id, now, types).limit(limit)
        if mode == "peek":
            ids = due.subquery()
            batch = Batch(None, queued_events(session, events_behind(QueueItem.id.in_(select(ids.c.id)))), mode)
            return render(batch)
        batch_id = new_batch_id()
        lease_until = now + timedelta(seconds=lease_seconds) if mode == "lease" else None
        queue.take_for_pull(session, due, batch_id, now, lease_until)
        # Naming the destination lets the lease index find the batch's rows.
        events = queued_events(session, events_behind(and_(QueueItem.destination_id == destination_id,
                                                           QueueItem.lease_id == batch_id)))
        session.execute(insert(PullBatch).values(
            id=batch_id, account_id=account_id, destination_id=destination_id,
            created_at=now, event_count=len(events), acked_at=now if mode == "read" else None,
        ))
        return render(Batch(batch_id, events, mode, lease_until))


def acknowledge(sessions: sessionmaker[Session], account_id: int, batch_id: str) -> int:
    """Mark a leased batch as collected; returns how many of its events were still held by it."""
    now = utcnow()
    with sessions.begin() as session:
        batch = _own_batch(session, account_id, batch_id)
        settled = queue.settle(session, batch.destination_id, batch_id, now)
        if batch.acked_at is None:
            batch.acked_at = now
        return settled


def batch_again(
    sessions: sessionmaker[Session], account_id: int, batch_id: str, recovery: timedelta
) -> Batch:
    """The events of an earlier batch of this account, within the recovery window."""
    with sessions() as session:
        batch = _own_batch(session, account_id, batch_id)
        if utcnow() - batch.created_at > recovery:
            raise NotFound("batch (past its recovery window)", batch_id)
        events = queued_events(session, events_behind(and_(QueueItem.destination_id == batch.destination_id,
                                                           QueueItem.lease_id == batch_id)))
        return Batch(batch_id, events, "read" if batch.acked_at else "lease")


def requeue_collected(
    sessions: sessionmaker[Session],
    account_id: int,
    since: datetime,
    until: datetime | None,
    types: list[str],
    recovery: timedelta,
) -> int:
    """Put back into the account's pull queue the events of ``types`` (every type if empty) it collected in
    [since, until) (until now if None); returns how many.

    Only the recovery window can be asked for: a ``since`` before it is a ValidationError,
    as its rows may already be purged. The events come back due now, in their arrival order.
    """
    now = utcnow()
    end = now if until is None else until
    if since < now - recovery:
        raise ValidationError(f"is before the recovery window ({recovery.total_seconds() / 86400:g} days, "
                              f"recovery_days): events collected earlier cannot be put back", "since")
    if since >= end:
        raise ValidationError("must be before until" if until is not None else "must be in the past", "since")
    with sessions.begin() as session:
        destination_id = pull_destination(session, account_id)
        # The state inline, not bound, so that SQLite can use the partial index over done rows.
        collected = select(QueueItem.event_id).where(
            QueueItem.destination_id == destination_id, QueueItem.state == literal_column(f"'{QueueState.DONE.value}'"),
            QueueItem.done_at >= since, QueueItem.done_at < end,
            *([QueueItem.event_type.in_(types)] if types else []),
        )
        return queue.requeue_events(session, destination_id, Event.id.in_(collected), now)


def _own_batch(session: Session, account_id: int, batch_id: str) -> PullBatch:
    batch = session.get(PullBatch, batch_id)
    if batch is None or batch.account_id != account_id:
        raise NotFound("batch", batch_id)
    return batch
