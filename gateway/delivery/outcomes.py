"""Outcomes of a delivery: lease a batch, settle it as delivered or failed (retry with backoff), deactivate.

Work is coordinated only through rows in the store, so any number of dispatchers can run
side by side on PostgreSQL. A batch's rows keep their ``lease_id`` (the message id) across
retries, so a receiver sees the same ``webhook-id`` for the same batch every time; a lease
runs out, so a batch held by a killed process is retried by another (at least once).
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.config import Settings
from gateway.destinations.kinds import push_settings
from gateway.errors import DeliveryError
from gateway.store import queue
from gateway.store.models import Attempt, Destination, Notice, utcnow
from gateway.store.queue import Lease

log = logging.getLogger(__name__)
# Told the id of a destination the engine deactivated (to mail its owner, say); its result is ignored.
OnDeactivate = Callable[[int], object]
# Leasing and settling write through the Core table: the ORM's bookkeeping would cost
# more than the statements themselves, once per batch.
DESTINATIONS: Table = Destination.__table__  # type: ignore[assignment]


def retry_delay(schedule: tuple[float, ...], attempts: int, retry_after: float | None, cap: float) -> float:
    """Seconds to wait before try number ``attempts + 1``: the schedule with ±10 % jitter, or Retry-After."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    base = schedule[min(attempts, len(schedule) - 1)]
    return base * random.uniform(0.9, 1.1)


# The destination-row statements of leasing and settling, built once with bound parameters:
# building them costs more than SQLite takes to run them.
_LOCK_DESTINATION = (select(DESTINATIONS.c.id).where(DESTINATIONS.c.id == bindparam("destination"))
                     .with_for_update(skip_locked=True))
_HEALTHY = (update(DESTINATIONS)
            .where(DESTINATIONS.c.id == bindparam("destination"),
                   or_(DESTINATIONS.c.failing_since.is_not(None), DESTINATIONS.c.consecutive_failures != 0,
                       DESTINATIONS.c.paused_until.is_not(None)))
            .values(failing_since=None, consecutive_failures=0, paused_until=None))


def lease(session: Session, destination: Destination, now: datetime, lease_seconds: int) -> Lease | None:
    """Lease the destination's next batch: a retry keeps its rows and message id, else take fresh rows."""
    connection = session.connection()
    if (queue.skips_locked(session)
            and connection.execute(_LOCK_DESTINATION, {"destination": destination.id}).first() is None):
        # Another dispatcher is leasing for this destination. Two at once would each take
        # part of a retried batch and send the parts under the same message id, and a
        # receiver that drops repeated ids would lose one of them.
        return None
    return queue.take_push_batch(session, destination.id, now, now + timedelta(seconds=lease_seconds),
                                 push_settings(destination).batch_limit)


def _record(session: Session, lease_: Lease, started: datetime, seconds: float, outcome: str,
            status: int | None, detail: str) -> None:
    session.add(Attempt(destination_id=lease_.destination_id, message_id=lease_.message_id, started_at=started,
                        duration_ms=int(seconds * 1000), event_count=lease_.size, outcome=outcome,
                        status=status, detail=detail[:2000]))
    metrics.ATTEMPTS.labels(outcome=outcome).inc()


def settle_success(session: Session, lease_: Lease, started: datetime, seconds: float, status: int | None,
                   detail: str) -> None:
    """Mark the batch delivered and the destination healthy, and log the attempt."""
    now = utcnow()
    queue.settle(session, lease_.destination_id, lease_.message_id, now)
    session.connection().execute(_HEALTHY, {"destination": lease_.destination_id})
    _record(session, lease_, started, seconds, "delivered", status, detail)


def settle_failure(session: Session, lease_: Lease, started: datetime, seconds: float, error: DeliveryError,
                   settings: Settings) -> bool:
    """Schedule the batch's retry (or park it), count the failure, deactivate if it keeps failing.

    Returns True when the destination was deactivated.
    """
    now = utcnow()
    destination = session.get(Destination, lease_.destination_id, with_for_update=True)
    assert destination is not None
    schedule = settings.retry_schedule
    delay = retry_delay(schedule, lease_.attempts, error.retry_after, settings.max_retry_after_seconds)
    queue.reschedule(session, lease_.destination_id, lease_.message_id, now + timedelta(seconds=delay))
    destination.failing_since = destination.failing_since or started
    destination.consecutive_failures += 1
    destination.paused_until = now + timedelta(seconds=delay)
    detail = f"{error}" + (f" | answer: {error.excerpt}" if error.excerpt else "")
    _record(session, lease_, started, seconds, "failed", error.status, detail + f" | next try in {delay:.0f} s")
    limit = settings.deactivate_after_failures
    give_up = (
        not error.retryable
        or now - destination.failing_since >= timedelta(seconds=settings.deactivate_after_seconds)
        or (limit > 0 and destination.consecutive_failures >= limit)
    )
    if give_up and destination.active:
        deactivate(session, destination, f"{error}")
        return True
    return False


def deactivate(session: Session, destination: Destination, reason: str) -> None:
    """Deactivate a destination that keeps failing; its events keep accumulating for replay."""
    now = utcnow()
    destination.active = False
    destination.deactivated_at = now
    message = (f"destination #{destination.id} ({destination.kind} {destination.name}) was deactivated "
               f"after repeated failures: {reason}. Its events are kept; activate it with replay to deliver them.")
    session.add(Notice(account_id=destination.account_id, destination_id=destination.id, kind="deactivated",
                       message=message))
    session.add(Attempt(destination_id=destination.id, message_id="-", started_at=now, duration_ms=0,
                        event_count=0, outcome="deactivated", status=None, detail=message))
    log.warning(message)


