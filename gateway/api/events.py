"""Events: POST /api/v1/events takes in a JSON array or NDJSON of up to max_batch events, all or nothing
(gzip-compressed if the producer likes)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway.api.auth import current_account
from gateway.api.body import read_body
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.schemas import Event, IngestResult
from gateway.ingest import store_request
from gateway.ingest_body import parse_events

blueprint = Blueprint("events", __name__)


@blueprint.post("/api/v1/events")
@operation(answer=IngestResult, body=list[Event], body_media_types=("application/json", "application/x-ndjson"),
           errors=(415,))
def post_events() -> tuple[Response, int]:
    """Store the posted events; answers how many were accepted and how many were duplicates."""
    account_id = current_account()
    rt = current_runtime()
    events = parse_events(read_body(rt.settings.max_body_bytes), request.content_type or "", rt.settings.max_batch)
    result = store_request(rt.sessions, account_id, events)
    return jsonify({"accepted": result.accepted, "duplicates": result.duplicates}), 200
