"""Health of a running process: whether it can reach its store (readiness), and the role it runs.

The web edge answers it at ``/healthz``; a ``gateway worker`` has no web edge and answers it
on its own small HTTP listener when started with ``--health-port``.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway.runtime import Runtime


@dataclass(frozen=True)
class Health:
    """A health answer: its HTTP status (200 ready, 503 not) and its JSON body."""

    status: int
    body: dict[str, Any]


def check(runtime: Runtime) -> Health:
    """Ask the store a trivial question; 503 naming the reason when it cannot be reached."""
    body: dict[str, Any] = {"role": runtime.role.value, "database": runtime.engine.dialect.name}
    if runtime.stopping.is_set():
        # A stopping process still finishes what it holds, but should get nothing new.
        return Health(503, {"status": "stopping", **body})
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        return Health(503, {"status": "unavailable", **body,
                            "error": (str(reason).strip().splitlines() or [type(reason).__name__])[0]})
    return Health(200, {"status": "ok", **body})


class HealthServer:
    """GET /healthz of a process without a web edge, on its own thread."""

    def __init__(self, runtime: Runtime, host: str, port: int) -> None:
        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                health = check(runtime) if self.path.split("?")[0] == "/healthz" else Health(
                    404, {"error": "not found; ask /healthz"})
                payload = json.dumps(health.body).encode()
                self.send_response(health.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop answering."""
        self._server.shutdown()
        self._server.server_close()
