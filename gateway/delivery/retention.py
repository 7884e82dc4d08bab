"""Purging what is no longer needed: collected queue rows, old pull batches and sessions, unreferenced events.

Everything is deleted in small batches (``purge_batch_rows``), each in a transaction of its
own, so a purge of millions of rows never holds a lock for long: deliveries, pulls and
ingest go on while it runs.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.store import queue
from gateway.store.models import Event, LegacySession, PullBatch, QueueItem, utcnow

# Between two batches: on SQLite another writer waiting for the write lock gets it first.
PAUSE_SECONDS = 0.005


@dataclass(frozen=True)
class Purged:
    """How many rows of each kind a purge removed."""

    queue_rows: int
    events: int
    batches: int
    sessions: int


def purge(sessions: sessionmaker[Session], settings: Settings, stopping: threading.Event | None = None) -> Purged:
    """Remove delivered or collected work older than the retention period, batch by batch.

    Events are removed only when no destination still waits for them; a batch stays
    re-fetchable for the recovery window, so retention never undercuts it. With
    ``stopping``, the purge ends after the batch in progress once it is set (the next one
    carries on).
    """
    now = utcnow()
    keep = now - timedelta(days=max(settings.retention_days, settings.recovery_days))
    limit = settings.purge_batch_rows
    stop = stopping.is_set if stopping is not None else (lambda: False)
    queue_rows = _in_batches(sessions, lambda session: queue.purge_done(session, keep, limit), limit, stop)
    events = _purge_events(sessions, keep, limit, stop)
    old_batches = PullBatch.created_at < now - timedelta(days=settings.recovery_days)
    batches = _in_batches(sessions, _deleting(PullBatch, PullBatch.id, old_batches, limit), limit, stop)
    idle_sessions = LegacySession.last_seen_at < now - timedelta(seconds=settings.session_idle_seconds)
    idle = _in_batches(sessions, _deleting(LegacySession, LegacySession.id, idle_sessions, limit), limit, stop)
    return Purged(queue_rows, events, batches, idle)


def _in_batches(sessions: sessionmaker[Session], batch: Callable[[Session], int], limit: int,
                stop: Callable[[], bool]) -> int:
    """Run ``batch`` in transactions of their own until it deletes less than ``limit``; the total deleted."""
    total = 0
    while not stop():
        with sessions.begin() as session:
            deleted = batch(session)
        total += deleted
        if deleted < limit:
            break
        time.sleep(PAUSE_SECONDS)
    return total


def _deleting(table: Any, key: Any, condition: ColumnElement[bool], limit: int) -> Callable[[Session], int]:
    """A batch that deletes at most ``limit`` rows of ``table`` matching ``condition``."""
    def batch(session: Session) -> int:
        return queue.delete_rows(session, table, key, select(key).where(condition).limit(limit))
    return batch


def _purge_events(sessions: sessionmaker[Session], before: datetime, limit: int, stop: Callable[[], bool]) -> int:
    """Delete the events received before ``before`` that no queue row refers to, walking the events
    in id (arrival) order, ``limit`` at a time, until the events are newer than ``before``."""
    total = 0
    after = 0
    unreferenced = ~exists(select(QueueItem.id).where(QueueItem.event_id == Event.id))
    while not stop():
        with sessions.begin() as session:
            window = (select(Event.id, Event.received_at).where(Event.id > after).order_by(Event.id).limit(limit)
                      .subquery())
            last, oldest = session.execute(select(func.max(window.c.id), func.min(window.c.received_at))).one()
            if last is None or oldest >= before:
                break
            total += queue.delete_rows(session, Event, Event.id, select(Event.id).where(
                Event.id > after, Event.id <= last, Event.received_at < before, unreferenced))
        after = last
        time.sleep(PAUSE_SECONDS)
    return total

