"""The queue: one row per (destination, event), its states, and every transition between them.

A row is ``ready`` (due at ``due_at``), ``leased`` (held by ``lease_id`` until ``due_at``,
after which it is due again), ``done``, or ``parked`` (set aside, with the reason in
``error``). This is the only module that writes a row's state: ingest enqueues, pull and
the delivery engine take and settle, management requeues, hastens, unparks or drops,
retention purges, each through a function here. Takers use one
``UPDATE ... WHERE id IN (SELECT ... ORDER BY id LIMIT n [FOR UPDATE SKIP LOCKED])``, so
concurrent takers never get the same row.
"""
from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import GenerativeSelect

from gateway.events import model
from gateway.store.models import Destination, Event, QueueItem, Route, UTCDateTime
from gateway.store.rows import EVENT_COLUMNS, to_event


class QueueState(str, enum.Enum):
    """Where a queue row stands."""

    READY = "ready"
    LEASED = "leased"
    DONE = "done"
    PARKED = "parked"


# Written inline, not as bound parameters, so that SQLite can use the partial indexes
# (``state != 'done'``) over the rows still waiting; parked rows are few and wait for nothing.
PENDING = and_(QueueItem.state != literal_column(f"'{QueueState.DONE.value}'"),
               QueueItem.state != literal_column(f"'{QueueState.PARKED.value}'"))
PARKED = QueueItem.state == literal_column(f"'{QueueState.PARKED.value}'")
# Transitions of many rows write through the Core table: the ORM's bulk-update
# bookkeeping would cost more than the statements themselves.
QUEUE: Table = QueueItem.__table__  # type: ignore[assignment]
_BULK = {"synchronize_session": False}


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


class _Unindexed(FunctionElement[datetime]):
    """A column that SQLite must not pick an index for (its unary ``+``); plain elsewhere."""

    name = "unindexed"
    type = UTCDateTime()
    inherit_cache = True


@compiles(_Unindexed)
def _plain(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_Unindexed, "sqlite")
def _unary_plus(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


def due_rows(destination_id: int | BindParameter[Any], now: datetime | BindParameter[Any],
             types: Sequence[str] = ()) -> Select[int]:
    """Ids of the destination's waiting rows that are due now (optionally of some types), oldest first.

    ``destination_id`` and ``now`` may be bound parameters, for a statement built once.
    """
    # Without statistics SQLite would pick the due-time index and sort every waiting row;
    # keeping it off that index makes it walk the pending index in id order, which stops
    # after the first LIMIT rows.
    query = (
        select(QueueItem.id)
        .where(QueueItem.destination_id == destination_id, PENDING, _Unindexed(QueueItem.due_at) <= now)
        .order_by(QueueItem.id)
    )
    if types:
        query = query.where(QueueItem.event_type.in_(list(types)))
    return query


def events_behind(condition: ColumnElement[bool]) -> Select[Any]:
    """The query of the events behind the queue rows matching ``condition``, in queue order."""
    return (select(*EVENT_COLUMNS).join(QueueItem, QueueItem.event_id == Event.id).where(condition)
            .order_by(QueueItem.id))


def queued_events(session: Session, query: Select[Any], params: Mapping[str, Any] | None = None) -> list[model.Event]:
    """The events an ``events_behind`` query finds."""
    # Through the Core connection: the ORM's per-row bookkeeping would cost more than the
    # query when a batch holds thousands of events.
    rows = session.connection().execute(query, params).all()  # one fetchall, not a driver call per row
    return [to_event(row) for row in rows]


def skips_locked(session: Session) -> bool:
    """Whether takers on this database skip rows another transaction holds (PostgreSQL) rather than
    relying on the database's single writer (SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


_Taking = TypeVar("_Taking", bound=GenerativeSelect)


def _locked(query: _Taking, skip_locked: bool) -> _Taking:
    return query.with_for_update(skip_locked=True) if skip_locked else query


# --- enqueue

_SQLITE_ENQUEUE = (
    "INSERT INTO queue (destination_id, event_id, event_type, state, due_at, attempts) "
    f"SELECT routes.destination_id, events.id, events.type, '{QueueState.READY.value}', ?, 0 FROM events "
    "JOIN routes ON routes.account_id = events.account_id AND routes.event_type = events.type "
    "WHERE events.id > ? ORDER BY routes.destination_id, events.id"
)


def enqueue_arrivals(session: Session, arrived: ColumnElement[bool], now: datetime) -> None:
    """Queue the events ``arrived`` selects for every destination their type is routed to, due ``now``.

    Each destination's rows are written together, so one destination's batch sits on few
    pages however many destinations share its event types.
    """
    events: Table = Event.__table__  # type: ignore[assignment]
    routes: Table = Route.__table__  # type: ignore[assignment]
    session.execute(QUEUE.insert().from_select(
        ["destination_id", "event_id", "event_type", "state", "due_at", "attempts"],
        select(routes.c.destination_id, events.c.id, events.c.type, literal(QueueState.READY.value),
               literal(now, UTCDateTime()), literal(0))
        .join(routes, and_(routes.c.account_id == events.c.account_id, routes.c.event_type == events.c.type))
        .where(arrived).order_by(routes.c.destination_id, events.c.id),
    ))


def enqueue_arrivals_sqlite(session: Session, received: str, after_id: int) -> None:
    """``enqueue_arrivals`` of every event with an id above ``after_id``, on SQLite.

    The embedded default's hottest path: one plain statement, with ``received`` already in
    the stored time format.
    """
    session.connection().exec_driver_sql(_SQLITE_ENQUEUE, (received, after_id))


def requeue_events(session: Session, destination_id: int, window: ColumnElement[bool], now: datetime) -> int:
    """Queue the events ``window`` selects for the destination again, due ``now``; returns how many.

    Rows the destination had for them start over (fresh message ids, no attempts); the
    missing ones are added.
    """
    existing = session.execute(
        update(QueueItem)
        .where(QueueItem.destination_id == destination_id, QueueItem.event_id.in_(select(Event.id).where(window)))
        .values(state=QueueState.READY.value, due_at=now, lease_id=None, attempts=0, error=None),
        execution_options=_BULK,
    )
    missing = select(Event.id, Event.type).where(window, ~exists().where(
        QueueItem.destination_id == destination_id, QueueItem.event_id == Event.id))
    rows = [{"destination_id": destination_id, "event_id": event_id, "event_type": event_type,
             "state": QueueState.READY.value, "due_at": now, "attempts": 0}
            for event_id, event_type in session.execute(missing)]
    if rows:
        session.execute(QUEUE.insert(), rows)
    return _count(existing) + len(rows)


# --- take and settle

_HELD = and_(QueueItem.destination_id == bindparam("destination"), QueueItem.lease_id == bindparam("lease"),
             QueueItem.state == QueueState.LEASED.value)
_SETTLE = update(QUEUE).where(_HELD).values(state=QueueState.DONE.value, done_at=bindparam("now", type_=UTCDateTime()))


def take_for_pull(session: Session, due: Select[Any], batch_id: str, now: datetime,
                  lease_until: datetime | None) -> None:
    """Take the rows ``due`` selects (a limited ``due_rows``) for pull batch ``batch_id``.

    Without ``lease_until`` they are collected at once (mark-as-read); with it they are
    leased until then, and due again if not acknowledged by then.
    """
    values: dict[str, Any] = (
        {"state": QueueState.DONE.value, "done_at": now, "lease_id": batch_id}
        if lease_until is None
        else {"state": QueueState.LEASED.value, "due_at": lease_until, "lease_id": batch_id}
    )
    rows = _locked(due, skips_locked(session))  # concurrent pullers skip each other's rows
    session.execute(update(QueueItem).where(QueueItem.id.in_(rows.scalar_subquery())).values(**values),
                    execution_options=_BULK)


def settle(session: Session, destination_id: int, lease_id: str, now: datetime) -> int:
    """Mark the rows the lease still holds as done; returns how many."""
    result = session.connection().execute(_SETTLE, {"destination": destination_id, "lease": lease_id, "now": now})
    return _count(result)


def reschedule(session: Session, destination_id: int, lease_id: str, due_at: datetime) -> None:
    """Give the lease's rows back, due again at ``due_at`` under the same lease id (a retry)."""
    session.execute(
        update(QueueItem)
        .where(QueueItem.destination_id == destination_id, QueueItem.lease_id == lease_id,
               QueueItem.state == QueueState.LEASED.value)
        .values(state=QueueState.READY.value, due_at=due_at),
        execution_options=_BULK,
    )


def park(session: Session, destination_id: int, lease_id: str, event_uids: Sequence[str], error: str,
         now: datetime) -> int:
    """Set the lease's rows of these events (producer ids) aside as parked, with ``error``; returns how many.

    They leave the lease, so settling it does not touch them, and no later take finds
    them; a replay of their window queues them again.
    """
    owner = select(Destination.account_id).where(Destination.id == destination_id).scalar_subquery()
    held = select(Event.id).where(Event.account_id == owner, Event.uid.in_(list(event_uids)))
    return _count(session.execute(
        update(QueueItem)
        .where(QueueItem.destination_id == destination_id, QueueItem.lease_id == lease_id,
               QueueItem.state == QueueState.LEASED.value, QueueItem.event_id.in_(held))
        .values(state=QueueState.PARKED.value, done_at=now, error=error[:2000]),
        execution_options=_BULK))


def release(session: Session, destination_id: int, lease_id: str, now: datetime) -> int:
    """Give a lease's rows back unsettled, due ``now`` under the same lease id, the try not counted.

    For a clean stop: another worker takes them at once and sends them with the same
    message id, so a receiver that got them already can tell.
    """
    return _count(session.execute(
        update(QueueItem)
        .where(QueueItem.destination_id == destination_id, QueueItem.lease_id == lease_id,
               QueueItem.state == QueueState.LEASED.value)
        .values(state=QueueState.READY.value, due_at=now,
                attempts=case((QueueItem.attempts > 0, QueueItem.attempts - 1), else_=0)),
        execution_options=_BULK))


@dataclass(frozen=True)
class _PushStatements:
    """The statements of taking a push batch, built once: building them costs more than SQLite
    takes to run some of them. Values go in as bound parameters."""

    oldest: Select[str | None, int]
    take_fresh: Update
    take_retry: Update
    events: Select[Any]


def _push_statements(skip_locked: bool) -> _PushStatements:
    due = due_rows(bindparam("destination"), bindparam("now", type_=UTCDateTime()))

    def take(rows: Select[Any]) -> Update:
        return (update(QUEUE).where(QUEUE.c.id.in_(_locked(rows, skip_locked).scalar_subquery()))
                .values(state=QueueState.LEASED.value, lease_id=bindparam("lease"),
                        due_at=bindparam("until", type_=UTCDateTime()), attempts=QUEUE.c.attempts + 1))

    return _PushStatements(
        oldest=_locked(due.with_only_columns(QueueItem.lease_id, QueueItem.attempts).limit(1), skip_locked),
        take_fresh=take(due.where(QueueItem.lease_id.is_(None)).limit(bindparam("max_events"))),
        take_retry=take(due.where(QueueItem.lease_id == bindparam("retry"))),
        events=events_behind(_HELD),
    )


_PUSH = {skip_locked: _push_statements(skip_locked) for skip_locked in (False, True)}


@dataclass(frozen=True)
class Lease:
    """A batch of queue rows held under one lease id (the message id), with its events and the tries
    made before this one.

    A file export holds a whole period without loading it: it gives ``event_count`` and
    no events.
    """

    destination_id: int
    message_id: str
    events: list[model.Event]
    attempts: int
    event_count: int | None = None

    @property
    def size(self) -> int:
        """How many events the batch holds."""
        return len(self.events) if self.event_count is None else self.event_count


def take_push_batch(session: Session, destination_id: int, now: datetime, until: datetime,
                    max_events: int) -> Lease | None:
    """Lease the destination's next due batch until ``until``: a retry keeps its rows and lease id,
    else up to ``max_events`` fresh rows get a new one. None when nothing is due."""
    statements = _PUSH[skips_locked(session)]
    connection = session.connection()
    first = connection.execute(statements.oldest, {"destination": destination_id, "now": now}).first()
    if first is None:
        return None
    retry_id, attempts = first
    lease_id = retry_id or "msg_" + secrets.token_urlsafe(18)
    taking = {"destination": destination_id, "now": now, "lease": lease_id, "until": until}
    # A retry takes its whole batch even if the batch size was lowered since: one message
    # id always carries the same events.
    if retry_id:
        result = connection.execute(statements.take_retry, {**taking, "retry": retry_id})
    else:
        result = connection.execute(statements.take_fresh, {**taking, "max_events": max_events})
    if not _count(result):
        return None
    events = queued_events(session, statements.events, {"destination": destination_id, "lease": lease_id})
    return Lease(destination_id, lease_id, events, attempts)


# --- file periods

def assign_period(session: Session, destination_id: int, rows: ColumnElement[bool], lease_id: str,
                  lease_until: datetime | None) -> None:
    """Give the destination's pending rows that match ``rows`` a file period's lease id; with
    ``lease_until`` also lease them until then (counting a try), else they stay due."""
    values: dict[str, Any] = {"lease_id": lease_id}
    if lease_until is not None:
        values.update(state=QueueState.LEASED.value, due_at=lease_until, attempts=QueueItem.attempts + 1)
    session.execute(update(QueueItem).where(QueueItem.destination_id == destination_id, PENDING, rows)
                    .values(values), execution_options=_BULK)


def leased_attempts(session: Session, destination_id: int, lease_id: str) -> int | None:
    """The try count of a leased row of the lease (None when none is leased)."""
    return session.scalar(select(QueueItem.attempts).where(
        QueueItem.destination_id == destination_id, QueueItem.lease_id == lease_id,
        QueueItem.state == QueueState.LEASED.value).limit(1))


def in_flight(session: Session, destination_id: int, now: datetime) -> bool:
    """Whether some row of the destination is leased and its lease has not run out at ``now``."""
    return session.scalar(select(QueueItem.id).where(
        QueueItem.destination_id == destination_id, PENDING, QueueItem.state == QueueState.LEASED.value,
        QueueItem.due_at > now,
    ).limit(1)) is not None


def is_held(session: Session, destination_id: int, lease_id: str, now: datetime) -> bool:
    """Whether some row of the destination's lease is leased and its lease has not run out at ``now``."""
    return session.scalar(select(QueueItem.id).where(
        QueueItem.destination_id == destination_id, QueueItem.lease_id == lease_id,
        QueueItem.state == QueueState.LEASED.value, QueueItem.due_at > now,
    ).limit(1)) is not None


# --- what waits

def count_pending(session: Session, destination_id: int) -> int:
    """How many rows of the destination wait (ready or leased)."""
    return int(session.scalar(select(func.count()).select_from(QueueItem).where(
        QueueItem.destination_id == destination_id, PENDING)) or 0)


def waiting(session: Session, destination_ids: Sequence[int] | None) -> dict[int, tuple[int, datetime]]:
    """``(how many rows wait, when the oldest waiting one's event was received)`` for each of these
    destinations (None: every destination) with rows waiting (ready or leased).

    The age of what waits counts from the event's arrival, not from its next due time,
    which a retry's backoff keeps in the future: an age alert must fire during a backoff.
    A replayed event counts from its arrival too.
    """
    if destination_ids is not None and not destination_ids:
        return {}
    counted = select(QueueItem.destination_id, func.count().label("count"), func.min(QueueItem.id).label("first"))
    if destination_ids is not None:
        counted = counted.where(QueueItem.destination_id.in_(list(destination_ids)))
    counts = counted.where(PENDING).group_by(QueueItem.destination_id).subquery()
    found = session.execute(select(counts.c.destination_id, counts.c.count, Event.received_at)
                            .join(QueueItem, QueueItem.id == counts.c.first)
                            .join(Event, Event.id == QueueItem.event_id))
    return {destination_id: (int(count), received) for destination_id, count, received in found}


def oldest_ready(session: Session, destination_id: int) -> datetime | None:
    """The due time of the destination's oldest ready row."""
    return session.scalar(select(func.min(QueueItem.due_at)).where(
        QueueItem.destination_id == destination_id, QueueItem.state == QueueState.READY.value))


# --- requeue, drop, purge

def requeue_pending(session: Session, destination_id: int, now: datetime, *, assigned_only: bool = False) -> None:
    """Make every waiting row of the destination due now with its tries forgotten (a replay);
    with ``assigned_only``, only those that already carry a lease id."""
    condition = [QueueItem.destination_id == destination_id, PENDING]
    if assigned_only:
        condition.append(QueueItem.lease_id.is_not(None))
    session.execute(update(QueueItem).where(*condition)
                    .values(state=QueueState.READY.value, due_at=now, attempts=0), execution_options=_BULK)


def hasten(session: Session, destination_id: int, now: datetime) -> int:
    """Make the destination's retries (ready rows with a lease id, tried before) that wait for a later try due
    ``now`` (retry now); returns how many.

    Their tries and message ids stay: a batch goes again as the same message. Rows held
    by a delivery in flight are left to it, and rows never tried keep their due time (a
    file destination's rows are cut into periods by it).
    """
    return _count(session.execute(
        update(QueueItem).where(QueueItem.destination_id == destination_id, QueueItem.lease_id.is_not(None),
                                QueueItem.state == QueueState.READY.value, QueueItem.due_at > now)
        .values(due_at=now), execution_options=_BULK))


def unpark(session: Session, destination_ids: Sequence[int], now: datetime, event_ids: Sequence[int] = ()) -> int:
    """Queue the parked rows of these destinations again (only those of ``event_ids``, when given), due
    ``now`` with fresh message ids and no tries; returns how many."""
    condition = [QueueItem.destination_id.in_(list(destination_ids)), PARKED]
    if event_ids:
        condition.append(QueueItem.event_id.in_(list(event_ids)))
    return _count(session.execute(
        update(QueueItem).where(*condition)
        .values(state=QueueState.READY.value, due_at=now, lease_id=None, attempts=0, error=None, done_at=None),
        execution_options=_BULK))


def parked_rows(session: Session, destination_ids: Sequence[int], limit: int,
                before: datetime | None = None) -> list[tuple[int, datetime | None, str | None, int, str, str]]:
    """The most recently parked rows of these destinations, newest first (parked before ``before``, when
    given): ``(destination id, when parked, why, event id, producer id, event type)``."""
    query = (select(QueueItem.destination_id, QueueItem.done_at, QueueItem.error, Event.id, Event.uid, Event.type)
             .join(Event, Event.id == QueueItem.event_id)
             .where(QueueItem.destination_id.in_(list(destination_ids)), PARKED))
    if before is not None:
        query = query.where(QueueItem.done_at < before)
    ordered = query.order_by(QueueItem.done_at.desc(), QueueItem.id.desc()).limit(limit)
    return [(owner, parked_at, error, event_id, uid, event_type)
            for owner, parked_at, error, event_id, uid, event_type in session.execute(ordered)]


def drop_pending(session: Session, destination_id: int, now: datetime) -> int:
    """Mark every waiting row of the destination done without delivering it; returns how many."""
    return _count(session.execute(
        update(QueueItem).where(QueueItem.destination_id == destination_id, PENDING)
        .values(state=QueueState.DONE.value, done_at=now), execution_options=_BULK))


def purge_done(session: Session, before: datetime, limit: int) -> int:
    """Delete at most ``limit`` of the rows done or parked before ``before``; returns how many.

    A small batch per transaction holds its locks briefly however many rows wait: call
    again, in a new transaction, until it returns less than ``limit``.
    """
    purged = 0
    # The states inline, as in the partial indexes over done and parked rows, so that those are used.
    for settled in (QueueItem.state == literal_column(f"'{QueueState.DONE.value}'"), PARKED):
        if purged < limit:
            purged += delete_rows(session, QueueItem, QueueItem.id,
                                  select(QueueItem.id).where(settled, QueueItem.done_at < before).limit(limit - purged))
    return purged


def delete_rows(session: Session, table: Any, key: Any, doomed: Select[Any]) -> int:
    """Delete the rows of ``table`` (queue rows, or the other tables housekeeping purges) whose ``key`` the query
    ``doomed`` selects; rows another transaction holds are skipped where the database can, and wait for the
    next purge. Returns how many went."""
    doomed = _locked(doomed, skips_locked(session))
    return _count(session.execute(delete(table).where(key.in_(doomed.scalar_subquery())), execution_options=_BULK))


def count_parked(session: Session, destination_ids: Sequence[int]) -> dict[int, int]:
    """How many rows of each of these destinations are parked (destinations with none left out)."""
    found = session.execute(select(QueueItem.destination_id, func.count())
                            .where(QueueItem.destination_id.in_(list(destination_ids)), PARKED)
                            .group_by(QueueItem.destination_id))
    return {destination_id: int(count) for destination_id, count in found}
