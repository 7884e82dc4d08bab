"""A real HTTP server on 127.0.0.1 that records the requests it gets and answers as a test tells it."""
from __future__ import annotations

import contextlib
import ssl
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """How the receiver answers one request.

    ``delay`` waits before answering; ``close`` drops the connection without an answer;
    ``endless`` sends a body that never ends (until the client hangs up).
    """

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    close: bool = False
    endless: bool = False


@dataclass(frozen=True)
class Request:
    """One recorded request; ``headers`` look up names case-insensitively."""

    method: str
    path: str
    headers: Message
    body: bytes
    client_port: int


class Receiver:
    """Controls and inspects a running receiver."""

    def __init__(self, url: str, stopping: threading.Event) -> None:
        self.url = url
        self.requests: list[Request] = []
        self._default = Reply()
        self._queue: deque[Reply] = deque()
        self._lock = threading.Condition()
        self._stopping = stopping

    def respond(self, status: int = 200, body: bytes = b"ok", headers: dict[str, str] | None = None,
                delay: float = 0.0, close: bool = False, endless: bool = False) -> None:
        """Answer every following request this way (after any queued replies)."""
        self._default = Reply(status, body, headers or {}, delay, close, endless)

    def queue(self, replies: Iterable[Reply]) -> None:
        """Answer the next requests with these replies, one each, then fall back to ``respond``'s."""
        with self._lock:
            self._queue.extend(replies)

    def wait_for(self, count: int, timeout: float = 2.0) -> list[Request]:
        """Wait until ``count`` requests have arrived; return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            return list(self.requests)

    def _record(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            return self._queue.popleft() if self._queue else self._default

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed
    receiver: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.receiver._record(Request(self.command, self.path, self.headers, body, self.client_address[1]))
        self.receiver._pause(reply.delay)
        if reply.close:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.endless:
            self.close_connection = True
            self.end_headers()
            self._send_forever()
            return
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_PUT = do_POST

    def _send_forever(self) -> None:
        chunk = b"x" * 65536
        try:
            while not self.receiver._stopping.is_set():
                self.wfile.write(chunk)
        except OSError:
            pass

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients hanging up mid-answer is part of the tests."""


@contextlib.contextmanager
def serve_receiver(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """Run a receiver (over TLS with ``tls``) until the block ends; its ``url`` ends in ``/hook``."""
    stopping = threading.Event()

    class Handler(_Handler):
        """The handler of this server, told its receiver below."""

    server = _Server(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls else "http"
    receiver = Receiver(f"{scheme}://127.0.0.1:{server.server_address[1]}/hook", stopping)
    Handler.receiver = receiver
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
