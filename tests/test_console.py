"""The console over HTTP, on both stores: who may sign in and for how long, the forms' CSRF tokens, and what
the pages show and do (the browser tests drive the same pages in Chromium)."""
from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gateway.accounts import NewAccount, set_password
from gateway.app import create_app
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from gateway.store.models import utcnow
from tests.support.runtime import PASSWORD, make_runtime


def csrf(page: TestResponse) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def messages(page: TestResponse) -> list[str]:
    return re.findall(r'class="message [^"]*"[^>]*>([^<]*)<', page.text)


def log_in(client: FlaskClient, name: str = "acme", secret: str = PASSWORD) -> TestResponse:
    return client.post("/login", data={"csrf": csrf(client.get("/login")), "name": name, "secret": secret})


@pytest.fixture
def app(runtime: Runtime) -> Flask:
    return create_app(runtime)


@pytest.fixture
def client(app: Flask, account: NewAccount) -> FlaskClient:
    """A browser signed in as acme."""
    browser = app.test_client()
    assert log_in(browser).status_code == 302
    return browser


def post(client: FlaskClient, path: str, **form: Any) -> TestResponse:
    """Send a console form (with the session's CSRF token) and follow it to the page it leads to."""
    token = csrf(client.get("/destinations"))
    return client.post(path, data={"csrf": token, **form}, follow_redirects=True)


def test_pages_need_a_login_and_come_back_after_it(app: Flask, account: NewAccount) -> None:
    browser = app.test_client()
    answer = browser.get("/events?type=OPEN")
    assert answer.status_code == 302 and answer.headers["Location"] == "/login?next=/events?type%3DOPEN"
    token = csrf(browser.get(answer.headers["Location"]))
    signed_in = browser.post("/login", data={"csrf": token, "name": "acme", "secret": PASSWORD,
                                             "next": "/events?type=OPEN"})
    assert signed_in.headers["Location"] == "/events?type=OPEN"
    assert browser.get("/events?type=OPEN").status_code == 200


def test_a_login_never_sends_the_browser_to_another_site(app: Flask, account: NewAccount) -> None:
    browser = app.test_client()
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        token = csrf(browser.get("/login"))
        answer = browser.post("/login", data={"csrf": token, "name": "acme", "secret": PASSWORD, "next": target})
        assert answer.headers["Location"] == "/", target


def test_the_root_is_the_console_not_a_json_404(app: Flask) -> None:
    answer = app.test_client().get("/")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")


def test_wrong_credentials_are_refused_and_repeated_failures_wait(app: Flask, account: NewAccount) -> None:
    browser = app.test_client()
    for _ in range(5):
        refused = log_in(browser, secret="wrong password")
        assert refused.status_code == 401 and messages(refused) == ["Wrong account name, password or API key."]
    throttled = log_in(browser, secret=PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert "too many failed logins from this address" in throttled.text
    other_address = app.test_client()
    answer = other_address.post("/login", environ_base={"REMOTE_ADDR": "127.0.0.9"}, data={
        "csrf": csrf(other_address.get("/login")), "name": "acme", "secret": PASSWORD})
    assert answer.status_code == 302


def test_an_api_key_logs_in_and_a_rotated_key_ends_its_sessions(app: Flask, account: NewAccount) -> None:
    browser = app.test_client()
    assert log_in(browser, name="", secret=account.api_key).status_code == 302
    assert browser.get("/").status_code == 200
    assert log_in(app.test_client(), name="globex", secret=account.api_key).status_code == 401
    with_password = app.test_client()
    log_in(with_password)
    assert with_password.post("/api/v1/account/api-key", auth=("acme", PASSWORD)).status_code in (200, 201)
    assert browser.get("/").status_code == 302
    assert with_password.get("/").status_code == 200


def test_a_new_password_ends_the_sessions_opened_with_the_old_one(client: FlaskClient, runtime: Runtime,
                                                                   account: NewAccount) -> None:
    with runtime.sessions.begin() as session:
        set_password(session, account.id, "another-password")
    assert client.get("/").status_code == 302


def test_a_form_without_the_session_csrf_token_is_refused(client: FlaskClient, account: NewAccount) -> None:
    answer = client.post("/destinations/new/http", data={"url": "http://127.0.0.1:9/", "events": ["OPEN"]})
    assert answer.status_code == 400
    forged = client.post("/destinations/new/http", data={"csrf": "x" * 43, "url": "http://127.0.0.1:9/",
                                                         "events": ["OPEN"]})
    assert forged.status_code == 400
    assert "webhook" not in client.get("/destinations").text.split("Routes per event type")[0]


def test_logging_out_needs_the_token_and_ends_the_session(client: FlaskClient) -> None:
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200
    token = csrf(client.get("/"))
    assert client.post("/logout", data={"csrf": token}).headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_an_idle_session_ends(tmp_path: Path, sqlite_url: str) -> None:
    rt = make_runtime(sqlite_url, tmp_path, session_idle_seconds=1)
    try:
        from gateway.accounts import create_account
        with rt.sessions.begin() as session:
            create_account(session, "acme", PASSWORD)
        browser = create_app(rt).test_client()
        log_in(browser)
        assert browser.get("/").status_code == 200
        time.sleep(2.1)
        assert browser.get("/").status_code == 302
    finally:
        rt.close()


def test_the_session_cookie_is_httponly_samesite_and_secure_over_https(tmp_path: Path, sqlite_url: str) -> None:
    rt = make_runtime(sqlite_url, tmp_path, public_url="https://events.example.com")
    try:
        from gateway.accounts import create_account
        with rt.sessions.begin() as session:
            create_account(session, "acme", PASSWORD)
        answer = log_in(create_app(rt).test_client())
        cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith("eventgw_console=")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    finally:
        rt.close()


def test_every_web_process_of_one_store_accepts_the_session(runtime: Runtime, account: NewAccount,
                                                            tmp_path: Path) -> None:
    first, second = create_app(runtime).test_client(), create_app(runtime).test_client()
    cookie = log_in(first).headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    second.set_cookie("eventgw_console", cookie)
    assert second.get("/").status_code == 200
    elsewhere = make_runtime(f"sqlite:///{tmp_path / 'other.db'}", tmp_path / "other")
    try:
        stranger = create_app(elsewhere).test_client()
        stranger.set_cookie("eventgw_console", cookie)
        assert stranger.get("/").status_code == 302
    finally:
        elsewhere.close()


def test_pages_forbid_framing_and_foreign_scripts(client: FlaskClient) -> None:
    answer = client.get("/")
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"
    with client.get("/console/static/console.js") as script:
        assert script.status_code == 200 and script.mimetype == "text/javascript"


def test_a_webhook_form_is_checked_as_the_api_checks_it(client: FlaskClient) -> None:
    api = client.post("/api/v1/webhooks", json={"url": "ftp://example.com/", "events": ["OPEN"]},
                      auth=("acme", PASSWORD))
    refused = post(client, "/destinations/new/http", url="ftp://example.com/", events=["OPEN"])
    problem = api.get_json()["problems"][0]
    assert messages(refused) == [f"Not created: {problem['field']}: {problem['message']}".replace("'", "&#39;")]
    no_types = post(client, "/destinations/new/http", url="http://127.0.0.1:9/hook")
    assert messages(no_types) == ["Not created: events: must be a non-empty list of event types"]


def test_destinations_are_created_routed_deactivated_and_deleted(client: FlaskClient) -> None:
    made = post(client, "/destinations/new/email", recipients="ops@example.com, oncall@example.com",
                events=["BOUNCE"])
    assert messages(made) == ["Created email destination #2."]
    assert "ops@example.com" in made.text
    routes = client.get("/destinations").text
    assert re.search(r"<th scope=\"row\">BOUNCE</th><td><a href=\"/destinations/2\">#2 ", routes)
    rerouted = post(client, "/destinations/2/events", events=["BOUNCE", "SOFTBOUNCE"])
    assert messages(rerouted) == ["Event types saved."]
    assert messages(post(client, "/destinations/2/deactivate")) == ["Deactivated."]
    assert "deactivated" in client.get("/").text.split("</table>")[0]
    assert messages(post(client, "/destinations/2/retry"))[0].startswith("email destination #2 is deactivated")
    assert messages(post(client, "/destinations/2/activate", replay="0")) == ["Activated; 0 events queued."]
    assert messages(post(client, "/destinations/2/delete")) == ["Deleted destination #2."]
    assert client.get("/destinations/2").status_code == 404


def test_another_accounts_destination_cannot_be_seen_or_touched(client: FlaskClient, runtime: Runtime,
                                                               other_account: NewAccount) -> None:
    other = create_app(runtime).test_client()
    log_in(other, "globex")
    post(other, "/destinations/new/email", recipients="ops@globex.example", events=["OPEN"])
    assert client.get("/destinations/3").status_code == 404
    assert post(client, "/destinations/3/deactivate").status_code == 404
    assert post(client, "/destinations/3/delete").status_code == 404
    assert "deactivated" not in other.get("/destinations/3").text


def test_events_are_found_by_id_recipient_type_and_time_with_recipients_masked(
        client: FlaskClient, runtime: Runtime, account: NewAccount) -> None:
    now = utcnow()
    ingest_request(runtime.sessions, account.id, [
        {"id": "a1", "type": "OPEN", "occurred_at": (now - timedelta(hours=2)).isoformat(),
         "email": "alice@example.com", "message_id": "m"},
        {"id": "b1", "type": "CLICK", "occurred_at": (now - timedelta(hours=1)).isoformat(),
         "email": "bob@example.com", "message_id": "m", "url": "https://example.com/"},
        {"id": "s1", "type": "SMSFAILED", "occurred_at": now.isoformat(), "phone": "+33612345678",
         "error": "unreachable"},
    ])

    def found(query: str) -> list[str]:
        return re.findall(r"<td>(a1|b1|s1)</td>", client.get("/events" + query).text)

    assert found("") == ["s1", "b1", "a1"]
    assert found("?id=b1") == ["b1"]
    assert found("?recipient=alice@example.com") == ["a1"]
    assert found("?recipient=%2B33612345678") == ["s1"]
    assert found("?type=click") == ["b1"]
    since = (now - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M")
    assert found(f"?since={since}") == ["s1", "b1"]
    masked = client.get("/events").text
    assert "alice@example.com" not in masked and "a***@example.com" in masked and "*********78" in masked
    assert "alice@example.com" in client.get("/events?reveal=1").text
    assert "unknown event type" in client.get("/events?type=nope").text


def test_the_overview_charts_events_and_lists_failing_destinations_first(
        client: FlaskClient, runtime: Runtime, account: NewAccount) -> None:
    now = utcnow()
    ingest_request(runtime.sessions, account.id, [
        {"id": f"e{i}", "type": "OPEN", "occurred_at": (now - timedelta(hours=i)).isoformat(),
         "email": "x@example.com", "message_id": "m"} for i in range(30)])
    post(client, "/destinations/new/email", recipients="ops@example.com", events=["CLICK"])
    post(client, "/destinations/2/deactivate")
    page = client.get("/").text
    totals = re.findall(r'data-total="(\d+)"', page)
    assert totals == ["24", "30"]
    health = page.split("</table>")[0]
    assert health.index("/destinations/2") < health.index("pull queue")
    assert re.findall(r"<title>[^<]*: \d+ OPEN</title>", page)


def test_the_pull_page_lists_batches_and_fetches_one_again(client: FlaskClient, runtime: Runtime,
                                                           account: NewAccount) -> None:
    ingest_request(runtime.sessions, account.id, [
        {"id": "p1", "type": "OPEN", "occurred_at": utcnow().isoformat(), "email": "x@example.com",
         "message_id": "m"}])
    batch = client.get("/api/v1/batches?mode=lease", auth=("acme", PASSWORD)).get_json()
    batch_id = batch.get("id") or batch.get("batch_id")
    page = client.get("/pull").text
    assert batch_id in page and "leased until" in page
    again = client.get(f"/pull/batches/{batch_id}.json")
    assert [event["id"] for event in again.get_json()["events"]] == ["p1"]
    assert client.get("/pull/batches/b_nope.json").status_code == 404


def test_a_webhook_replays_a_window_and_shows_its_secret_once_asked(client: FlaskClient, runtime: Runtime,
                                                                    account: NewAccount) -> None:
    made = post(client, "/destinations/new/http", url="http://127.0.0.1:9/hook", events=["OPEN"])
    secret = re.search(r"<dt>secret</dt><dd>(whsec_[^<]+)</dd>", made.text)
    assert secret, "the secret is shown just after creation"
    assert secret.group(1) not in client.get("/destinations/2").text
    assert secret.group(1) in client.get("/destinations/2?secret=1").text
    now = utcnow()
    ingest_request(runtime.sessions, account.id, [
        {"id": f"r{i}", "type": "OPEN", "occurred_at": (now - timedelta(hours=i)).isoformat(),
         "email": "x@example.com", "message_id": "m"} for i in range(1, 6)])
    since, until = (now - timedelta(hours=3, minutes=30)).strftime("%Y-%m-%dT%H:%M"), now.strftime("%Y-%m-%dT%H:%M")
    assert messages(post(client, "/destinations/2/replay", since=since, until=until)) == ["3 events queued again."]
    refused = post(client, "/destinations/2/replay", since=until, until=since)
    assert messages(refused) == ["since: must be before until"]


def test_collected_pull_events_are_put_back(client: FlaskClient, runtime: Runtime, account: NewAccount) -> None:
    ingest_request(runtime.sessions, account.id, [
        {"id": f"c{i}", "type": "OPEN", "occurred_at": utcnow().isoformat(), "email": "x@example.com",
         "message_id": "m"} for i in range(4)])
    client.get("/api/v1/batches?mode=read", auth=("acme", PASSWORD))
    since = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    page = client.post("/pull/requeue", data={"csrf": csrf(client.get("/pull")), "since": since},
                       follow_redirects=True)
    assert messages(page) == ["4 collected events put back in the pull queue."]
    assert "4 events wait for the pull client" in page.text
    too_early = (utcnow() - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    refused = client.post("/pull/requeue", data={"csrf": csrf(page), "since": too_early}, follow_redirects=True)
    assert messages(refused)[0].startswith("since: is before the recovery window")


def test_sessions_outlive_a_key_rotation_until_the_old_key_is_removed(tmp_path: Path, sqlite_url: str) -> None:
    from gateway.accounts import create_account
    from gateway.vault import new_key
    old, new = new_key(), new_key()

    def browser(keys: str) -> tuple[Runtime, FlaskClient]:
        rt = make_runtime(sqlite_url, tmp_path, secret_key=keys)
        return rt, create_app(rt).test_client()

    rt, first = browser(old)
    with rt.sessions.begin() as session:
        create_account(session, "acme", PASSWORD)
    cookie = log_in(first).headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    rt.close()
    for keys, accepted in ((f"{new},{old}", True), (new, False)):
        rt, later = browser(keys)
        later.set_cookie("eventgw_console", cookie)
        assert (later.get("/").status_code == 200) is accepted, keys
        rt.close()


def test_a_busy_session_still_ends_a_lifetime_after_its_login(client: FlaskClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.console import login
    monkeypatch.setattr(login, "LIFETIME_SECONDS", 2)  # sessions keep whole seconds
    assert client.get("/").status_code == 200
    time.sleep(0.8)
    assert client.get("/").status_code == 200
    time.sleep(2.3)
    assert client.get("/").status_code == 302
