"""The HTTP server of the gateway's web edge: waitress, set up for the gateway's traffic."""
from __future__ import annotations

import threading
import time
from typing import Any

from waitress.server import create_server

from gateway.app import create_app
from gateway.runtime import Runtime

# A response is held in memory up to this size before waitress spills it to a temporary
# file; a full 10,000-event pull (about 1.5 MB legacy, more typed) stays in memory.
RESPONSE_BUFFER_BYTES = 32 * 2**20


def make_server(runtime: Runtime, host: str, port: int, threads: int) -> Any:
    """A waitress server for the gateway's app on host:port (port 0: any free one); call run() on it."""
    return create_server(
        create_app(runtime), host=host, port=port, threads=threads, ident="eventgw",
        # Twice the app's limit, so that an oversized body reaches the app and gets the
        # protocol's own error (JSON 413, SOAP Fault), not waitress's text.
        max_request_body_size=2 * runtime.settings.max_body_bytes,
        outbuf_overflow=RESPONSE_BUFFER_BYTES,
    )


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
