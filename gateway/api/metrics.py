"""GET /metrics: Prometheus text exposition."""
from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.api.context import current_runtime
from gateway.metrics import REGISTRY, QueueCollector

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Response:
    """Attempts by outcome, delivery latency, and queue depth and age per destination kind."""
    queue = CollectorRegistry()
    queue.register(QueueCollector(current_runtime().read_sessions))
    return Response(generate_latest(REGISTRY) + generate_latest(queue), content_type=CONTENT_TYPE_LATEST)
