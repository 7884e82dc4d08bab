"""REST management of webhooks, routes and notices: /api/v1/webhooks, /api/v1/routes, /api/v1/notifications."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway import notices
from gateway.api.auth import current_account
from gateway.api.params import flag, json_body, limit_param, time_param
from gateway.destinations import routing, webhooks
from gateway.errors import ValidationError
from gateway.events import model
from gateway.runtime import current_runtime

blueprint = Blueprint("webhooks", __name__)


@blueprint.post("/api/v1/webhooks")
def create() -> tuple[Response, int]:
    """Create a webhook; with `verify: true`, refuse a URL that does not answer 2xx to a test event."""
    account_id = current_account()
    rt = current_runtime()
    payload = json_body()
    return jsonify(webhooks.create_verified(rt.sessions, account_id, payload, rt.settings,
                                            bool(payload.get("verify")))), 201


@blueprint.get("/api/v1/webhooks")
def list_all() -> Response:
    """The caller's webhooks, filtered by `app` and `event`."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        found = webhooks.list_webhooks(session, account_id, request.args.get("app"), request.args.get("event"))
        return jsonify({"webhooks": [webhooks.view(session, d) for d in found]})


@blueprint.get("/api/v1/webhooks/<int:webhook_id>")
def show(webhook_id: int) -> Response:
    """One webhook."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify(webhooks.view(session, webhooks.get(session, account_id, webhook_id)))


@blueprint.put("/api/v1/webhooks/<int:webhook_id>")
def change(webhook_id: int) -> Response:
    """Change a webhook without deactivating it."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        destination = webhooks.update_webhook(session, account_id, webhook_id, json_body())
        return jsonify(webhooks.view(session, destination))


@blueprint.delete("/api/v1/webhooks/<int:webhook_id>")
def remove(webhook_id: int) -> tuple[str, int]:
    """Delete a webhook."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        webhooks.delete_webhook(session, account_id, webhook_id)
    return "", 204


@blueprint.post("/api/v1/webhooks/<int:webhook_id>/verify")
def verify(webhook_id: int) -> Response:
    """Send a test event and report what the endpoint answered."""
    account_id = current_account()
    rt = current_runtime()
    return jsonify(webhooks.verify(rt.read_sessions, account_id, webhook_id, rt.settings))


@blueprint.post("/api/v1/webhooks/<int:webhook_id>/activate")
def activate(webhook_id: int) -> Response:
    """Activate; `replay=true` delivers what accumulated while deactivated, otherwise it is dropped."""
    account_id = current_account()
    replay = flag("replay")
    with current_runtime().sessions.begin() as session:
        return jsonify(webhooks.activate(session, account_id, webhook_id, replay))


@blueprint.post("/api/v1/webhooks/<int:webhook_id>/replay")
def replay(webhook_id: int) -> Response:
    """Deliver again every event of the webhook's types that occurred in [since, until)."""
    account_id = current_account()
    since, until = time_param("since"), time_param("until")
    with current_runtime().sessions.begin() as session:
        return jsonify({"id": webhook_id, "queued": webhooks.replay(session, account_id, webhook_id, since, until)})


@blueprint.get("/api/v1/webhooks/<int:webhook_id>/attempts")
def attempt_log(webhook_id: int) -> Response:
    """The webhook's recent delivery attempts, newest first."""
    account_id = current_account()
    limit = limit_param()
    with current_runtime().read_sessions() as session:
        return jsonify({"attempts": webhooks.attempts(session, account_id, webhook_id, limit)})


@blueprint.get("/api/v1/routes")
def routes() -> Response:
    """Every event type with the destinations it goes to."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify({"routes": routing.routes_table(session, account_id)})


@blueprint.put("/api/v1/routes/<event_type>")
def set_route(event_type: str) -> Response:
    """Route one type to exactly the given destinations: `{"destinations": [id, ...]}`."""
    account_id = current_account()
    try:
        etype = model.normalize_type(event_type)
    except ValueError as exc:
        raise ValidationError(str(exc), "type") from None
    ids = json_body().get("destinations")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValidationError("must be a list of destination ids", "destinations")
    with current_runtime().sessions.begin() as session:
        routing.set_route(session, account_id, etype, ids)
        return jsonify({"type": etype, "destinations": routing.routes_table(session, account_id)[etype]})


@blueprint.get("/api/v1/notifications")
def notifications() -> Response:
    """Operational notices for the account (a webhook deactivated, say), newest first."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify({"notifications": webhooks.notices(session, account_id)})


@blueprint.get("/api/v1/notifications/email")
def notice_email() -> Response:
    """Where the account's operational notices are mailed (null: they are only listed here)."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify({"email": notices.notice_address(session, account_id)})


@blueprint.put("/api/v1/notifications/email")
def set_notice_email() -> Response:
    """Mail the account's operational notices to `{"email": ...}`; `{"email": null}` stops mailing them."""
    account_id = current_account()
    payload = json_body()
    if "email" not in payload:
        raise ValidationError("is required (an address, or null to stop mailing notices)", "email")
    with current_runtime().sessions.begin() as session:
        notices.set_notice_address(session, account_id, payload["email"])
        return jsonify({"email": notices.notice_address(session, account_id)})
