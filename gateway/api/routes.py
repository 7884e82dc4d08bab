"""REST routing: which destinations each event type goes to, /api/v1/routes."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.params import json_body
from gateway.api.schemas import Route, RouteChange, RoutesTable
from gateway.destinations import routing
from gateway.errors import ValidationError
from gateway.events import model

blueprint = Blueprint("routes", __name__)


@blueprint.get("/api/v1/routes")
@operation(answer=RoutesTable)
def table() -> Response:
    """Every event type with the destinations it goes to."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify({"routes": routing.routes_table(session, account_id)})


@blueprint.put("/api/v1/routes/<event_type>")
@operation(answer=Route, body=RouteChange)
def set_route(event_type: str) -> Response:
    """Route one type to exactly the given destinations: `{"destinations": [id, ...]}`."""
    account_id = current_account()
    try:
        etype = model.normalize_type(event_type)
    except ValueError as exc:
        raise ValidationError(str(exc), "type") from None
    ids = json_body(RouteChange).get("destinations")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValidationError("must be a list of destination ids", "destinations")
    with current_runtime().sessions.begin() as session:
        routing.set_route(session, account_id, etype, ids)
        return jsonify({"type": etype, "destinations": routing.routes_table(session, account_id)[etype]})
