"""REST management of email and file destinations: /api/v1/destinations."""
from __future__ import annotations

from datetime import date, datetime, timezone

from flask import Blueprint, Response, jsonify, request

from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.params import flag, json_body, limit_param
from gateway.api.schemas import (
    DESTINATION_SETTINGS,
    Activated,
    Attempts,
    Deactivated,
    DestinationChange,
    DestinationFields,
    DestinationList,
    DestinationView,
    Exported,
    ExportPeriod,
    Flushed,
    KindFilter,
    Limit,
    ReplayFlag,
    RetriedNow,
    Tested,
)
from gateway.delivery import export
from gateway.delivery.flush import flush as flush_now
from gateway.destinations import control, outbound
from gateway.destinations import management as admin
from gateway.errors import ValidationError

blueprint = Blueprint("destinations", __name__)
READ_ONLY = admin.read_only("/api/v1/destinations")
CHANGE_FIELDS = tuple(name for name in admin.DESTINATION_FIELDS if name != "test")


@blueprint.post("/api/v1/destinations")
@operation(answer=DestinationView, status=201, body=DESTINATION_SETTINGS, fields=DestinationFields)
def create() -> tuple[Response, int]:
    """Create an email, ftp or sftp destination; with `test: true`, refuse one that fails its test."""
    account_id = current_account()
    payload = json_body(admin.request_fields, READ_ONLY)
    return jsonify(admin.create_tested(current_runtime(), account_id, payload, bool(payload.get("test")))), 201


@blueprint.get("/api/v1/destinations")
@operation(answer=DestinationList, query=KindFilter)
def list_all() -> Response:
    """The caller's email and file destinations, filtered by `kind`."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        found = admin.list_destinations(session, account_id, request.args.get("kind"))
        return jsonify({"destinations": [admin.view(session, d) for d in found]})


@blueprint.get("/api/v1/destinations/<id:destination_id>")
@operation(answer=DestinationView)
def show(destination_id: int) -> Response:
    """One destination (secrets are never shown)."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify(admin.view(session, admin.get(session, account_id, destination_id)))


@blueprint.put("/api/v1/destinations/<id:destination_id>")
@operation(answer=DestinationView, body=DESTINATION_SETTINGS, fields=DestinationChange, partial=True)
def change(destination_id: int) -> Response:
    """Change settings or event types; secrets left out of the request are kept."""
    account_id, rt, payload = current_account(), current_runtime(), json_body(CHANGE_FIELDS, READ_ONLY)
    outbound.check_change(payload, rt.settings)
    with rt.sessions.begin() as session:
        return jsonify(admin.view(session, admin.change(session, account_id, destination_id, payload)))


@blueprint.delete("/api/v1/destinations/<id:destination_id>")
@operation(status=204)
def remove(destination_id: int) -> tuple[str, int]:
    """Delete a destination."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        admin.remove(session, admin.get(session, account_id, destination_id))
    return "", 204


@blueprint.post("/api/v1/destinations/<id:destination_id>/test")
@operation(answer=Tested)
def test(destination_id: int) -> Response:
    """Send a test email, or upload and remove a test file, and report how it went."""
    return jsonify(admin.check_now(current_runtime(), current_account(), destination_id))


@blueprint.post("/api/v1/destinations/<id:destination_id>/activate")
@operation(answer=Activated, query=ReplayFlag)
def activate(destination_id: int) -> Response:
    """Activate; `replay=true` delivers what accumulated while deactivated, otherwise it is dropped."""
    account_id = current_account()
    replay = flag("replay")
    with current_runtime().sessions.begin() as session:
        return jsonify(admin.activate(session, admin.get(session, account_id, destination_id), replay))


@blueprint.post("/api/v1/destinations/<id:destination_id>/deactivate")
@operation(answer=Deactivated)
def deactivate(destination_id: int) -> Response:
    """Deactivate: nothing is sent or uploaded until it is activated again; its events are kept for a replay."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        changed = control.deactivate(session, account_id, destination_id, control.MANAGED)
    return jsonify({"id": destination_id, "active": False, "deactivated": changed})


@blueprint.post("/api/v1/destinations/<id:destination_id>/retry")
@operation(answer=RetriedNow, errors=(409,))
def retry(destination_id: int) -> Response:
    """Retry now: the destination's waiting retries go at once rather than after their backoff (409 when it is
    deactivated: activate it instead)."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        due = control.retry_now(session, account_id, destination_id, control.MANAGED)
    return jsonify({"id": destination_id, "due": due})


@blueprint.get("/api/v1/destinations/<id:destination_id>/attempts")
@operation(answer=Attempts, query=Limit)
def attempt_log(destination_id: int) -> Response:
    """The destination's recent delivery attempts, newest first."""
    account_id = current_account()
    limit = limit_param()
    with current_runtime().read_sessions() as session:
        admin.get(session, account_id, destination_id)
        return jsonify({"attempts": admin.attempts(session, destination_id, limit)})


def _start_param() -> datetime | None:
    """``?start=2026-11-27T20:23`` (UTC unless an offset is given), or None when not given."""
    text = request.args.get("start")
    if text is None:
        return None
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("must be the period's start as YYYY-MM-DDTHH:MM[:SS] (UTC)", "start") from None
    return start if start.tzinfo else start.replace(tzinfo=timezone.utc)


@blueprint.post("/api/v1/destinations/<id:destination_id>/export")
@operation(answer=Exported, query=ExportPeriod, errors=(502,))
def export_again(destination_id: int) -> Response:
    """Regenerate one closed period's file from the store and upload it again: `?start=2026-11-27T20:23`, or
    `?date=2026-11-20[&hour=13]` when one period starts then.

    A failed upload is a DeliveryError, which the central handler answers with 502.
    """
    account_id = current_account()
    start = _start_param()
    day = None
    if start is None:
        try:
            day = date.fromisoformat(request.args.get("date", ""))
        except ValueError:
            raise ValidationError("must be a date as YYYY-MM-DD (or give start)", "date") from None
    hour = request.args.get("hour")
    if hour is not None and not hour.isdigit():
        raise ValidationError("must be an hour from 0 to 23", "hour")
    receipt = export.export_period(current_runtime(), destination_id, day, int(hour) if hour else None,
                                   start=start, account_id=account_id)
    return jsonify({"ok": True, "detail": receipt.detail})


@blueprint.post("/api/v1/destinations/<id:destination_id>/flush")
@operation(answer=Flushed, errors=(502,))
def flush(destination_id: int) -> Response:
    """Send now: close a file destination's current period and upload it, or send an email destination's
    waiting events without waiting out its interval. A failed upload or send is answered with 502."""
    return jsonify({"ok": True, **flush_now(current_runtime(), current_account(), destination_id)})
