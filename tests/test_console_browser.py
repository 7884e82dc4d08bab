"""The console in real Chromium: logging in, a failing webhook and its attempts, retry now, deactivate and
activate with replay, the overview chart, and the keyboard and screen-reader basics."""
from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.accounts import NewAccount
from gateway.delivery.engine import Dispatcher
from gateway.destinations import webhooks
from gateway.runtime import Runtime
from gateway.server import ServerThread
from gateway.store.models import utcnow
from tests.support.accessibility import low_contrast_text, unlabelled_fields
from tests.support.delivery import deliveries
from tests.support.http_receiver import Receiver
from tests.support.runtime import PASSWORD

pytest_plugins = ["tests.support.browser"]


@pytest.fixture
def runtime(sqlite_url: str, tmp_path: Any) -> Iterator[Runtime]:
    """The browser tests run on SQLite only: what they check is the console, not the store."""
    from tests.support.runtime import make_runtime
    rt = make_runtime(sqlite_url, tmp_path)
    yield rt
    rt.close()


def post_events(server: ServerThread, uids: list[str], etype: str = "OPEN") -> None:
    """Ingest events through the REST API, as a producer would."""
    now = utcnow()
    body = json.dumps([{"id": uid, "type": etype, "occurred_at": (now - timedelta(minutes=i)).isoformat(),
                        "email": f"user{i}@example.com", "message_id": "m1"} for i, uid in enumerate(uids)]).encode()
    credentials = base64.b64encode(f"acme:{PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"{server.url}/api/v1/events", body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Basic {credentials}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["accepted"] == len(uids)


def log_in(page: Any, server: ServerThread) -> None:
    page.goto(server.url + "/")
    page.get_by_label("Account name").fill("acme")
    page.get_by_label("Password or API key").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Overview", level=1).wait_for()


def flash(page: Any) -> str:
    return str(page.locator(".messages").inner_text())


@pytest.fixture
def dispatcher(runtime: Runtime) -> Iterator[Dispatcher]:
    """A delivery engine the test runs by hand (``drain``) between clicks."""
    engine = Dispatcher(runtime)
    yield engine
    engine.stop()


def test_a_failing_webhook_is_retried_deactivated_and_replayed_from_the_console(
        page: Any, live_server: ServerThread, account: NewAccount, dispatcher: Dispatcher,
        http_receiver: Receiver) -> None:
    http_receiver.respond(503, b"down for maintenance")
    log_in(page, live_server)

    page.get_by_role("link", name="Destinations").click()
    webhook_form = page.locator("#new-http")
    webhook_form.get_by_label("URL", exact=True).fill(http_receiver.url)
    webhook_form.get_by_label("OPEN", exact=True).check()
    webhook_form.get_by_role("button", name="Create webhook").click()
    page.get_by_role("heading", name="Webhook #2").wait_for()
    assert "Created webhook #2" in flash(page)

    post_events(live_server, ["e1", "e2", "e3"])
    dispatcher.drain()
    http_receiver.wait_for(1)
    page.reload()
    attempts = page.locator("#attempts tbody tr")
    assert attempts.count() == 1
    assert "failed" in attempts.first.inner_text() and "503" in attempts.first.inner_text()
    assert "down for maintenance" in attempts.first.inner_text()
    assert "3 waiting" in page.locator("#waiting").inner_text()

    http_receiver.respond(200)
    page.get_by_role("button", name="Retry now").click()
    assert "3 waiting events are due now" in flash(page)
    dispatcher.drain()
    page.reload()
    assert "delivered" in page.locator("#attempts tbody tr").first.inner_text()
    assert "0 waiting" in page.locator("#waiting").inner_text()
    assert set(deliveries(http_receiver.requests)) == {"e1", "e2", "e3"}

    page.get_by_role("button", name="Deactivate").click()
    assert "Deactivated" in flash(page)
    post_events(live_server, ["e4", "e5"])
    delivered_before = len(http_receiver.requests)
    dispatcher.drain()
    assert len(http_receiver.requests) == delivered_before
    page.get_by_label("and deliver what accumulated meanwhile").check()
    page.get_by_role("button", name="Activate").click()
    assert "Activated; 2 events queued" in flash(page)
    dispatcher.drain()
    assert {"e4", "e5"} <= set(deliveries(http_receiver.requests))

    page.get_by_role("link", name="Overview").click()
    chart = page.locator("svg.events-chart").first
    assert chart.get_attribute("data-total") == "5"
    assert chart.locator("rect").count() >= 1
    assert "OPEN" in page.locator("table.legend").first.inner_text()


def test_every_page_can_be_used_by_keyboard_and_screen_reader(
        page: Any, live_server: ServerThread, account: NewAccount, runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        webhooks.create(session, account.id, {"url": "http://127.0.0.1:9/hook", "events": ["CLICK"]})
    page.goto(live_server.url + "/login")
    assert unlabelled_fields(page) == []
    focused = "document.activeElement.id || document.activeElement.textContent"
    order = [page.evaluate(focused)]  # the name field has the focus on arrival
    for _ in range(2):
        page.keyboard.press("Tab")
        order.append(page.evaluate(focused))
    assert order == ["name", "secret", "Log in"]
    page.keyboard.press("Shift+Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Shift+Tab")
    page.keyboard.type("acme")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Overview", level=1).wait_for()
    post_events(live_server, ["k1"])
    for path in ("/", "/destinations", "/destinations/2", "/pull", "/events?reveal=1"):
        page.goto(live_server.url + path)
        assert unlabelled_fields(page) == [], path
        assert low_contrast_text(page) == [], path
        assert page.locator("h1").count() == 1, path
    page.goto(live_server.url + "/destinations")
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "Skip to content"
    page.keyboard.press("Enter")  # the skip link moves the focus past the navigation
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null")


def test_a_failing_browser_test_leaves_a_screenshot(pytester: pytest.Pytester, browser: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_inner='''
        pytest_plugins = ["tests.support.browser"]

        def test_sees_a_page(page):
            page.set_content("<h1>what the page showed</h1>")
            assert page.title() == "another title"
    ''')
    shots = tmp_path / "shots"
    monkeypatch.setenv("EVENTGW_SCREENSHOTS", str(shots))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))  # the repository, for tests.support
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert [path.name for path in shots.iterdir()] == ["test_inner.py_test_sees_a_page.png"]
    assert (shots / "test_inner.py_test_sees_a_page.png").read_bytes().startswith(b"\x89PNG")
