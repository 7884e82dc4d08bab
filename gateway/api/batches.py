"""Batches, the REST JSON pull: GET /api/v1/batches, POST /api/v1/batches/{id}/ack, GET /api/v1/batches/{id}."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request

from gateway import pull
from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.errors import ValidationError
from gateway.events import formats

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
def acknowledge(batch_id: str) -> Response:
    """Mark a leased batch as collected."""
    account_id = current_account()
    acknowledged = pull.acknowledge(current_runtime().sessions, account_id, batch_id)
    return jsonify({"batch_id": batch_id, "acknowledged": acknowledged})


@blueprint.get("/api/v1/batches/<batch_id>")
def batch_again(batch_id: str) -> Response:
    """Fetch an earlier batch again, within the recovery window."""
    account_id = current_account()
    rt = current_runtime()
    batch = pull.batch_again(rt.read_sessions, account_id, batch_id, timedelta(days=rt.settings.recovery_days))
    return jsonify(_render(batch))
