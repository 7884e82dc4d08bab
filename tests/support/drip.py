"""Slow-drip servers on 127.0.0.1: each connection gets its answer one byte at a time, seconds apart.

Every byte comes well within any per-read timeout, so only an overall deadline ends a client's wait
(or the server stopping, which closes every connection it holds, so clients still waiting get an
error at once).
"""
from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

# An HTTP status line that never ends: the client is always one byte short of its answer.
HTTP_DRIP = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"." * 60_000


@dataclass
class Drip:
    """A running slow-drip server: its port, its ``url`` (HTTP: any path), and how many clients spoke to it."""

    port: int
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        """An HTTP URL of the server."""
        return f"http://127.0.0.1:{self.port}/drip"

    def _arrived(self) -> None:
        with self._lock:
            self.requests += 1


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: bytes, interval: float, read_first: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer, self.interval, self.read_first = answer, interval, read_first
        self.stopping = threading.Event()
        self.drip = Drip(self.server_address[1])
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients giving up is what this server is for."""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        connection: socket.socket = self.request
        with self.server.open_lock:
            self.server.open.add(connection)
        try:
            if self.server.read_first:
                connection.recv(65536)  # the request's start is enough; the rest stays unread
                self.server.drip._arrived()
            for byte in self.server.answer:
                connection.sendall(bytes([byte]))
                if self.server.stopping.wait(self.server.interval):
                    return
            self.server.stopping.wait()
        except OSError:
            return
        finally:
            with self.server.open_lock:
                self.server.open.discard(connection)


@contextlib.contextmanager
def serve_drip(answer: bytes, interval: float, *, read_first: bool = False) -> Iterator[Drip]:
    """Run a server that sends ``answer`` one byte every ``interval`` seconds (then nothing) until the block ends.

    With ``read_first`` it waits for the client's request first (an HTTP client speaks first; an FTP, SMTP
    or SSH client waits for the greeting).
    """
    server = _Server(answer, interval, read_first)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.drip
    finally:
        server.stopping.set()
        with server.open_lock:
            for connection in server.open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        server.shutdown()
        server.server_close()
        thread.join(5)


def serve_slow_drip(interval: float = 3.0) -> contextlib.AbstractContextManager[Drip]:
    """An HTTP endpoint that reads a request, then answers one header byte every ``interval`` seconds, forever."""
    return serve_drip(HTTP_DRIP, interval, read_first=True)
