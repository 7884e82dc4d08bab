"""What the console's pages read from the store, each a bounded query an index answers (see bench/console.py):
events per type over time, destinations in the order an operator looks at them, pull batches and an event
search. Everything is read within the caller's account."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, func, literal_column, select, true
from sqlalchemy.orm import Session

from gateway.events import model
from gateway.store.models import Destination, Event, PullBatch, UTCDateTime

_PHONE_SEPARATORS = str.maketrans("", "", " -().")
"""What a phone number may be written with and is stored without."""
PAGE_ROWS = 50
"""Rows a list page shows at most (events, attempts, parked events, batches)."""
RECIPIENT_ROWS = 1000
"""A recipient's latest arrivals among which the events page finds those that match the rest of a search."""


@dataclass(frozen=True)
class Span:
    """A chart's time span: ``buckets`` buckets of ``step`` ending with the one holding ``now``."""

    label: str
    step: timedelta
    buckets: int

    def start(self, now: datetime) -> datetime:
        """The start of the span's first bucket."""
        return _floor(now, self.step) - self.step * (self.buckets - 1)


DAY = Span("last 24 hours", timedelta(hours=1), 24)
WEEK = Span("last 7 days", timedelta(days=1), 7)


def _floor(moment: datetime, step: timedelta) -> datetime:
    """``moment`` rounded down to a whole hour or day (UTC)."""
    if step >= timedelta(days=1):
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


@functools.cache
def _cells(buckets: int) -> Select[Any]:
    """One statement counting the events of each type in each of ``buckets`` buckets, bounded by the bound
    parameters ``edge0`` ... ``edge{buckets}``: a count per (type, bucket) over a range of
    ix_events_account_type_time, which steps through index entries only; grouping by a computed
    bucket would cost a sort of every event in the span instead (ten times as long)."""
    account = bindparam("account", type_=Integer())
    edges = [bindparam(f"edge{i}", type_=UTCDateTime()) for i in range(buckets + 1)]
    return select(*(
        select(func.count()).where(Event.account_id == account, Event.type == literal_column(f"'{etype}'"),
                                   Event.occurred_at >= edges[i], Event.occurred_at < edges[i + 1])
        .scalar_subquery()
        for etype in model.ALL_TYPES for i in range(buckets)))


def events_over_time(session: Session, account_id: int, span: Span, now: datetime) -> dict[str, list[int]]:
    """How many of the account's events of each type occurred in each bucket of ``span`` (types with none
    left out), oldest bucket first."""
    start = span.start(now)
    edges = {f"edge{i}": start + span.step * i for i in range(span.buckets + 1)}
    counts = list(session.execute(_cells(span.buckets), {"account": account_id, **edges}).one())
    series = {etype: counts[n * span.buckets:(n + 1) * span.buckets] for n, etype in enumerate(model.ALL_TYPES)}
    return {etype: row for etype, row in series.items() if any(row)}


def pull_batches(session: Session, account_id: int, since: datetime) -> list[PullBatch]:
    """The account's pull batches made since ``since`` (its recovery window), newest first."""
    return list(session.scalars(select(PullBatch).where(PullBatch.account_id == account_id,
                                                        PullBatch.created_at >= since)
                                .order_by(PullBatch.created_at.desc()).limit(PAGE_ROWS)))


@dataclass(frozen=True)
class EventQuery:
    """What the events page looks for; each field given narrows the search."""

    uid: str = ""
    recipient: str = ""
    event_type: str = ""
    since: datetime | None = None
    until: datetime | None = None


def find_events(session: Session, account_id: int, query: EventQuery) -> list[Event]:
    """The account's events the query matches, the latest occurred first, at most PAGE_ROWS."""
    account = Event.account_id == account_id
    conditions: list[ColumnElement[bool]] = []
    if query.uid:
        conditions.append(Event.uid == query.uid)
    if query.recipient:
        # A recipient's latest arrivals first, through the index of its kind (email or phone), then those
        # ordered by time: asked at once (or with the account named outside too), SQLite walks every event
        # of the account by time to find the recipient's.
        recipient = (Event.email == query.recipient if "@" in query.recipient
                     else Event.phone == query.recipient.translate(_PHONE_SEPARATORS))
        latest = select(Event.id).where(account, recipient).order_by(Event.id.desc()).limit(RECIPIENT_ROWS)
        conditions.append(Event.id.in_(latest.scalar_subquery()))
    else:
        conditions.append(account)
    if query.since is not None:
        conditions.append(Event.occurred_at >= query.since)
    if query.until is not None:
        conditions.append(Event.occurred_at < query.until)
    # Without an id or a recipient, each type's latest come from ix_events_account_type_time (account, type,
    # time) and the latest of those are kept: an index of the account's events by time alone would cost
    # every ingest more than these few short reads cost a page.
    if query.event_type:
        by_type = [Event.type == query.event_type]
    elif query.uid or query.recipient:
        by_type = [true()]  # a handful of rows already; naming the account again would walk all its events
    else:
        by_type = [Event.type == etype for etype in model.ALL_TYPES]
    found: list[Event] = []
    for condition in by_type:
        found.extend(session.scalars(select(Event).where(and_(*conditions, condition))
                                     .order_by(Event.occurred_at.desc(), Event.id.desc()).limit(PAGE_ROWS)))
    return sorted(found, key=lambda event: (event.occurred_at, event.id), reverse=True)[:PAGE_ROWS]


def destinations(session: Session, account_id: int) -> list[Destination]:
    """The account's destinations, deactivated first, then failing, then the others, each group by id."""
    found = session.scalars(select(Destination).where(Destination.account_id == account_id)
                            .order_by(Destination.id))
    return sorted(found, key=lambda d: (d.active, d.failing_since is None, d.id))
