"""The delivery engine: runs push delivery, file export and retention as jobs on one thread pool.

Each job source names the destinations with due work and delivers one of them per call;
the engine keeps at most one job in flight per destination, so a slow destination holds
only its own thread. Retention runs on the polling thread every ``PURGE_EVERY_SECONDS``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from gateway.delivery import retention
from gateway.delivery.export import Exporter
from gateway.delivery.outcomes import OnDeactivate
from gateway.delivery.push import Pusher
from gateway.runtime import Runtime
from gateway.store.models import utcnow

log = logging.getLogger(__name__)
PURGE_EVERY_SECONDS = 600.0


class Dispatcher:
    """Polls the job sources and runs their deliveries on a thread pool, at most one in flight per destination."""

    def __init__(self, runtime: Runtime, on_deactivate: OnDeactivate | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._pool = ThreadPoolExecutor(max_workers=self.settings.dispatch_concurrency,
                                        thread_name_prefix="dispatch")
        self._busy: dict[int, Future[object]] = {}
        self._stop = threading.Event()
        self._pusher = Pusher(runtime, self._stop, on_deactivate)
        self._exporter = Exporter(runtime, on_deactivate)
        self._sources: tuple[tuple[Callable[[datetime], list[int]], Callable[[int], object]], ...] = (
            (self._pusher.due_destinations, self._pusher.deliver_due),
            (self._exporter.due_destinations, self._exporter.export_due),
        )

    def run_once(self) -> int:
        """Start a job for every destination with due work and none in flight; returns how many started."""
        self._busy = {k: f for k, f in self._busy.items() if not f.done()}
        started = 0
        now = utcnow()
        for due_destinations, job in self._sources:
            for destination_id in due_destinations(now):
                if self._stop.is_set() or destination_id in self._busy:
                    continue
                try:
                    self._busy[destination_id] = self._pool.submit(job, destination_id)
                except RuntimeError:  # the pool was shut down: stop() ran, or the interpreter is exiting
                    self._stop.set()
                    return started
                started += 1
        return started

    def run_forever(self) -> None:
        """Poll for due work until stop() is called; purge old work now and then."""
        next_purge = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_purge:
                    purged = retention.purge(self.runtime.sessions, self.settings)
                    log.info("purged %s", purged)
                    next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                started = self.run_once()
            except Exception:
                log.exception("dispatcher loop failed; retrying")
                started = 0
            if not started:
                self._stop.wait(self.settings.dispatch_interval_seconds)
            else:
                self._stop.wait(0.05)

    def drain(self, timeout: float = 30.0) -> None:
        """Run until nothing is due or in flight (for tests and one-shot runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.run_once()
            for future in list(self._busy.values()):
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            if not started:
                return
        raise TimeoutError("dispatcher did not drain in time")

    def stop(self) -> None:
        """Stop polling, wait for deliveries in flight and close the sinks."""
        self._stop.set()
        self._pool.shutdown(wait=True)
        self._pusher.close()
