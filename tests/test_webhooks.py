"""Webhook and route management over the REST API: /api/v1/webhooks, /api/v1/routes, /api/v1/notifications."""
from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest

from gateway.accounts import NewAccount
from gateway.delivery.engine import Dispatcher
from gateway.runtime import Runtime
from gateway.server import ServerThread
from tests.support.delivery import SECRET, deliveries, signature_ok
from tests.support.events import raw_event
from tests.support.http_receiver import Receiver
from tests.support.net import refused_url
from tests.support.rest import ACME, GLOBEX, TIMEOUT, Answer, call, create, post_events


def route_ids(server: ServerThread, auth: tuple[str, str] = ACME) -> dict[str, list[int]]:
    """Every type with the ids of the destinations it goes to."""
    answer = call(server, "GET", "/api/v1/routes", auth)
    assert answer.status == 200
    return {etype: [d["id"] for d in targets] for etype, targets in answer.body["routes"].items()}


def webhook_count(server: ServerThread, auth: tuple[str, str] = ACME) -> int:
    return len(call(server, "GET", "/api/v1/webhooks", auth).body["webhooks"])


@pytest.fixture
def dispatcher(runtime: Runtime) -> Iterator[Dispatcher]:
    """A dispatcher over the live server's store, stopped after the test."""
    engine = Dispatcher(runtime)
    yield engine
    engine.stop()


def test_create_generates_a_secret_and_returns_it_once(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    created = create(live_server, url=http_receiver.url, events=["open", "Click"])

    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"), validate=True)) >= 24
    assert (created["url"], created["events"], created["format"], created["active"]) == (
        http_receiver.url, ["OPEN", "CLICK"], "json", True)
    shown = call(live_server, "GET", f"/api/v1/webhooks/{created['id']}")
    assert shown.status == 200
    assert "secret" not in shown.body
    assert {k: v for k, v in created.items() if k != "secret"} == shown.body
    other = create(live_server, url=http_receiver.url, events=["BOUNCE"])
    assert other["secret"] != created["secret"]


def test_create_honours_a_given_secret_and_options(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    created = create(live_server, url=http_receiver.url, events=["OPEN"], secret=SECRET, app="crm",
                     format="json-single", headers={"X-Env": "test"},
                     basic_auth={"username": "hook", "password": "pw"}, batch_max_events=50)

    assert created["secret"] == SECRET
    assert (created["app"], created["format"], created["headers"], created["basic_auth"],
            created["batch_max_events"]) == ("crm", "json-single", {"X-Env": "test"}, True, 50)
    assert "pw" not in json.dumps(call(live_server, "GET", f"/api/v1/webhooks/{created['id']}").body)
    post_events(live_server, [raw_event("e1")])
    dispatcher.drain()
    (request,) = http_receiver.requests
    assert signature_ok(request, SECRET)
    assert request.headers["X-Env"] == "test"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"hook:pw").decode()


def test_list_filters_by_app_and_event(live_server: ServerThread, account: NewAccount, http_receiver: Receiver) -> None:
    crm_opens = create(live_server, url=http_receiver.url, events=["OPEN", "CLICK"], app="crm")["id"]
    crm_bounces = create(live_server, url=http_receiver.url, events=["BOUNCE"], app="crm")["id"]
    erp_opens = create(live_server, url=http_receiver.url, events=["OPEN"], app="erp")["id"]

    def listed(query: str) -> list[int]:
        answer = call(live_server, "GET", "/api/v1/webhooks" + query)
        assert answer.status == 200
        return [w["id"] for w in answer.body["webhooks"]]

    assert listed("") == [crm_opens, crm_bounces, erp_opens]
    assert listed("?app=crm") == [crm_opens, crm_bounces]
    assert listed("?event=OPEN") == [crm_opens, erp_opens]
    assert listed("?app=crm&event=open") == [crm_opens]
    assert listed("?event=hard") == [crm_bounces]
    assert listed("?app=nobody") == []
    bad = call(live_server, "GET", "/api/v1/webhooks?event=NOPE")
    assert bad.status == 400 and bad.problem_fields() == ["event"]


def test_put_changes_url_events_and_format_without_deactivating(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = create(live_server, url=http_receiver.url + "/old", events=["OPEN"], secret=SECRET)["id"]
    post_events(live_server, [raw_event("o1")])
    dispatcher.drain()

    changed = call(live_server, "PUT", f"/api/v1/webhooks/{hook}",
                   json={"url": http_receiver.url + "/new", "events": ["BOUNCE"], "format": "form"})

    assert changed.status == 200
    assert (changed.body["url"], changed.body["events"], changed.body["format"], changed.body["active"]) == (
        http_receiver.url + "/new", ["BOUNCE"], "form", True)
    assert call(live_server, "GET", f"/api/v1/webhooks/{hook}").body == changed.body
    assert route_ids(live_server)["OPEN"] == [account.pull_destination_id]
    assert route_ids(live_server)["BOUNCE"] == [hook]
    post_events(live_server, [raw_event("o2"), raw_event("b1", "BOUNCE")])
    dispatcher.drain()
    old, new = http_receiver.requests
    assert old.path == "/hook/old" and json.loads(old.body)[0]["id"] == "o1"
    assert new.path == "/hook/new" and dict(parse_qsl(new.body.decode()))["eventId"] == "b1"
    assert signature_ok(new, SECRET)


def test_delete_gives_the_types_back_to_the_pull_queue(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    pull = account.pull_destination_id
    hook = create(live_server, url=http_receiver.url, events=["OPEN", "CLICK"])["id"]
    other = create(live_server, url=http_receiver.url, events=["CLICK"])["id"]
    assert route_ids(live_server)["OPEN"] == [hook]
    assert route_ids(live_server)["CLICK"] == [hook, other]

    assert call(live_server, "DELETE", f"/api/v1/webhooks/{hook}").status == 204

    routes = route_ids(live_server)
    assert routes["OPEN"] == [pull] and routes["CLICK"] == [other] and routes["BOUNCE"] == [pull]
    assert call(live_server, "GET", f"/api/v1/webhooks/{hook}").status == 404
    assert call(live_server, "DELETE", f"/api/v1/webhooks/{hook}").status == 404
    assert [w["id"] for w in call(live_server, "GET", "/api/v1/webhooks").body["webhooks"]] == [other]


def test_verify_reports_what_the_receiver_answered(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    created = create(live_server, url=http_receiver.url, events=["OPEN"])
    path = f"/api/v1/webhooks/{created['id']}/verify"

    http_receiver.respond(200, b"hello")
    assert call(live_server, "POST", path).body == {"ok": True, "status": 200, "answer": "hello", "error": None}
    http_receiver.respond(500, b"broken")
    failed = call(live_server, "POST", path)

    assert failed.status == 200
    assert (failed.body["ok"], failed.body["status"], failed.body["answer"]) == (False, 500, "broken")
    assert "HTTP 500" in failed.body["error"]
    test_event, _ = http_receiver.requests
    assert signature_ok(test_event, created["secret"])
    assert json.loads(test_event.body)[0]["type"] == "OPEN"
    # A test event is not an attempt at real events, and the webhook stays as it was.
    assert call(live_server, "GET", f"/api/v1/webhooks/{created['id']}/attempts").body == {"attempts": []}
    assert call(live_server, "GET", f"/api/v1/webhooks/{created['id']}").body["active"] is True


def test_create_with_verify_refuses_a_url_that_does_not_answer_2xx(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    routes = route_ids(live_server)
    http_receiver.respond(500, b"broken")
    refused = call(live_server, "POST", "/api/v1/webhooks",
                   json={"url": http_receiver.url, "events": ["OPEN"], "verify": True})
    assert refused.status == 400 and refused.problem_fields() == ["url"]
    assert "HTTP 500" in refused.body["message"]
    dead = refused_url()
    nobody = call(live_server, "POST", "/api/v1/webhooks", json={"url": dead, "events": ["OPEN"], "verify": True})
    # Refused, unreachable or silent read alike, so that verify cannot map a network.
    assert nobody.status == 400 and nobody.body["message"].endswith(f"could not connect to {dead.split('/')[2]}")
    assert webhook_count(live_server) == 0
    assert route_ids(live_server) == routes

    http_receiver.respond(200)
    created = create(live_server, url=http_receiver.url, events=["OPEN"], verify=True)
    assert route_ids(live_server)["OPEN"] == [created["id"]]
    assert len(http_receiver.requests) == 2


def test_verifying_a_slow_url_holds_up_nothing_else(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    http_receiver.respond(200, delay=1.5)
    answers: list[Answer] = []
    probes = [
        threading.Thread(target=lambda: answers.append(call(live_server, "POST", f"/api/v1/webhooks/{hook}/verify"))),
        threading.Thread(target=lambda: answers.append(call(live_server, "POST", "/api/v1/webhooks", json={
            "url": http_receiver.url, "events": ["CLICK"], "verify": True}))),
    ]
    for probe in probes:
        probe.start()
    http_receiver.wait_for(2)

    started = time.monotonic()
    post_events(live_server, [raw_event("o1"), raw_event("c1", "CLICK")])
    assert time.monotonic() - started < 0.75

    for probe in probes:
        probe.join(TIMEOUT)
    assert sorted(a.status for a in answers) == [200, 201]
    assert webhook_count(live_server) == 2


def test_a_gone_webhook_is_deactivated_and_activate_with_replay_delivers_what_waited(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    http_receiver.respond(410)
    post_events(live_server, [raw_event("e1"), raw_event("e2")])
    dispatcher.drain()
    post_events(live_server, [raw_event("e3")])

    shown = call(live_server, "GET", f"/api/v1/webhooks/{hook}").body
    assert shown["active"] is False and shown["deactivated_at"]
    (notice,) = call(live_server, "GET", "/api/v1/notifications").body["notifications"]
    assert notice["kind"] == "deactivated" and notice["destination_id"] == hook
    stats = call(live_server, "GET", "/api/v1/stats").body
    assert stats["pending"][str(hook)] == {**stats["pending"][str(hook)], "active": False, "pending": 3}
    bad_flag = call(live_server, "POST", f"/api/v1/webhooks/{hook}/activate?replay=maybe")
    assert bad_flag.status == 400 and bad_flag.problem_fields() == ["replay"]

    http_receiver.respond(200)
    activated = call(live_server, "POST", f"/api/v1/webhooks/{hook}/activate?replay=true")
    assert activated.body == {"id": hook, "active": True, "activated": True, "queued": 3, "dropped": 0}
    dispatcher.drain()

    assert deliveries(http_receiver.requests[1:]) == Counter(["e1", "e2", "e3"])
    log = call(live_server, "GET", f"/api/v1/webhooks/{hook}/attempts").body["attempts"]
    # Newest first: the batch that failed went again under its own message id, then the newer event.
    assert [(a["outcome"], a["status"], a["events"]) for a in log] == [
        ("delivered", 200, 1), ("delivered", 200, 2), ("deactivated", None, 0), ("failed", 410, 2)]
    assert all(isinstance(a["duration_ms"], int) and a["started_at"].endswith("Z") for a in log)
    assert log[1]["message_id"] == log[3]["message_id"] == http_receiver.requests[0].headers["webhook-id"]
    assert call(live_server, "GET", f"/api/v1/webhooks/{hook}/attempts?limit=1").body["attempts"] == log[:1]
    assert call(live_server, "GET", f"/api/v1/webhooks/{hook}/attempts?limit=x").problem_fields() == ["limit"]


def test_replay_redelivers_a_time_window(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    post_events(live_server, [raw_event("before", occurred_at="2026-11-23T23:59:59Z"),
                              raw_event("inside", occurred_at="2026-11-24T00:00:00Z"),
                              raw_event("after", occurred_at="2026-11-25T00:00:00Z")])
    dispatcher.drain()

    replayed = call(live_server, "POST", f"/api/v1/webhooks/{hook}/replay",
                    params={"since": "2026-11-24T00:00:00Z", "until": "2026-11-25T00:00:00+00:00"})
    assert replayed.body == {"id": hook, "queued": 1}
    dispatcher.drain()

    assert deliveries(http_receiver.requests) == Counter(["before", "inside", "inside", "after"])


def test_a_bad_replay_window_is_refused_naming_the_field(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    for query, field in [
        ("since=2026-11-25T00:00:00Z&until=2026-11-24T00:00:00Z", "since"),
        ("since=2026-11-24T00:00:00Z&until=2026-11-24T00:00:00Z", "since"),
        ("since=2026-11-24T00:00:00Z", "until"),
        ("since=yesterday&until=2026-11-24T00:00:00Z", "since"),
        ("since=2026-11-24T00:00:00&until=2026-11-25T00:00:00Z", "since"),
    ]:
        answer = call(live_server, "POST", f"/api/v1/webhooks/{hook}/replay?{query}")
        assert (answer.status, answer.content_type, answer.problem_fields()) == (
            400, "application/json", [field]), query


def test_routes_send_a_type_where_the_account_says(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    pull = account.pull_destination_id
    assert all(targets == [pull] for targets in route_ids(live_server).values())
    first = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    second = create(live_server, url=http_receiver.url, events=["OPEN", "CLICK"])["id"]
    routes = route_ids(live_server)
    assert routes["OPEN"] == [first, second] and routes["CLICK"] == [second] and routes["BOUNCE"] == [pull]

    one = call(live_server, "PUT", "/api/v1/routes/open", json={"destinations": [first]})
    assert one.status == 200
    assert one.body["type"] == "OPEN" and [d["id"] for d in one.body["destinations"]] == [first]
    assert route_ids(live_server)["OPEN"] == [first]
    assert call(live_server, "GET", f"/api/v1/webhooks/{second}").body["events"] == ["CLICK"]
    both = call(live_server, "PUT", "/api/v1/routes/OPEN", json={"destinations": [pull, first, pull]})
    assert [(d["id"], d["kind"]) for d in both.body["destinations"]] == [(pull, "pull"), (first, "http")]

    for path, body, field in [("/api/v1/routes/NOPE", {"destinations": [pull]}, "type"),
                              ("/api/v1/routes/OPEN", {"destinations": []}, "destinations"),
                              ("/api/v1/routes/OPEN", {"destinations": ["1"]}, "destinations"),
                              ("/api/v1/routes/OPEN", [pull], "body")]:
        answer = call(live_server, "PUT", path, json=body)
        assert (answer.status, answer.problem_fields()) == (400, [field]), (path, body)
    assert call(live_server, "PUT", "/api/v1/routes/OPEN", json={"destinations": [9999]}).status == 404
    assert route_ids(live_server)["OPEN"] == [pull, first]


BAD_INPUT = [
    ({"url": "not a url"}, "url"),
    ({"url": "ftp://files.example.com/hook"}, "url"),
    ({"url": "http://user:secret@example.com/hook"}, "url"),
    ({"url": ""}, "url"),
    ({"events": ["OPEN", "NOPE"]}, "events"),
    ({"events": []}, "events"),
    ({"events": [""]}, "events"),
    ({"events": "OPEN"}, "events"),
    ({"format": "xml"}, "format"),
    ({"secret": "whsec_" + base64.b64encode(b"too short").decode()}, "secret"),
    ({"secret": base64.b64encode(b"x" * 32).decode()}, "secret"),
    ({"secret": "whsec_not base64!"}, "secret"),
    ({"batch_max_events": 0}, "batch_max_events"),
    ({"timeout_seconds": 600}, "timeout_seconds"),
    ({"headers": {"webhook-id": "x"}}, "headers"),
    ({"headers": {"Authorization": "Bearer stolen"}}, "headers"),
    ({"headers": {"Cookie": "session=1"}}, "headers"),
    ({"headers": {"Host": "internal.example"}}, "headers"),
    ({"headers": {"Proxy-Authorization": "Basic eA=="}}, "headers"),
    ({"headers": {"X-Tenant": "a\r\nInjected: 1"}}, "headers"),
    ({"basic_auth": "user:pw"}, "basic_auth"),
    ({"app": 7}, "app"),
    ({"app": "x" * 201}, "app"),
]


def test_bad_webhook_input_is_refused_naming_the_field(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    valid = {"url": http_receiver.url, "events": ["OPEN"]}
    hook = create(live_server, **valid)
    for change, field in BAD_INPUT:
        created = call(live_server, "POST", "/api/v1/webhooks", json={**valid, **change})
        assert (created.status, created.problem_fields()) == (400, [field]), change
        assert created.content_type == "application/json" and created.body["error"] == "invalid"
        changed = call(live_server, "PUT", f"/api/v1/webhooks/{hook['id']}", json=change)
        assert (changed.status, changed.problem_fields()) == (400, [field]), change
    not_json = call(live_server, "POST", "/api/v1/webhooks", data="url=x", headers={"Content-Type": "text/plain"})
    assert (not_json.status, not_json.problem_fields()) == (400, ["body"])

    assert webhook_count(live_server) == 1
    shown = call(live_server, "GET", f"/api/v1/webhooks/{hook['id']}").body
    assert shown == {k: v for k, v in hook.items() if k != "secret"}


def test_one_account_can_never_touch_another_accounts_webhooks(
    live_server: ServerThread, account: NewAccount, other_account: NewAccount, http_receiver: Receiver
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"], app="crm")
    base = f"/api/v1/webhooks/{hook['id']}"

    for method, path, kwargs in [
        ("GET", base, {}), ("PUT", base, {"json": {"url": "http://127.0.0.1:9/stolen"}}),
        ("POST", base + "/verify", {}), ("POST", base + "/activate?replay=true", {}),
        ("POST", base + "/replay?since=2026-01-01T00:00:00Z&until=2026-12-31T00:00:00Z", {}),
        ("GET", base + "/attempts", {}), ("DELETE", base, {}),
    ]:
        answer = call(live_server, method, path, GLOBEX, **kwargs)
        assert (answer.status, answer.body["error"]) == (404, "not_found"), (method, path)
    assert call(live_server, "GET", "/api/v1/webhooks?app=crm", GLOBEX).body == {"webhooks": []}
    stolen = call(live_server, "PUT", "/api/v1/routes/OPEN", GLOBEX, json={"destinations": [hook["id"]]})
    assert stolen.status == 404
    assert call(live_server, "GET", "/api/v1/notifications", GLOBEX).body == {"notifications": []}

    assert http_receiver.requests == []
    assert call(live_server, "GET", base).body == {k: v for k, v in hook.items() if k != "secret"}
    assert route_ids(live_server)["OPEN"] == [hook["id"]]
    assert route_ids(live_server, GLOBEX)["OPEN"] == [other_account.pull_destination_id]


def test_the_notice_address_is_set_read_and_cleared_per_account(
    live_server: ServerThread, account: NewAccount, other_account: NewAccount
) -> None:
    path = "/api/v1/notifications/email"
    assert call(live_server, "GET", path).body == {"email": None}
    answer = call(live_server, "PUT", path, json={"email": " ops@example.com "})
    assert (answer.status, answer.body) == (200, {"email": "ops@example.com"})
    assert call(live_server, "GET", path).body == {"email": "ops@example.com"}
    assert call(live_server, "GET", path, GLOBEX).body == {"email": None}

    for bad in ({"email": "not an address"}, {"email": 42}, {}):
        refused = call(live_server, "PUT", path, json=bad)
        assert refused.status == 400 and refused.problem_fields() == ["email"], refused.body
    assert call(live_server, "GET", path).body == {"email": "ops@example.com"}

    assert call(live_server, "PUT", path, json={"email": None}).body == {"email": None}
    assert call(live_server, "GET", path).body == {"email": None}


def test_credential_headers_are_refused_naming_the_header(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    for name, hint in (("Authorization", "basic_auth"), ("Proxy-Authorization", ""), ("Cookie", "")):
        answer = call(live_server, "POST", "/api/v1/webhooks",
                      json={"url": http_receiver.url, "events": ["OPEN"], "headers": {name: "secret"}})
        assert answer.status == 400 and answer.problem_fields() == ["headers"]
        assert f"header {name} cannot be configured" in answer.body["message"] and hint in answer.body["message"]
    assert webhook_count(live_server) == 0


def test_verify_and_the_attempt_log_keep_a_short_printable_excerpt(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    http_receiver.respond(500, b"<html>\r\n\x1b[2J\x00secret:" + b"s" * 5000)

    verified = call(live_server, "POST", f"/api/v1/webhooks/{hook}/verify").body
    assert verified["answer"] == "<html> [2Jsecret:" + "s" * 183
    post_events(live_server, [raw_event("e1")])
    dispatcher.drain()
    (attempt, *_) = call(live_server, "GET", f"/api/v1/webhooks/{hook}/attempts").body["attempts"]
    assert attempt["outcome"] == "failed" and attempt["detail"].startswith(f"HTTP 500 from {http_receiver.url}: ")
    assert verified["answer"] in attempt["detail"] and "s" * 201 not in attempt["detail"]
    assert attempt["detail"].isprintable()
