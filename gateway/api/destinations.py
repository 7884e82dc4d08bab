"""REST management of email and file destinations: /api/v1/destinations."""
from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, jsonify, request

from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.params import flag, json_body, limit_param
from gateway.delivery import export
from gateway.destinations import management as admin
from gateway.errors import ValidationError

blueprint = Blueprint("destinations", __name__)


@blueprint.post("/api/v1/destinations")
def create() -> tuple[Response, int]:
    """Create an email, ftp or sftp destination; with `test: true`, refuse one that fails its test."""
    account_id = current_account()
    payload = json_body()
    return jsonify(admin.create_tested(current_runtime(), account_id, payload, bool(payload.get("test")))), 201


@blueprint.get("/api/v1/destinations")
def list_all() -> Response:
    """The caller's email and file destinations, filtered by `kind`."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        found = admin.list_destinations(session, account_id, request.args.get("kind"))
        return jsonify({"destinations": [admin.view(session, d) for d in found]})


@blueprint.get("/api/v1/destinations/<int:destination_id>")
def show(destination_id: int) -> Response:
    """One destination (secrets are never shown)."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify(admin.view(session, admin.get(session, account_id, destination_id)))


@blueprint.put("/api/v1/destinations/<int:destination_id>")
def change(destination_id: int) -> Response:
    """Change settings or event types; secrets left out of the request are kept."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        return jsonify(admin.view(session, admin.change(session, account_id, destination_id, json_body())))


@blueprint.delete("/api/v1/destinations/<int:destination_id>")
def remove(destination_id: int) -> tuple[str, int]:
    """Delete a destination."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        admin.remove(session, admin.get(session, account_id, destination_id))
    return "", 204


@blueprint.post("/api/v1/destinations/<int:destination_id>/test")
def test(destination_id: int) -> Response:
    """Send a test email, or upload and remove a test file, and report how it went."""
    return jsonify(admin.check_now(current_runtime(), current_account(), destination_id))


@blueprint.post("/api/v1/destinations/<int:destination_id>/activate")
def activate(destination_id: int) -> Response:
    """Activate; `replay=true` delivers what accumulated while deactivated, otherwise it is dropped."""
    account_id = current_account()
    replay = flag("replay")
    with current_runtime().sessions.begin() as session:
        return jsonify(admin.activate(session, admin.get(session, account_id, destination_id), replay))


@blueprint.get("/api/v1/destinations/<int:destination_id>/attempts")
def attempt_log(destination_id: int) -> Response:
    """The destination's recent delivery attempts, newest first."""
    account_id = current_account()
    limit = limit_param()
    with current_runtime().read_sessions() as session:
        admin.get(session, account_id, destination_id)
        return jsonify({"attempts": admin.attempts(session, destination_id, limit)})


@blueprint.post("/api/v1/destinations/<int:destination_id>/export")
def export_again(destination_id: int) -> Response:
    """Regenerate one closed period's file from the store and upload it again: `?date=2026-11-20[&hour=13]`.

    A failed upload is a DeliveryError, which the central handler answers with 502.
    """
    account_id = current_account()
    try:
        day = date.fromisoformat(request.args.get("date", ""))
    except ValueError:
        raise ValidationError("must be a date as YYYY-MM-DD", "date") from None
    hour = request.args.get("hour")
    if hour is not None and not hour.isdigit():
        raise ValidationError("must be an hour from 0 to 23", "hour")
    receipt = export.export_period(current_runtime(), destination_id, day, int(hour) if hour else None,
                                   account_id=account_id)
    return jsonify({"ok": True, "detail": receipt.detail})
