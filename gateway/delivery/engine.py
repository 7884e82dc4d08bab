"""The delivery engine: runs push delivery, file export and retention as jobs on one thread pool.

Each job source names the destinations with due work and delivers one of them per call;
the engine keeps at most one job in flight per destination and at most the account's
share (``account_concurrency``) per account, taking accounts in turns, so a slow
destination holds only its own thread and a slow account only its own share. Jobs start
only on free threads, never queue behind busy ones. ``shutdown`` stops cleanly within a
grace period. Retention runs on a thread of its own every ``PURGE_EVERY_SECONDS``.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime
from itertools import zip_longest

from sqlalchemy import select

from gateway.delivery import retention
from gateway.delivery.export import Exporter
from gateway.delivery.outcomes import OnDeactivate
from gateway.delivery.push import Pusher
from gateway.runtime import Runtime
from gateway.store.models import Destination, utcnow

log = logging.getLogger(__name__)
PURGE_EVERY_SECONDS = 600.0
# How long stop() waits for the polling loop and a purge to notice it: one poll, or one purge batch.
STOP_WAIT_SECONDS = 30.0


class Dispatcher:
    """Polls the job sources and runs their deliveries on a thread pool: at most one in flight per
    destination and at most ``account_concurrency`` per account, so that one account's slow or
    hanging endpoints hold only its own share of the threads."""

    def __init__(self, runtime: Runtime, on_deactivate: OnDeactivate | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._threads = self.settings.dispatch_concurrency
        # One account never takes every thread: with more than one, one stays for the others.
        self._account_share = max(1, min(self.settings.account_concurrency, self._threads - 1))
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="dispatch")
        self._busy: dict[int, Future[object]] = {}
        self._accounts: dict[int, int] = {}
        self._stop = threading.Event()
        # run_forever's loop and its purge thread, which stop() waits for: no thread of this engine may
        # still hold a connection when the caller closes the store.
        self._loop_ended = threading.Event()
        self._looping = False
        self._purging: threading.Thread | None = None
        self._pusher = Pusher(runtime, self._stop, on_deactivate)
        self._exporter = Exporter(runtime, on_deactivate)
        self._sources: tuple[tuple[Callable[[datetime], list[int]], Callable[[int], object]], ...] = (
            (self._pusher.due_destinations, self._pusher.deliver_due),
            (self._exporter.due_destinations, self._exporter.export_due),
        )

    def run_once(self) -> int:
        """Start jobs for destinations with due work and none in flight, taking accounts in turn and
        within their shares, as many as the pool has free threads; returns how many started."""
        self._busy = {k: f for k, f in self._busy.items() if not f.done()}
        if self._stop.is_set():
            return 0
        now = utcnow()
        waiting: list[tuple[int, Callable[[int], object]]] = [
            (destination_id, job) for due_destinations, job in self._sources
            for destination_id in due_destinations(now) if destination_id not in self._busy]
        owners = self._owners([destination_id for destination_id, _ in waiting])
        running = Counter(owners.get(destination_id) for destination_id in self._busy)
        started = 0
        for destination_id, job in _in_turns(waiting, owners):
            account = owners.get(destination_id)
            if len(self._busy) >= self._threads:
                break
            if running[account] >= self._account_share or destination_id in self._busy:
                continue
            try:
                self._busy[destination_id] = self._pool.submit(job, destination_id)
            except RuntimeError:  # the pool was shut down: stop() ran, or the interpreter is exiting
                self._stop.set()
                return started
            running[account] += 1
            started += 1
        return started

    def _owners(self, destination_ids: list[int]) -> dict[int, int]:
        """The account of each destination (remembered: a destination never changes hands)."""
        unknown = [ident for ident in destination_ids if ident not in self._accounts]
        if unknown:
            with self.runtime.read_sessions() as session:
                found = session.execute(
                    select(Destination.id, Destination.account_id).where(Destination.id.in_(unknown)))
                self._accounts.update((ident, account) for ident, account in found)
        return self._accounts

    def run_forever(self) -> None:
        """Poll for due work until stop() or shutdown() is called; purge old work now and then."""
        self._looping = True
        next_purge = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if time.monotonic() >= next_purge and (self._purging is None or not self._purging.is_alive()):
                        # On a thread of its own: a purge of millions of rows must not hold up deliveries.
                        self._purging = threading.Thread(target=self._purge, name="retention", daemon=True)
                        self._purging.start()
                        next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                    started = self.run_once()
                except Exception:
                    log.exception("dispatcher loop failed; retrying")
                    started = 0
                if not started:
                    self._stop.wait(self.settings.dispatch_interval_seconds)
                else:
                    self._stop.wait(0.05)
        finally:
            self._loop_ended.set()

    def _purge(self) -> None:
        """Purge old work in small batches, until done or the engine stops."""
        try:
            purged = retention.purge(self.runtime.sessions, self.settings, self._stop)
            if any(dataclasses.astuple(purged)):
                log.info("purged %s", purged)
        except Exception:
            log.exception("purge failed; it runs again in %s s", PURGE_EVERY_SECONDS)

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

    def shutdown(self, grace_seconds: float) -> int:
        """Stop cleanly: lease nothing more from now on, let the deliveries in flight finish and
        settle for up to ``grace_seconds``, then give back (release, not settle) the push
        batches still in flight, due at once under the same message id, so another worker
        takes them without waiting for their leases to run out. Returns how many batches were
        given back. Nothing delivered and settled within the grace is sent again. Safe to call
        from any thread (a signal handler's too), and more than once; ``run_forever`` returns.
        A delivery still running is not waited for further (what it settles later is ignored),
        but Python joins pool threads at exit: it ends at the latest at its delivery deadline.
        File periods being uploaded stay leased until their upload ends or their lease runs out.
        """
        self._stop.set()
        wait(list(self._busy.values()), timeout=max(0.0, grace_seconds))
        self._pool.shutdown(wait=False, cancel_futures=True)
        released = self._pusher.release_in_flight()
        self._join_threads()
        if released:
            log.warning("shutdown: gave back %s batch(es) still in flight after %g s", released, grace_seconds)
        self._pusher.close()
        return released

    def stop(self) -> None:
        """Stop polling, wait for the polling loop, a purge (which ends between batches) and the deliveries in
        flight, and close the sinks."""
        self._stop.set()
        self._join_threads()
        self._pool.shutdown(wait=True)
        self._pusher.close()

    def _join_threads(self) -> None:
        """Wait for the polling loop and a purge (which ends between batches) to notice the stop."""
        if self._looping:
            self._loop_ended.wait(STOP_WAIT_SECONDS)
        if self._purging is not None:
            self._purging.join(STOP_WAIT_SECONDS)


def _in_turns(waiting: list[tuple[int, Callable[[int], object]]], owners: dict[int, int]
              ) -> list[tuple[int, Callable[[int], object]]]:
    """The waiting jobs with the accounts taking turns: each account's first, then each one's second, ..."""
    queues: dict[int | None, list[tuple[int, Callable[[int], object]]]] = {}
    for item in waiting:
        queues.setdefault(owners.get(item[0]), []).append(item)
    rounds = zip_longest(*queues.values())
    return [item for round_ in rounds for item in round_ if item is not None]
