"""Prometheus metrics: delivery attempts and latency, and queue depth read from the store on each scrape."""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.store.models import Destination, QueueItem, utcnow
from gateway.store.queue import PENDING

REGISTRY = CollectorRegistry()
ATTEMPTS = Counter("eventgw_delivery_attempts", "Delivery attempts by outcome", ["outcome"], registry=REGISTRY)
LATENCY = Histogram("eventgw_delivery_seconds", "Time one batch delivery took", registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


class QueueCollector(Collector):
    """Queue depth and the oldest waiting event's age per destination kind, read at scrape time."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("eventgw_queue_depth", "Events waiting per destination kind", labels=["kind"])
        age = GaugeMetricFamily("eventgw_queue_oldest_age_seconds", "Age of the oldest waiting event",
                                labels=["kind"])
        now = utcnow()
        with self.sessions() as session:
            rows = session.execute(
                select(Destination.kind, func.count(), func.min(QueueItem.due_at))
                .join(Destination, Destination.id == QueueItem.destination_id)
                .where(PENDING)
                .group_by(Destination.kind)
            ).all()
        for kind, count, oldest in rows:
            depth.add_metric([kind], count)
            age.add_metric([kind], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield depth
        yield age
