"""REST management of webhooks: /api/v1/webhooks."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.params import flag, json_body, limit_param, time_param
from gateway.destinations import webhooks

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
