"""Send now: close a file destination's current period and upload its file, or send an email destination's
waiting events at once instead of after its interval (``POST /api/v1/destinations/{id}/flush``,
``gateway destination flush``)."""
from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import select

from gateway.delivery import export
from gateway.delivery.outcomes import OnDeactivate
from gateway.delivery.push import Pusher
from gateway.destinations import management as admin
from gateway.destinations.kinds import FILE_KINDS
from gateway.errors import Conflict, DeliveryError
from gateway.runtime import Runtime
from gateway.store.models import Attempt


def flush(runtime: Runtime, account_id: int, destination_id: int,
          on_deactivate: OnDeactivate | None = None) -> dict[str, Any]:
    """Send the caller's destination what it holds now; what went out, or DeliveryError when sending failed.

    A file destination's current period ends now and its file (empty if no event arrived)
    is uploaded; the next period starts now. An email destination sends every due event,
    however recently it last sent; its interval counts from now.
    """
    with runtime.read_sessions() as session:
        destination = admin.get(session, account_id, destination_id)
        kind, active = destination.kind, destination.active
        last = session.scalar(select(Attempt.id).where(Attempt.destination_id == destination_id)
                              .order_by(Attempt.id.desc()).limit(1)) or 0
    if not active:
        raise Conflict(f"destination #{destination_id} is deactivated; activate it first")
    if kind in FILE_KINDS:
        receipt = export.flush_period(runtime, destination_id, account_id=account_id, on_deactivate=on_deactivate)
        return {"id": destination_id, "kind": kind, "detail": receipt.detail}
    pusher = Pusher(runtime, threading.Event(), on_deactivate)
    try:
        pusher.deliver_due(destination_id)
    finally:
        pusher.close()
    with runtime.read_sessions() as session:
        tried = session.scalars(select(Attempt).where(Attempt.destination_id == destination_id, Attempt.id > last)
                                .order_by(Attempt.id)).all()
    failed = [a for a in tried if a.outcome == "failed"]
    if failed:
        raise DeliveryError(failed[-1].detail, status=failed[-1].status)
    sent = [a for a in tried if a.outcome == "delivered"]
    events = sum(a.event_count for a in sent)
    detail = f"{events} events sent in {len(sent)} messages" if sent else "no events were waiting"
    return {"id": destination_id, "kind": kind, "detail": detail}
