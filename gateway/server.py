"""The HTTP server of the gateway's web edge: waitress, set up for the gateway's traffic."""
from __future__ import annotations

from typing import Any

import waitress

from gateway.app import create_app
from gateway.runtime import Runtime

# A response is held in memory up to this size before waitress spills it to a temporary
# file; a full 10,000-event pull (about 1.5 MB legacy, more typed) stays in memory.
RESPONSE_BUFFER_BYTES = 32 * 2**20


def make_server(runtime: Runtime, host: str, port: int, threads: int) -> Any:
    """A waitress server for the gateway's app on host:port (port 0: any free one); call run() on it."""
    return waitress.create_server(
        create_app(runtime), host=host, port=port, threads=threads, ident="eventgw",
        # Twice the app's limit, so that an oversized body reaches the app and gets the
        # protocol's own error (JSON 413, SOAP Fault), not waitress's text.
        max_request_body_size=2 * runtime.settings.max_body_bytes,
        outbuf_overflow=RESPONSE_BUFFER_BYTES,
    )
