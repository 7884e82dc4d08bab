"""Purging what is no longer needed: collected queue rows, old pull batches and sessions, unreferenced events."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.store import queue
from gateway.store.models import Event, LegacySession, PullBatch, QueueItem, utcnow


@dataclass(frozen=True)
class Purged:
    """How many rows of each kind a purge removed."""

    queue_rows: int
    events: int
    batches: int
    sessions: int


def purge(sessions: sessionmaker[Session], settings: Settings) -> Purged:
    """Remove delivered or collected work older than the retention period.

    Events are removed only when no destination still waits for them; a batch stays
    re-fetchable for the recovery window, so retention never undercuts it.
    """
    now = utcnow()
    keep = timedelta(days=max(settings.retention_days, settings.recovery_days))
    with sessions.begin() as session:
        queue_rows = queue.purge_done(session, now - keep)
        events = session.execute(
            delete(Event).where(Event.received_at < now - keep,
                                ~exists(select(QueueItem.id).where(QueueItem.event_id == Event.id))),
            execution_options={"synchronize_session": False},
        ).rowcount  # type: ignore[attr-defined]
        batches = session.execute(
            delete(PullBatch).where(PullBatch.created_at < now - timedelta(days=settings.recovery_days)),
            execution_options={"synchronize_session": False},
        ).rowcount  # type: ignore[attr-defined]
        idle = session.execute(
            delete(LegacySession).where(
                LegacySession.last_seen_at < now - timedelta(seconds=settings.session_idle_seconds)),
            execution_options={"synchronize_session": False},
        ).rowcount  # type: ignore[attr-defined]
    return Purged(queue_rows, int(events or 0), int(batches or 0), int(idle or 0))
