"""Push delivery: webhooks and email, batch by batch, through each destination's sink.

For a destination with due work it leases a batch, hands it to the sink, and settles the
outcome; after a success the next batch is leased in the same transaction, so a busy
destination costs one write transaction per batch. An event no rendering can write is
parked alone and the rest of its batch goes on; a webhook's rate limit sizes its batches
and spaces them (``paused_until``). Sinks (and their kept-alive connections) are kept per
destination until its settings change.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.delivery.outcomes import (
    OnDeactivate,
    lease,
    park_unrenderable,
    rate_limit,
    release,
    settle_failure,
    settle_success,
)
from gateway.destinations.kinds import PUSH_KINDS, push_settings, sink_for
from gateway.errors import DeliveryError
from gateway.events import formats
from gateway.runtime import Runtime
from gateway.store import queue
from gateway.store.models import Attempt, Destination, QueueItem, utcnow
from gateway.store.queue import PENDING, Lease, due_rows

log = logging.getLogger(__name__)


class Pusher:
    """Delivers the due batches of push destinations; one call of ``deliver_due`` per destination at a time."""

    def __init__(self, runtime: Runtime, stopping: threading.Event,
                 on_deactivate: OnDeactivate | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._stopping = stopping
        self._on_deactivate = on_deactivate
        self._sinks: dict[int, tuple[dict[str, Any], Any]] = {}
        self._rates: dict[int, float | None] = {}
        # The batches being delivered right now, per destination, for a clean stop to give back.
        self._lock = threading.Lock()
        self._in_flight: dict[int, Lease] = {}
        self._released: set[str] = set()

    def due_destinations(self, now: datetime) -> list[int]:
        """Active push destinations with due work, read without taking the write lock."""
        due = select(QueueItem.id).where(QueueItem.destination_id == Destination.id, PENDING,
                                         QueueItem.due_at <= now).exists()
        with self.runtime.read_sessions() as session:
            destinations = session.scalars(
                select(Destination).where(Destination.active.is_(True), Destination.kind.in_(PUSH_KINDS), due,
                                          or_(Destination.paused_until.is_(None), Destination.paused_until <= now))
            ).all()
            return [d.id for d in destinations if self._ready(session, d, now)]

    def _ready(self, session: Session, destination: Destination, now: datetime) -> bool:
        """Honour a destination's fixed interval and its wait-to-fill batching."""
        options = push_settings(destination)
        interval = options.interval
        if interval > 0:
            last = session.scalar(select(func.max(Attempt.started_at)).where(
                Attempt.destination_id == destination.id, Attempt.outcome == "delivered"))
            if last is not None and now - last < timedelta(seconds=interval):
                return False
        wait = options.batch_wait
        if wait > 0:
            oldest = queue.oldest_ready(session, destination.id)
            size = options.batch_limit
            waiting = session.scalar(select(func.count()).select_from(
                due_rows(destination.id, now).limit(size).subquery()))
            if oldest is not None and now - oldest < timedelta(seconds=wait) and (waiting or 0) < size:
                return False
        return True

    def deliver_due(self, destination_id: int) -> None:
        """Deliver the destination's due batches one after another until none is left, one fails, or
        the engine stops. Never raises: it runs on the engine's threads."""
        try:
            with self.runtime.sessions.begin() as session:
                taken = self._lease_next(session, destination_id)
            while taken is not None:
                taken = self._deliver(destination_id, *taken)
        except Exception:
            log.exception("dispatch to destination #%s failed", destination_id)

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

    def _lease_next(self, session: Session, destination_id: int) -> tuple[Lease, Any] | None:
        """Lease the destination's next batch, with the sink to deliver it, unless stopping."""
        if self._stopping.is_set():
            return None
        destination = session.get(Destination, destination_id)
        if destination is None or not destination.active:
            return None
        held = lease(session, destination, utcnow(), self.settings.dispatch_lease_seconds)
        if held is None:
            return None
        self._rates[destination_id] = rate_limit(destination)
        return held, self._sink(destination)

    def _deliver(self, destination_id: int, held: Lease, sink: Any) -> tuple[Lease, Any] | None:
        """Deliver one leased batch and settle it; returns the batch to deliver next, if any.

        After a success the next batch is leased in the same transaction (one write
        transaction per batch, with a savepoint), unless the destination's rate limit makes
        it wait for the dispatcher (``paused_until``). After a failure, the events of the
        batch that cannot be rendered are parked alone and the rest is returned to go at once.
        """
        started = utcnow()
        clock = time.monotonic()
        with self._lock:
            self._in_flight[destination_id] = held
        try:
            receipt = sink.deliver(held.message_id, held.events)
        except Exception as exc:
            if self._forget(destination_id, held):
                return None
            return self._failed(destination_id, held, sink, started, time.monotonic() - clock, exc)
        seconds = time.monotonic() - clock
        metrics.LATENCY.observe(seconds)
        if self._forget(destination_id, held):
            return None
        not_before = self._not_before(destination_id, held, started)
        with self.runtime.sessions.begin() as session:
            settle_success(session, held, started, seconds, receipt.status, receipt.detail +
                           (f" | answer: {receipt.excerpt}" if receipt.excerpt else ""), not_before)
            if not_before is not None:
                return None
            try:
                # A savepoint: if taking the next batch fails, the delivery is still settled.
                with session.begin_nested():
                    return self._lease_next(session, destination_id)
            except Exception:
                log.exception("leasing the next batch of destination #%s failed", destination_id)
                return None

    def _failed(self, destination_id: int, held: Lease, sink: Any, started: datetime, seconds: float,
                exc: Exception) -> tuple[Lease, Any] | None:
        """Settle a failed batch: park what cannot be rendered and return the rest, else retry it later.

        A sink renders a whole batch before it sends any of it, and a rendering error is not a
        DeliveryError: only then are the batch's events looked at one by one.
        """
        unrenderable = [] if isinstance(exc, DeliveryError) else [
            (str(event.get("id")), reason) for event in held.events
            if (reason := formats.render_problem(event)) is not None]
        if unrenderable:
            parked = {uid for uid, _ in unrenderable}
            with self.runtime.sessions.begin() as session:
                park_unrenderable(session, held, unrenderable)
            rest = [event for event in held.events if str(event.get("id")) not in parked]
            if not rest:
                return None
            # Nothing went out (rendering comes before sending), so the rest keeps the message id.
            return replace(held, events=rest), sink
        if isinstance(exc, DeliveryError):
            error = exc
            metrics.LATENCY.observe(seconds)
        else:  # a bug in a sink must not wedge its rows: retry them later
            log.error("sink of destination #%s raised", destination_id, exc_info=exc)
            error = DeliveryError(f"internal error: {exc}")
        with self.runtime.sessions.begin() as session:
            deactivated = settle_failure(session, held, started, seconds, error, self.settings)
        if deactivated and self._on_deactivate is not None:
            self._on_deactivate(destination_id)
        return None

    def _not_before(self, destination_id: int, held: Lease, started: datetime) -> datetime | None:
        """When the destination may start its next batch under its rate limit (None: unlimited)."""
        rate = self._rates.get(destination_id)
        return None if rate is None else started + timedelta(seconds=held.size / rate)

    def _forget(self, destination_id: int, held: Lease) -> bool:
        """The batch is no longer in flight; True if ``release_in_flight`` gave it back meanwhile."""
        with self._lock:
            self._in_flight.pop(destination_id, None)
            if held.message_id in self._released:
                self._released.discard(held.message_id)
                return True
            return False

    def release_in_flight(self) -> int:
        """Give every batch still in flight back to the store, unsettled and due at once (a clean stop
        whose grace ran out); returns how many. Their deliveries, if they ever end, settle nothing."""
        with self._lock:
            held = list(self._in_flight.values())
            self._released.update(lease_.message_id for lease_ in held)
            self._in_flight.clear()
        for lease_ in held:
            try:
                with self.runtime.sessions.begin() as session:
                    release(session, lease_)
            except Exception:
                log.exception("could not release batch %s of destination #%s", lease_.message_id,
                              lease_.destination_id)
        return len(held)

    def close(self) -> None:
        """Close the kept sinks and their connections."""
        for _, sink in self._sinks.values():
            if hasattr(sink, "close"):
                sink.close()
        self._sinks.clear()
