"""Events: POST /api/v1/events takes in a JSON array or NDJSON of up to max_batch events, all or nothing."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.ingest import ingest_request, parse_body

blueprint = Blueprint("events", __name__)


@blueprint.post("/api/v1/events")
def post_events() -> tuple[Response, int]:
    """Store the posted events; answers how many were accepted and how many were duplicates."""
    account_id = current_account()
    rt = current_runtime()
    raws = parse_body(request.get_data(cache=False), request.content_type or "", rt.settings.max_batch)
    result = ingest_request(rt.sessions, account_id, raws)
    return jsonify({"accepted": result.accepted, "duplicates": result.duplicates}), 200
