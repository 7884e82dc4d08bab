"""GET /api/v1/stats and the health check."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.stats import account_stats

blueprint = Blueprint("stats", __name__)


@blueprint.get("/api/v1/stats")
def get_stats() -> Response:
    """Stored events per type and what waits per destination, for the calling account."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify(account_stats(session, account_id))


@blueprint.get("/healthz")
def health() -> Response:
    """200 when the store answers."""
    with current_runtime().engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return jsonify({"status": "ok"})
