"""The HTTP server of the gateway's web edge: waitress, set up for the gateway's traffic."""
from __future__ import annotations

import errno
import json
import threading
import time
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask

from gateway.api.body import tune_memory
from gateway.api.errors import refusal
from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.runtime import Runtime
from gateway.soap import typed
from gateway.soap.encoding import encode_fault

# A response is held in memory up to this size before waitress spills it to a temporary
# file; a full 10,000-event pull (about 1.5 MB legacy, more typed) stays in memory.
RESPONSE_BUFFER_BYTES = 32 * 2**20
SOAP_PATHS = ("/paint", "/_bus/request.soap", typed.PATH)


def make_server(runtime: Runtime, host: str, port: int, threads: int) -> Any:
    """A waitress server for the gateway's app on host:port (port 0: any free one); call run() on it.

    ConfigError naming the host and port settings when it cannot listen there.
    """
    app = create_app(runtime)
    tune_memory()
    try:
        server = create_server(
            app, host=host, port=port, threads=threads, ident="eventgw",
            # A body over the limit is refused from its Content-Length (or as soon as a chunked
            # one passes it), before waitress reads and buffers it: a JSON 413, or a SOAP Fault.
            max_request_body_size=runtime.settings.max_body_bytes + 1,
            outbuf_overflow=RESPONSE_BUFFER_BYTES,
        )
        answer_refusals(server)
        return server
    except (OSError, ValueError) as exc:  # waitress: ValueError for a host it cannot resolve
        raise ConfigError(f"cannot listen on {host}:{port}: {_why(exc, runtime, port)}") from None


class _RefusalTask(ErrorTask):
    """waitress's answer to a request it refuses itself: a SOAP Fault on the SOAP endpoints, JSON elsewhere."""

    def execute(self) -> None:
        error: Any = self.request.error  # type: ignore[attr-defined]
        path = str(getattr(self.request, "path", "") or "")
        limit = self.channel.server.adj.max_request_body_size - 1
        answer = refusal(error.code, error.reason, str(error.body), limit)
        if path.startswith(SOAP_PATHS):
            # SOAP 1.1 carries a fault with HTTP 500, whatever went wrong.
            self.status = "500 Internal Server Error"
            self.response_headers = [("Content-Type", "text/xml; charset=utf-8")]
            data = encode_fault("Client", str(answer["message"]))
        else:
            self.status = f"{error.code} {error.reason}"
            self.response_headers = [("Content-Type", "application/json")]
            data = json.dumps(answer).encode()
        self.set_close_on_finish()
        self.content_length = len(data)
        self.write(data)


class _RefusingChannel(HTTPChannel):
    error_task_class = _RefusalTask


def answer_refusals(server: Any) -> None:
    """Make a waitress server (from create_server: one listener or several) answer the requests it refuses
    itself (a body over max_request_body_size, a malformed request) as the application would: JSON, or a
    SOAP Fault on the SOAP endpoints."""
    listeners = [s for s in getattr(server, "map", {}).values() if isinstance(s, BaseWSGIServer)] or [server]
    for listener in listeners:
        listener.channel_class = _RefusingChannel


def _why(exc: OSError | ValueError, runtime: Runtime, port: int) -> str:
    """What went wrong when binding, and which setting to change."""
    settings = runtime.settings
    change_port = f"choose another port (--port or EVENTGW_PORT; port is from {settings.origin('port')})"
    change_host = (f"set host to an address of this machine (--host or EVENTGW_HOST; host is from "
                   f"{settings.origin('host')})")
    code = exc.errno if isinstance(exc, OSError) else None
    if code == errno.EADDRINUSE:
        return f"the port is already in use; stop whatever listens there, or {change_port}"
    if code == errno.EACCES:
        return f"permission denied (ports below 1024 need privileges); {change_port}"
    if code == errno.EADDRNOTAVAIL or isinstance(exc, ValueError):
        return f"no such address here; {change_host}"
    return f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}; {change_host}, or {change_port}"


def run_until_stopped(server: Any, stopping: threading.Event, grace: float) -> None:
    """Run ``server`` (in this thread) until ``stopping`` is set; then stop accepting connections, let
    the requests in flight finish and their answers go out (at most ``grace`` seconds), and return."""
    watcher = threading.Thread(target=_close_when_stopping, args=(server, stopping, grace), name="web-shutdown",
                               daemon=True)
    watcher.start()
    server.run()
    server.task_dispatcher.shutdown()


def _close_when_stopping(server: Any, stopping: threading.Event, grace: float) -> None:
    stopping.wait()
    # Closing the listening socket makes new connections fail at once, so a load balancer
    # sends them to another web process; connections already open stay served.
    server.trigger.pull_trigger(lambda: wasyncore.dispatcher.close(server))
    deadline = time.monotonic() + grace
    while _busy(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    # With every channel closed (the trigger too) waitress's loop has nothing left and returns.
    server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))


def _busy(server: Any) -> bool:
    """Whether some connection has a request being read, run or answered (idle keep-alive ones do not count)."""
    return any(channel.requests or channel.request is not None or channel.total_outbufs_len
               for channel in list(server.active_channels.values()))


class ServerThread:
    """A gateway server on a loopback port, run in a thread of this process (tests and benchmarks)."""

    def __init__(self, runtime: Runtime, threads: int = 8) -> None:
        self.server = make_server(runtime, "127.0.0.1", 0, threads)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop at once and cleanly: wait for clients to hang up, then close from inside
        waitress's own loop (closing from this thread would leave the loop selecting on a
        closed descriptor)."""
        deadline = time.monotonic() + 5
        while self.server.active_channels and time.monotonic() < deadline:
            time.sleep(0.005)
        self.server.trigger.pull_trigger(self.server.close)
        self.thread.join(timeout=5)
        self.server.task_dispatcher.shutdown()
