"""GET /metrics: Prometheus text exposition, for the holder of the metrics_token only."""
from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from werkzeug.exceptions import NotFound

from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.metrics import REGISTRY, QueueCollector

blueprint = Blueprint("metrics", __name__)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_matches(header: str, token: str) -> bool:
    """Whether an Authorization header carries ``Bearer <token>``; compared in constant time (of equal-length
    digests), so the answer's timing tells nothing about how much of a guess was right."""
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(_digest(given.strip()), _digest(token))


@blueprint.get("/metrics")
@operation(answer=str, caller="metrics", media_type=CONTENT_TYPE_LATEST)
def metrics() -> Response | tuple[Response, int]:
    """Attempts by outcome, delivery latency, and queue depth and age per destination kind.

    The figures span every account, so they are served only with the configured bearer token;
    without one configured, not at all (404).
    """
    runtime = current_runtime()
    token = runtime.settings.metrics_token
    if not token:
        raise NotFound("/metrics is not served: no metrics_token is configured")
    if not token_matches(request.headers.get("Authorization", ""), token):
        response = jsonify({"error": "unauthorized",
                            "message": "/metrics needs the header Authorization: Bearer <metrics_token>"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="eventgw metrics"'
        return response, 401
    queue = CollectorRegistry()
    queue.register(QueueCollector(runtime.read_sessions))
    return Response(generate_latest(REGISTRY) + generate_latest(queue), content_type=CONTENT_TYPE_LATEST)
