"""REST management of webhooks: /api/v1/webhooks."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.params import flag, json_body, limit_param, time_param
from gateway.api.schemas import (
    Activated,
    Attempts,
    Deactivated,
    Limit,
    Replayed,
    ReplayFlag,
    ReplayWindow,
    RetriedNow,
    Verified,
    Webhook,
    WebhookChange,
    WebhookCreate,
    WebhookFilter,
    WebhookList,
)
from gateway.destinations import control, outbound, webhooks
from gateway.destinations import management as admin

blueprint = Blueprint("webhooks", __name__)
READ_ONLY = admin.read_only("/api/v1/webhooks")
CHANGE_FIELDS = tuple(name for name in admin.WEBHOOK_FIELDS if name != "verify")


@blueprint.post("/api/v1/webhooks")
@operation(answer=Webhook, status=201, body=WebhookCreate)
def create() -> tuple[Response, int]:
    """Create a webhook; with `verify: true`, refuse a URL that does not answer 2xx to a test event."""
    account_id = current_account()
    rt = current_runtime()
    payload = json_body(admin.WEBHOOK_FIELDS, READ_ONLY)
    return jsonify(webhooks.create_verified(rt.sessions, account_id, payload, rt.settings,
                                            bool(payload.get("verify")))), 201


@blueprint.get("/api/v1/webhooks")
@operation(answer=WebhookList, query=WebhookFilter)
def list_all() -> Response:
    """The caller's webhooks, filtered by `app` and `event`."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        found = webhooks.list_webhooks(session, account_id, request.args.get("app"), request.args.get("event"))
        return jsonify({"webhooks": [webhooks.view(session, d) for d in found]})


@blueprint.get("/api/v1/webhooks/<id:webhook_id>")
@operation(answer=Webhook)
def show(webhook_id: int) -> Response:
    """One webhook."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify(webhooks.view(session, webhooks.get(session, account_id, webhook_id)))


@blueprint.put("/api/v1/webhooks/<id:webhook_id>")
@operation(answer=Webhook, body=WebhookChange)
def change(webhook_id: int) -> Response:
    """Change a webhook without deactivating it."""
    account_id = current_account()
    rt, payload = current_runtime(), json_body(CHANGE_FIELDS, READ_ONLY)
    outbound.check_change(payload, rt.settings)
    with rt.sessions.begin() as session:
        destination = webhooks.update_webhook(session, account_id, webhook_id, payload)
        return jsonify(webhooks.view(session, destination))


@blueprint.delete("/api/v1/webhooks/<id:webhook_id>")
@operation(status=204)
def remove(webhook_id: int) -> tuple[str, int]:
    """Delete a webhook."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        webhooks.delete_webhook(session, account_id, webhook_id)
    return "", 204


@blueprint.post("/api/v1/webhooks/<id:webhook_id>/verify")
@operation(answer=Verified)
def verify(webhook_id: int) -> Response:
    """Send a test event and report what the endpoint answered."""
    account_id = current_account()
    rt = current_runtime()
    return jsonify(webhooks.verify(rt.read_sessions, account_id, webhook_id, rt.settings))


@blueprint.post("/api/v1/webhooks/<id:webhook_id>/activate")
@operation(answer=Activated, query=ReplayFlag)
def activate(webhook_id: int) -> Response:
    """Activate; `replay=true` delivers what accumulated while deactivated, otherwise it is dropped."""
    account_id = current_account()
    replay = flag("replay")
    with current_runtime().sessions.begin() as session:
        return jsonify(webhooks.activate(session, account_id, webhook_id, replay))


@blueprint.post("/api/v1/webhooks/<id:webhook_id>/deactivate")
@operation(answer=Deactivated)
def deactivate(webhook_id: int) -> Response:
    """Deactivate: nothing is sent until it is activated again; its events are kept for a replay."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        changed = control.deactivate(session, account_id, webhook_id, control.WEBHOOKS)
    return jsonify({"id": webhook_id, "active": False, "deactivated": changed})


@blueprint.post("/api/v1/webhooks/<id:webhook_id>/retry")
@operation(answer=RetriedNow, errors=(409,))
def retry(webhook_id: int) -> Response:
    """Retry now: the webhook's waiting retries are sent at once rather than after their backoff (409 when it is
    deactivated: activate it instead)."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        return jsonify({"id": webhook_id, "due": control.retry_now(session, account_id, webhook_id, control.WEBHOOKS)})


@blueprint.post("/api/v1/webhooks/<id:webhook_id>/replay")
@operation(answer=Replayed, query=ReplayWindow)
def replay(webhook_id: int) -> Response:
    """Deliver again every event of the webhook's types that occurred in [since, until)."""
    account_id = current_account()
    since, until = time_param("since"), time_param("until")
    with current_runtime().sessions.begin() as session:
        return jsonify({"id": webhook_id, "queued": webhooks.replay(session, account_id, webhook_id, since, until)})


@blueprint.get("/api/v1/webhooks/<id:webhook_id>/attempts")
@operation(answer=Attempts, query=Limit)
def attempt_log(webhook_id: int) -> Response:
    """The webhook's recent delivery attempts, newest first."""
    account_id = current_account()
    limit = limit_param()
    with current_runtime().read_sessions() as session:
        return jsonify({"attempts": webhooks.attempts(session, account_id, webhook_id, limit)})
