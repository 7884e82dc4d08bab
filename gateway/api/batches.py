"""Batches, the REST JSON pull: GET /api/v1/batches, POST /api/v1/batches/{id}/ack, GET /api/v1/batches/{id},
and POST /api/v1/pull/requeue (collected events back into the pull queue)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request

from gateway import pull
from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.params import json_body
from gateway.api.schemas import Acknowledged, Batch, BatchQuery, Requeued, RequeueRequest
from gateway.errors import Problem, ValidationError
from gateway.events import formats, model

blueprint = Blueprint("batches", __name__)
DEFAULT_MAX = 1000


def _render(batch: pull.Batch) -> dict[str, Any]:
    return {
        "batch_id": batch.id,
        "mode": batch.mode,
        "lease_until": formats.iso(batch.lease_until),
        "count": len(batch.events),
        "events": [formats.to_json(event) for event in batch.events],
    }


@blueprint.get("/api/v1/batches")
@operation(answer=Batch, query=BatchQuery)
def get_batch() -> Response:
    """Take up to `max` oldest events of `types`; `mode` is lease (default), read or peek."""
    account_id = current_account()
    rt = current_runtime()
    types = pull.check_types(request.args.get("types"), "types")
    limit = pull.check_max(request.args.get("max", DEFAULT_MAX), "max")
    mode = request.args.get("mode", "lease")
    if mode not in ("lease", "read", "peek"):
        raise ValidationError(f"{mode!r} is not one of lease, read, peek", "mode")
    return jsonify(pull.get_batch(rt.sessions, account_id, types, limit, mode, _render,  # type: ignore[arg-type]
                                  lease_seconds=rt.settings.pull_lease_seconds))


@blueprint.post("/api/v1/batches/<batch_id>/ack")
@operation(answer=Acknowledged, errors=(404,))
def acknowledge(batch_id: str) -> Response:
    """Mark a leased batch as collected."""
    account_id = current_account()
    acknowledged = pull.acknowledge(current_runtime().sessions, account_id, batch_id)
    return jsonify({"batch_id": batch_id, "acknowledged": acknowledged})


@blueprint.get("/api/v1/batches/<batch_id>")
@operation(answer=Batch, errors=(404,))
def batch_again(batch_id: str) -> Response:
    """Fetch an earlier batch again, within the recovery window."""
    account_id = current_account()
    rt = current_runtime()
    batch = pull.batch_again(rt.read_sessions, account_id, batch_id, timedelta(days=rt.settings.recovery_days))
    return jsonify(_render(batch))


def _body_time(payload: dict[str, Any], name: str) -> Any:
    value = payload.get(name)
    if value is None:
        return None
    try:
        return model.parse_time(value)
    except ValueError as exc:
        raise ValidationError([Problem(None, name, str(exc))]) from None


@blueprint.post("/api/v1/pull/requeue")
@operation(answer=Requeued, body=RequeueRequest)
def requeue() -> Response:
    """Put back into the pull queue the events collected in [since, until) (until: now), of `types` (every type)."""
    account_id = current_account()
    rt = current_runtime()
    payload = json_body(RequeueRequest)
    since = _body_time(payload, "since")
    if since is None:
        raise ValidationError("is required, as an ISO 8601 time with a zone or Unix seconds", "since")
    types = payload.get("types")
    if types is not None and not isinstance(types, (str, list)):
        raise ValidationError("must be a list of event types or a comma-separated string", "types")
    requeued = pull.requeue_collected(rt.sessions, account_id, since, _body_time(payload, "until"),
                                      pull.check_types(types, "types"), timedelta(days=rt.settings.recovery_days))
    return jsonify({"requeued": requeued})
