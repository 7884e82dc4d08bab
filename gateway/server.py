"""The HTTP server of the gateway's web edge: waitress, set up for the gateway's traffic."""
from __future__ import annotations

import errno
import threading
import time
from typing import Any

from waitress.server import create_server

from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.runtime import Runtime

# A response is held in memory up to this size before waitress spills it to a temporary
# file; a full 10,000-event pull (about 1.5 MB legacy, more typed) stays in memory.
RESPONSE_BUFFER_BYTES = 32 * 2**20


def make_server(runtime: Runtime, host: str, port: int, threads: int) -> Any:
    """A waitress server for the gateway's app on host:port (port 0: any free one); call run() on it.

    ConfigError naming the host and port settings when it cannot listen there.
    """
    app = create_app(runtime)
    try:
        return create_server(
            app, host=host, port=port, threads=threads, ident="eventgw",
            # Twice the app's limit, so that an oversized body reaches the app and gets the
            # protocol's own error (JSON 413, SOAP Fault), not waitress's text.
            max_request_body_size=2 * runtime.settings.max_body_bytes,
            outbuf_overflow=RESPONSE_BUFFER_BYTES,
        )
    except (OSError, ValueError) as exc:  # waitress: ValueError for a host it cannot resolve
        raise ConfigError(f"cannot listen on {host}:{port}: {_why(exc, runtime, port)}") from None


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
