"""Parked events for the tests: an event set aside by the delivery engine's own outcome, as when it cannot be
rendered (ingest refuses such events, so a test cannot send one)."""
from __future__ import annotations

from datetime import timedelta

from gateway.delivery import outcomes
from gateway.runtime import Runtime
from gateway.store import queue
from gateway.store.models import utcnow


def park(runtime: Runtime, destination_id: int, uid: str, why: str) -> None:
    """Have the delivery engine's own outcome park the event ``uid`` of the destination's next batch."""
    with runtime.sessions.begin() as session:
        now = utcnow()
        lease = queue.take_push_batch(session, destination_id, now, now + timedelta(minutes=1), 500)
        assert lease is not None
        outcomes.park_unrenderable(session, lease, [(uid, why)])
        outcomes.release(session, lease)
