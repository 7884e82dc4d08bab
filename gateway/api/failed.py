"""REST view of failed deliveries across the account's destinations, and their re-drive: /api/v1/failed."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.params import MAX_ID, json_body, limit_param, time_param
from gateway.api.schemas import Failed, FailedQuery, RedriveRequest, Requeued
from gateway.destinations import control
from gateway.errors import ValidationError

blueprint = Blueprint("failed", __name__)


def _id(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ValidationError(f"must be an id, a whole number from 1 to {MAX_ID}", name)
    return value


def _destination_param() -> int | None:
    """``?destination=ID``, or None when not given."""
    text = request.args.get("destination")
    if text is None:
        return None
    return _id(int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else 0, "destination")


@blueprint.get("/api/v1/failed")
@operation(answer=Failed, query=FailedQuery)
def failed() -> Response:
    """Failed deliveries across the account's destinations (or one: `destination`), newest first: failed
    attempts with what the receiver answered, and parked events with why; `before` pages back in time."""
    account_id = current_account()
    limit = limit_param(most=control.MAX_LIMIT)
    before: datetime | None = time_param("before") if "before" in request.args else None
    destination_id = _destination_param()
    with current_runtime().read_sessions() as session:
        found = control.failed_deliveries(session, account_id, limit=limit, before=before,
                                          destination_id=destination_id)
    return jsonify({"failed": found})


@blueprint.post("/api/v1/failed/redrive")
@operation(answer=Requeued, body=RedriveRequest, body_optional=True)
def redrive() -> Response:
    """Queue parked events again, due now: every one of the account's, or those of `{"destination_id": ID}`,
    or only `{"event_ids": [...]}` (the ids the list shows); an empty body re-drives them all."""
    account_id = current_account()
    payload = json_body(RedriveRequest, optional=True)
    destination_id = None if payload.get("destination_id") is None else _id(payload["destination_id"],
                                                                            "destination_id")
    event_ids = payload.get("event_ids") or []
    if not isinstance(event_ids, list) or len(event_ids) > control.MAX_LIMIT:
        raise ValidationError(f"must be a list of at most {control.MAX_LIMIT} event ids", "event_ids")
    ids = [_id(event_id, "event_ids") for event_id in event_ids]
    with current_runtime().sessions.begin() as session:
        return jsonify({"requeued": control.redrive(session, account_id, destination_id=destination_id,
                                                    event_ids=ids)})
