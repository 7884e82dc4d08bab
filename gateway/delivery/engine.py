"""The delivery engine: lease due queue rows per push destination, call the sink, record, retry or deactivate.

Work is coordinated only through rows in the store, so any number of dispatchers can run
side by side on PostgreSQL. A batch's rows keep their ``lease_id`` (the message id) across
retries, so a receiver sees the same ``webhook-id`` for the same batch every time; a lease
runs out, so a batch held by a killed process is retried by another (at least once).
"""
from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Update, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.config import Settings
from gateway.delivery import retention
from gateway.destinations.kinds import PUSH_KINDS, sink_for
from gateway.errors import DeliveryError
from gateway.events import model
from gateway.runtime import Runtime
from gateway.store.models import PENDING, Attempt, Destination, Notice, QueueItem, UTCDateTime, utcnow
from gateway.store.queue import due_rows, events_behind, queued_events

log = logging.getLogger(__name__)
# Leasing and settling write through the Core tables: the ORM's bulk-update bookkeeping
# would cost more than the statements themselves, once per batch.
QUEUE = QueueItem.__table__
DESTINATIONS = Destination.__table__
PURGE_EVERY_SECONDS = 600.0


@dataclass(frozen=True)
class Lease:
    """A batch of queue rows held by one dispatcher: the message id and the events in it.

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


DEFAULT_BATCH_EVENTS = 500


def batch_size(destination: Destination) -> int:
    """How many events one delivery to the destination carries at most."""
    return int(destination.settings.get("batch_max_events", DEFAULT_BATCH_EVENTS))


def retry_delay(schedule: tuple[float, ...], attempts: int, retry_after: float | None, cap: float) -> float:
    """Seconds to wait before try number ``attempts + 1``: the schedule with ±10 % jitter, or Retry-After."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    base = schedule[min(attempts, len(schedule) - 1)]
    return base * random.uniform(0.9, 1.1)


@dataclass(frozen=True)
class _LeaseStatements:
    """The statements of leasing and settling, built once: building them costs more than
    SQLite takes to run some of them. Values go in as bound parameters."""

    lock_destination: Select[Any] | None
    oldest: Select[Any]
    take_fresh: Update
    take_retry: Update
    events: Select[Any]
    done: Update
    healthy: Update


def _build_statements(skip_locked: bool) -> _LeaseStatements:
    def locked(query: Select[Any]) -> Select[Any]:
        return query.with_for_update(skip_locked=True) if skip_locked else query

    destination_id = bindparam("destination")
    due = due_rows(destination_id, bindparam("now", type_=UTCDateTime()))

    def take(rows: Select[Any]) -> Update:
        return (update(QUEUE).where(QUEUE.c.id.in_(locked(rows).scalar_subquery()))
                .values(state="leased", lease_id=bindparam("message_id"),
                        due_at=bindparam("until", type_=UTCDateTime()), attempts=QUEUE.c.attempts + 1))

    held = and_(QueueItem.destination_id == destination_id, QueueItem.lease_id == bindparam("message_id"),
                QueueItem.state == "leased")
    return _LeaseStatements(
        lock_destination=locked(select(DESTINATIONS.c.id).where(DESTINATIONS.c.id == destination_id))
        if skip_locked else None,
        oldest=locked(due.with_only_columns(QueueItem.lease_id, QueueItem.attempts).limit(1)),
        take_fresh=take(due.where(QueueItem.lease_id.is_(None)).limit(bindparam("max_events"))),
        take_retry=take(due.where(QueueItem.lease_id == bindparam("retry_id"))),
        events=events_behind(held),
        done=update(QUEUE).where(held).values(state="done", done_at=bindparam("now", type_=UTCDateTime())),
        healthy=update(DESTINATIONS)
        .where(DESTINATIONS.c.id == destination_id,
               or_(DESTINATIONS.c.failing_since.is_not(None), DESTINATIONS.c.consecutive_failures != 0,
                   DESTINATIONS.c.paused_until.is_not(None)))
        .values(failing_since=None, consecutive_failures=0, paused_until=None),
    )


_STATEMENTS = {skip_locked: _build_statements(skip_locked) for skip_locked in (False, True)}


def _statements(session: Session) -> _LeaseStatements:
    """The statements for the session's database (PostgreSQL skips rows other dispatchers hold)."""
    return _STATEMENTS[session.get_bind().dialect.name == "postgresql"]


def lease(session: Session, destination: Destination, now: datetime, lease_seconds: int) -> Lease | None:
    """Lease the destination's next batch: a retry keeps its rows and message id, else take fresh rows."""
    statements = _statements(session)
    connection = session.connection()
    key = {"destination": destination.id}
    if statements.lock_destination is not None and connection.execute(statements.lock_destination, key).first() is None:
        # Another dispatcher is leasing for this destination. Two at once would each take
        # part of a retried batch and send the parts under the same message id, and a
        # receiver that drops repeated ids would lose one of them.
        return None
    first = connection.execute(statements.oldest, {**key, "now": now}).first()
    if first is None:
        return None
    retry_id, attempts = first
    message_id = retry_id or "msg_" + secrets.token_urlsafe(18)
    taking = {**key, "now": now, "message_id": message_id, "until": now + timedelta(seconds=lease_seconds)}
    # A retry takes its whole batch even if batch_max_events was lowered since: one message
    # id always carries the same events.
    if retry_id:
        result = connection.execute(statements.take_retry, {**taking, "retry_id": retry_id})
    else:
        result = connection.execute(statements.take_fresh, {**taking, "max_events": batch_size(destination)})
    if not result.rowcount:
        return None
    events = queued_events(session, statements.events, {**key, "message_id": message_id})
    return Lease(destination.id, message_id, events, attempts)


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
    statements = _statements(session)
    connection = session.connection()
    connection.execute(statements.done, {"destination": lease_.destination_id, "message_id": lease_.message_id,
                                         "now": now})
    connection.execute(statements.healthy, {"destination": lease_.destination_id})
    _record(session, lease_, started, seconds, "delivered", status, detail)


def settle_failure(session: Session, lease_: Lease, started: datetime, seconds: float, error: DeliveryError,
                   settings: Settings) -> bool:
    """Schedule the batch's retry (or park it), count the failure, deactivate if it keeps failing.

    Returns True when the destination was deactivated.
    """
    now = utcnow()
    destination = session.get(Destination, lease_.destination_id, with_for_update=True)
    assert destination is not None
    schedule = tuple(destination.settings.get("retry_schedule") or settings.retry_schedule)
    delay = retry_delay(schedule, lease_.attempts, error.retry_after, settings.max_retry_after_seconds)
    session.execute(
        update(QueueItem)
        .where(QueueItem.destination_id == lease_.destination_id, QueueItem.lease_id == lease_.message_id,
               QueueItem.state == "leased")
        .values(state="ready", due_at=now + timedelta(seconds=delay)),
        execution_options={"synchronize_session": False},
    )
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


class Dispatcher:
    """Leases due work and delivers it on a thread pool, at most one batch in flight per destination."""

    def __init__(self, runtime: Runtime, on_deactivate: Callable[[int], None] | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._pool = ThreadPoolExecutor(max_workers=self.settings.dispatch_concurrency,
                                        thread_name_prefix="dispatch")
        self._busy: dict[int, Future[None]] = {}
        self._sinks: dict[int, tuple[dict[str, Any], Any]] = {}
        self._stop = threading.Event()
        self._on_deactivate = on_deactivate
        from gateway.delivery.export import Exporter  # export builds on this module's settle functions

        self._exporter = Exporter(runtime, on_deactivate)

    def due_destinations(self, session: Session, now: datetime) -> list[Destination]:
        """Active push destinations with due work."""
        due = select(QueueItem.id).where(QueueItem.destination_id == Destination.id, PENDING,
                                         QueueItem.due_at <= now).exists()
        destinations = session.scalars(
            select(Destination).where(Destination.active.is_(True), Destination.kind.in_(PUSH_KINDS), due,
                                      or_(Destination.paused_until.is_(None), Destination.paused_until <= now))
        ).all()
        return [d for d in destinations if self._ready(session, d, now)]

    def _ready(self, session: Session, destination: Destination, now: datetime) -> bool:
        """Honour a destination's fixed interval and its wait-to-fill batching."""
        interval = float(destination.settings.get("interval_seconds") or 0)
        if interval > 0:
            last = session.scalar(select(func.max(Attempt.started_at)).where(
                Attempt.destination_id == destination.id, Attempt.outcome == "delivered"))
            if last is not None and now - last < timedelta(seconds=interval):
                return False
        wait = float(destination.settings.get("batch_max_wait_seconds") or 0)
        if wait > 0:
            oldest = session.scalar(select(func.min(QueueItem.due_at)).where(
                QueueItem.destination_id == destination.id, QueueItem.state == "ready"))
            size = batch_size(destination)
            waiting = session.scalar(select(func.count()).select_from(
                due_rows(destination.id, now).limit(size).subquery()))
            if oldest is not None and now - oldest < timedelta(seconds=wait) and (waiting or 0) < size:
                return False
        return True

    def run_once(self) -> int:
        """Start a delivery for every due destination that has none in flight; returns how many started."""
        self._busy = {k: f for k, f in self._busy.items() if not f.done()}
        started = 0
        now = utcnow()
        with self.runtime.read_sessions() as session:  # polling never takes the write lock
            destinations = [d for d in self.due_destinations(session, now) if d.id not in self._busy]
        for destination in destinations:
            try:
                self._busy[destination.id] = self._pool.submit(self._deliver_one, destination.id)
            except RuntimeError:  # the pool was shut down: stop() ran, or the interpreter is exiting
                self._stop.set()
                break
            started += 1
        for destination_id in self._exporter.due_destinations(now):
            if self._stop.is_set() or destination_id in self._busy:
                continue
            try:
                self._busy[destination_id] = self._pool.submit(self._exporter.export_due, destination_id)
            except RuntimeError:
                self._stop.set()
                break
            started += 1
        return started

    def _sink(self, destination: Destination) -> Any:
        # Keyed on the settings the sink is built from, not on updated_at, which every
        # change of the destination's health bumps: the sink and its kept-alive
        # connections outlive batches.
        cached = self._sinks.get(destination.id)
        if cached is None or cached[0] != destination.settings:
            if cached is not None and hasattr(cached[1], "close"):
                cached[1].close()
            cached = (dict(destination.settings), sink_for(destination, self.settings))
            self._sinks[destination.id] = cached
        return cached[1]

    def _deliver_one(self, destination_id: int) -> None:
        try:
            with self.runtime.sessions.begin() as session:
                taken = self._lease_next(session, destination_id)
            while taken is not None:
                taken = self._deliver(destination_id, *taken)
        except Exception:
            log.exception("dispatch to destination #%s failed", destination_id)

    def _lease_next(self, session: Session, destination_id: int) -> tuple[Lease, Any] | None:
        """Lease the destination's next batch, with the sink to deliver it, unless stopping."""
        if self._stop.is_set():
            return None
        destination = session.get(Destination, destination_id)
        if destination is None or not destination.active:
            return None
        held = lease(session, destination, utcnow(), self.settings.dispatch_lease_seconds)
        return None if held is None else (held, self._sink(destination))

    def _deliver(self, destination_id: int, held: Lease, sink: Any) -> tuple[Lease, Any] | None:
        """Deliver one leased batch and settle it; after a success, the next batch is leased in
        the same transaction (one write transaction per batch, with a savepoint) and returned."""
        started = utcnow()
        clock = time.monotonic()
        try:
            receipt = sink.deliver(held.message_id, held.events)
        except DeliveryError as error:
            seconds = time.monotonic() - clock
            metrics.LATENCY.observe(seconds)
            with self.runtime.sessions.begin() as session:
                deactivated = settle_failure(session, held, started, seconds, error, self.settings)
            if deactivated and self._on_deactivate is not None:
                self._on_deactivate(destination_id)
            return None
        except Exception as exc:  # a bug in a sink must not wedge its rows: retry them later
            seconds = time.monotonic() - clock
            log.exception("sink of destination #%s raised", destination_id)
            with self.runtime.sessions.begin() as session:
                settle_failure(session, held, started, seconds, DeliveryError(f"internal error: {exc}"),
                               self.settings)
            return None
        seconds = time.monotonic() - clock
        metrics.LATENCY.observe(seconds)
        with self.runtime.sessions.begin() as session:
            settle_success(session, held, started, seconds, receipt.status, receipt.detail +
                           (f" | answer: {receipt.excerpt}" if receipt.excerpt else ""))
            try:
                # A savepoint: if taking the next batch fails, the delivery is still settled.
                with session.begin_nested():
                    return self._lease_next(session, destination_id)
            except Exception:
                log.exception("leasing the next batch of destination #%s failed", destination_id)
                return None

    def run_forever(self) -> None:
        """Poll for due work until stop() is called; purge old work now and then."""
        next_purge = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_purge:
                    purged = retention.purge(self.runtime.sessions, self.settings)
                    log.info("purged %s", purged)
                    next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                started = self.run_once()
            except Exception:
                log.exception("dispatcher loop failed; retrying")
                started = 0
            if not started:
                self._stop.wait(self.settings.dispatch_interval_seconds)
            else:
                self._stop.wait(0.05)

    def drain(self, timeout: float = 30.0) -> None:
        """Run until nothing is due or in flight (for tests and one-shot runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.run_once()
            for future in list(self._busy.values()):
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            if not started:
                return
        raise TimeoutError("dispatcher did not drain in time")

    def stop(self) -> None:
        """Stop polling, wait for deliveries in flight and close the sinks."""
        self._stop.set()
        self._pool.shutdown(wait=True)
        for _, sink in self._sinks.values():
            if hasattr(sink, "close"):
                sink.close()
