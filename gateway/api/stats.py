"""GET /api/v1/stats and the health check."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gateway import health as process_health
from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.schemas import Health, Stats
from gateway.stats import account_stats

blueprint = Blueprint("stats", __name__)


@blueprint.get("/api/v1/stats")
@operation(answer=Stats)
def get_stats() -> Response:
    """Stored events per type and what waits per destination, for the calling account."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify(account_stats(session, account_id))


@blueprint.get("/healthz")
@operation(answer=Health, caller="anyone", errors=(503,))
def health() -> tuple[Response, int]:
    """Readiness and role: 200 when the store answers, 503 (saying why) when it does not or the process stops."""
    answer = process_health.check(current_runtime())
    return jsonify(answer.body), answer.status
