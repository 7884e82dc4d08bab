"""The deadline of one delivery attempt: when it passes, the connections the attempt watches are shut down.

A socket timeout bounds each wait for data, not an exchange: a peer that sends one byte every
few seconds never trips it and can hold a delivery (and the dispatcher thread running it)
for as long as it likes. A ``Deadline`` bounds the whole attempt instead: connect, send and
the whole answer. One watchdog thread serves every deadline of the process; when one
passes, it shuts the attempt's sockets down, which wakes the thread blocked on them with
an end of file, and marks the deadline expired so that the sink reports it as such.
"""
from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TypeVar

_S = TypeVar("_S", bound=socket.socket)
_active: ContextVar[Deadline | None] = ContextVar("eventgw_deadline", default=None)


class Deadline:
    """A time limit on one attempt; use it as a context manager around the attempt, and ``watch`` its sockets.

    ``watch`` keeps a duplicate of the socket's file descriptor: shutting the duplicate down ends
    the connection however the attempt wrapped the socket since (TLS included, even mid
    handshake), and the duplicate can never name another connection that reuses the original's
    descriptor. It also keeps the connection open until the attempt ends, so a connection whose
    close the peer waits for (an FTP data connection: its end is the end of the file) is watched
    with ``watch_object`` instead.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._twins: list[socket.socket] = []
        self._objects: list[socket.socket] = []
        self._expired = False
        self._over = False
        self._token: Token[Deadline | None] | None = None

    @property
    def expired(self) -> bool:
        """Whether the deadline passed while the attempt ran (its sockets were then shut down)."""
        return self._expired

    def remaining(self) -> float:
        """Seconds left, at least a millisecond (so that it can serve as a socket timeout)."""
        return max(self.at - time.monotonic(), 0.001)

    def watch(self, sock: _S) -> _S:
        """Shut ``sock``'s connection down when the deadline passes (at once, if it has), even after it was
        wrapped in TLS; returns ``sock``."""
        try:
            twin = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return sock  # closed already: nothing to watch
        with self._lock:
            if self._expired:
                _shut(twin)
            if self._over or self._expired:
                twin.close()
            else:
                self._twins.append(twin)
        return sock

    def watch_object(self, sock: _S) -> _S:
        """Shut ``sock`` down when the deadline passes (at once, if it has); closing it closes the connection
        at once, but a TLS socket wrapped around it later escapes the deadline. Returns ``sock``."""
        with self._lock:
            if not self._over:
                self._objects.append(sock)
            if self._expired:
                _shut(sock)
        return sock

    def expire(self) -> None:
        """End the attempt now: mark the deadline expired and shut its connections down."""
        with self._lock:
            if self._over:
                return  # the attempt ended in time; its connections may be kept alive
            self._expired = True
            twins, self._twins = self._twins, []
            for twin in twins:
                _shut(twin)
                twin.close()
            for sock in self._objects:
                _shut(sock)

    def __enter__(self) -> Deadline:
        self._token = _active.set(self)
        _WATCHDOG.add(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        _WATCHDOG.remove(self)
        if self._token is not None:
            _active.reset(self._token)
        with self._lock:
            self._over = True
            twins, self._twins = self._twins, []
            self._objects = []
        for twin in twins:
            twin.close()


def watch(sock: _S) -> _S:
    """Put ``sock`` under the deadline of the attempt running in this context, if there is one."""
    deadline = _active.get()
    return deadline.watch(sock) if deadline is not None else sock


def watch_object(sock: _S) -> _S:
    """Put ``sock`` itself under the deadline of the attempt running in this context, if there is one."""
    deadline = _active.get()
    return deadline.watch_object(sock) if deadline is not None else sock


# The slowest steady transfer a deadline allows for: an attempt that sends n bytes gets
# n / MIN_TRANSFER_RATE seconds more, so a large file or message on a slow link still goes,
# while a peer that takes a byte every few seconds is still cut off.
MIN_TRANSFER_RATE = 256 * 1024


def for_transfer(seconds: float, size: int) -> float:
    """The deadline of an attempt that sends ``size`` bytes, ``seconds`` being that of a small one."""
    return seconds + size / MIN_TRANSFER_RATE


def _shut(sock: socket.socket) -> None:
    try:
        # The plain socket's shutdown, also for a TLS socket: ssl's own would drop its TLS
        # state under the feet of the thread reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # never connected, or the peer is gone already


class _Watchdog:
    """One daemon thread that expires deadlines when they pass, started on first use."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._pending: set[Deadline] = set()
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._condition:
            heapq.heappush(self._heap, (deadline.at, next(self._counter), deadline))
            self._pending.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="eventgw-deadlines", daemon=True)
                self._thread.start()
            self._condition.notify()

    def remove(self, deadline: Deadline) -> None:
        with self._condition:
            self._pending.discard(deadline)
            # Attempts mostly end long before their deadline: drop their entries now and then,
            # or the heap would hold every attempt of the last deadline's worth of time.
            if len(self._heap) > 2 * len(self._pending) + 64:
                self._heap = [entry for entry in self._heap if entry[2] in self._pending]
                heapq.heapify(self._heap)

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._heap and self._heap[0][2] not in self._pending:
                    heapq.heappop(self._heap)
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                if wait is None or wait > 0:
                    self._condition.wait(wait)
                    continue
                _, _, due = heapq.heappop(self._heap)
                self._pending.discard(due)
            due.expire()


_WATCHDOG = _Watchdog()

