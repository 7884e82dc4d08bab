"""Prometheus metrics: delivery attempts and latency, and queue depth read from the store on each scrape."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.store import queue
from gateway.store.models import Destination, utcnow

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
        # The age counts from when the oldest waiting event arrived, so it grows during a retry's backoff.
        by_kind: dict[str, tuple[int, datetime]] = {}
        with self.sessions() as session:
            kinds = {ident: kind for ident, kind in session.execute(select(Destination.id, Destination.kind))}
            for destination_id, (count, oldest) in queue.waiting(session, None).items():
                kind = kinds.get(destination_id, "")
                total, first = by_kind.get(kind, (0, oldest))
                by_kind[kind] = (total + count, min(first, oldest))
        for kind, (count, oldest) in sorted(by_kind.items()):
            depth.add_metric([kind], count)
            age.add_metric([kind], max(0.0, (now - oldest).total_seconds()))
        yield depth
        yield age
