"""A webhook receiver to try the gateway with: prints what each POST carries and answers 204.

    python examples/receiver.py [PORT]   (default 9000; stop it with Ctrl-C)

It listens on 127.0.0.1 only and checks no signature: a receiver in production verifies
``webhook-signature`` with the webhook's secret (docs/webhooks.md).
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            parsed = json.loads(body)
            events = parsed if isinstance(parsed, list) else [parsed]
            summary = ", ".join(f"{n} {t}" for t, n in Counter(e.get("type", "?") for e in events).items())
        except ValueError:
            summary = f"{len(body)} bytes of {self.headers.get('Content-Type')}"
        print(f"{self.headers.get('webhook-id')}: {summary}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the line above says what came."""


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"listening on http://127.0.0.1:{port}/ (Ctrl-C stops)", flush=True)
    try:
        ThreadingHTTPServer(("127.0.0.1", port), _Handler).serve_forever()
    except KeyboardInterrupt:
        pass
