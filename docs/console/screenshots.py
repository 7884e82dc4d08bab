"""Make the screenshots of docs/console.md: a demo store with a day of events, a webhook whose receiver failed
and then recovered, a deactivated email destination and a pull batch, each main page shot in Chromium.

Run from the repository root: `.venv/bin/python docs/console/screenshots.py` (needs Debian's chromium and
Playwright for Python, as the browser tests do). It writes docs/console/*.png.
"""
from __future__ import annotations

import random
import sys
import tempfile
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from playwright.sync_api import sync_playwright  # noqa: E402

from bench.eventgen import generate  # noqa: E402
from gateway import pull  # noqa: E402
from gateway.accounts import create_account  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.delivery.engine import Dispatcher  # noqa: E402
from gateway.destinations import control, management, webhooks  # noqa: E402
from gateway.ingest import ingest_request  # noqa: E402
from gateway.runtime import open_runtime  # noqa: E402
from gateway.server import ServerThread  # noqa: E402
from gateway.store.models import utcnow  # noqa: E402

HERE = Path(__file__).resolve().parent
PASSWORD = "S3cret-pass"


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that answers 503 until ``healthy`` is set."""

    healthy = False

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = (200, b"ok") if Receiver.healthy else (503, b"upstream database unavailable")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def spread(events: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The events with times over the last week, busier by day (07-23 UTC) than by night."""
    hours = [now - timedelta(hours=h) for h in range(7 * 24)]
    rng = random.Random(7)
    chosen = rng.choices(hours, [3 if 7 <= hour.hour <= 22 else 1 for hour in hours], k=len(events))
    for event, hour in zip(events, chosen, strict=True):
        event["occurred_at"] = (hour - timedelta(seconds=rng.randrange(3600))).isoformat()
    return events


def main() -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Thread(target=receiver.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as home:
        runtime = open_runtime(load_settings(environ={}, home=home, database_url=f"sqlite:///{home}/demo.db",
                                             outbound_allow_networks="127.0.0.0/8"))
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD).id
            hook = webhooks.create(session, account, {"url": f"http://127.0.0.1:{receiver.server_port}/hooks/events",
                                                     "events": ["CLICK", "BOUNCE", "COMPLAINT"], "app": "crm"}).id
            email = management.create(session, account, {"kind": "email", "recipients": ["ops@example.com"],
                                                          "events": ["SMSFAILED"]}).id
            control.deactivate(session, account, email)
        events = spread(list(generate(40_000)), utcnow())
        for start in range(0, len(events), 10_000):
            ingest_request(runtime.sessions, account, events[start:start + 10_000])
        pull.get_batch(runtime.sessions, account, [], 5_000, "read", lambda batch: None)
        pull.get_batch(runtime.sessions, account, [], 500, "lease", lambda batch: None)
        engine = Dispatcher(runtime)
        engine.drain()
        Receiver.healthy = True
        server = ServerThread(runtime)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(server.url + "/login")
                page.get_by_label("Account name").fill("acme")
                page.get_by_label("Password or API key").fill(PASSWORD)
                page.screenshot(path=str(HERE / "login.png"))
                page.get_by_role("button", name="Log in").click()
                page.screenshot(path=str(HERE / "overview.png"), full_page=True)
                page.goto(f"{server.url}/destinations/{hook}")
                page.get_by_role("button", name="Retry now").click()
                engine.drain()
                page.reload()
                page.screenshot(path=str(HERE / "webhook.png"), full_page=True)
                page.goto(server.url + "/destinations")
                page.screenshot(path=str(HERE / "destinations.png"), full_page=True)
                page.goto(server.url + "/pull")
                page.screenshot(path=str(HERE / "pull.png"), full_page=True)
                recipient = next(e["email"] for e in reversed(events) if e.get("email"))
                page.goto(f"{server.url}/events?recipient={recipient}")
                page.screenshot(path=str(HERE / "events.png"), full_page=True)
                browser.close()
        finally:
            server.close()
            engine.stop()
            runtime.close()
    receiver.shutdown()
    print("\n".join(sorted(str(p.relative_to(HERE.parents[1])) for p in HERE.glob("*.png"))))


if __name__ == "__main__":
    main()
