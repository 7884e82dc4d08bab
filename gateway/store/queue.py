"""The queries pull and the dispatcher share: which rows are due, and the events behind rows."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from gateway.events import model
from gateway.store.models import PENDING, Event, QueueItem, UTCDateTime
from gateway.store.rows import EVENT_COLUMNS, to_event


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
             types: Sequence[str] = ()) -> Select[tuple[int]]:
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
