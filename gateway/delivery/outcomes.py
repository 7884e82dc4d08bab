"""Outcomes of a delivery: lease a batch, settle it as delivered or failed (retry with backoff), park
what cannot be rendered, release on a clean stop, deactivate.

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
from gateway.destinations.http import HttpSettings
from gateway.destinations.kinds import push_settings
from gateway.destinations.management import mark_deactivated
from gateway.errors import DeliveryError
from gateway.notices import deactivation_message
from gateway.store import queue
from gateway.store.models import Attempt, Destination, UTCDateTime, utcnow
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
_LOCK_DESTINATION = (select(DESTINATIONS.c.id, DESTINATIONS.c.paused_until)
                     .where(DESTINATIONS.c.id == bindparam("destination")).with_for_update(skip_locked=True))
_HEALTHY = (update(DESTINATIONS)
            .where(DESTINATIONS.c.id == bindparam("destination"),
                   or_(DESTINATIONS.c.failing_since.is_not(None), DESTINATIONS.c.consecutive_failures != 0,
                       DESTINATIONS.c.paused_until.is_not(None)))
            .values(failing_since=None, consecutive_failures=0, paused_until=None))
_PACED = (update(DESTINATIONS).where(DESTINATIONS.c.id == bindparam("destination"))
          .values(paused_until=bindparam("until", type_=UTCDateTime())))


def rate_limit(destination: Destination) -> float | None:
    """The destination's most events per second (None: unlimited); only webhooks have one."""
    options = push_settings(destination)
    return options.rate_limit if isinstance(options, HttpSettings) else None


def batch_size(destination: Destination) -> int:
    """Events per batch at most: the destination's batch limit, and no more than its rate limit
    lets go in one second, so that spacing the batches keeps it under the limit."""
    limit = push_settings(destination).batch_limit
    rate = rate_limit(destination)
    return limit if rate is None else max(1, min(limit, int(rate)))


def lease(session: Session, destination: Destination, now: datetime, lease_seconds: int) -> Lease | None:
    """Lease the destination's next batch: a retry keeps its rows and message id, else take fresh rows."""
    if queue.skips_locked(session):
        locked = session.connection().execute(_LOCK_DESTINATION, {"destination": destination.id}).first()
        if locked is None:
            # Another dispatcher is leasing for this destination. Two at once would each take
            # part of a retried batch and send the parts under the same message id, and a
            # receiver that drops repeated ids would lose one of them.
            return None
        # Other dispatcher processes keep to one batch in flight per destination too, and to
        # the spacing of its rate limit or retry delay, which may have begun since it was read.
        if (locked.paused_until is not None and locked.paused_until > now) or queue.in_flight(
                session, destination.id, now):
            return None
    return queue.take_push_batch(session, destination.id, now, now + timedelta(seconds=lease_seconds),
                                 batch_size(destination))


def _record(session: Session, lease_: Lease, started: datetime, seconds: float, outcome: str,
            status: int | None, detail: str) -> None:
    session.add(Attempt(destination_id=lease_.destination_id, message_id=lease_.message_id, started_at=started,
                        duration_ms=int(seconds * 1000), event_count=lease_.size, outcome=outcome,
                        status=status, detail=detail[:2000]))
    metrics.ATTEMPTS.labels(outcome=outcome).inc()


def settle_success(session: Session, lease_: Lease, started: datetime, seconds: float, status: int | None,
                   detail: str, not_before: datetime | None = None) -> None:
    """Mark the batch delivered and the destination healthy, and log the attempt; with
    ``not_before`` (a rate limit's spacing) the destination's next batch waits until then."""
    now = utcnow()
    queue.settle(session, lease_.destination_id, lease_.message_id, now)
    session.connection().execute(_HEALTHY, {"destination": lease_.destination_id})
    if not_before is not None:
        session.connection().execute(_PACED, {"destination": lease_.destination_id, "until": not_before})
    _record(session, lease_, started, seconds, "delivered", status, detail)


def park_unrenderable(session: Session, lease_: Lease, unrenderable: list[tuple[str, str]]) -> None:
    """Park the batch's events that cannot be rendered (``(producer id, why)`` pairs), each alone,
    and log an attempt for each, so the rest of the batch and the destination go on."""
    now = utcnow()
    for uid, reason in unrenderable:
        queue.park(session, lease_.destination_id, lease_.message_id, [uid], reason, now)
        session.add(Attempt(destination_id=lease_.destination_id, message_id=lease_.message_id, started_at=now,
                            duration_ms=0, event_count=1, outcome="parked", status=None,
                            detail=f"event {uid[:200]!r} parked, it {reason}"[:2000]))
        metrics.ATTEMPTS.labels(outcome="parked").inc()
    log.warning("destination #%s: parked %s event(s) that cannot be rendered", lease_.destination_id,
                len(unrenderable))


def release(session: Session, lease_: Lease) -> None:
    """Give a batch still in flight at a clean stop back, due now and its try not counted, for
    another worker to take at once (under the same message id)."""
    queue.release(session, lease_.destination_id, lease_.message_id, utcnow())


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
        deactivate(session, destination, f"{error}", refused=not error.retryable)
        return True
    return False


def deactivate(session: Session, destination: Destination, reason: str, *, refused: bool = False) -> None:
    """Deactivate a destination that keeps failing, or (``refused``) that refused a delivery in a way no retry
    can change; its events keep accumulating for replay."""
    message = deactivation_message(destination, reason, refused)
    mark_deactivated(session, destination, message)
    log.warning(message)


