"""Webhook management over the typed SOAP service (gateway/soap/typed_webhooks.py): zeep against a live gateway."""
from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import zeep.helpers

from gateway.accounts import NewAccount
from gateway.delivery.engine import Dispatcher
from gateway.destinations import webhooks
from gateway.runtime import Runtime
from gateway.server import ServerThread
from tests.support.delivery import SECRET, deliveries, signature_ok
from tests.support.events import ingest, raw_event
from tests.support.http_receiver import Receiver
from tests.support.net import refused_url
from tests.support.runtime import PASSWORD
from tests.support.typed_soap import fault_of, finish, service_of

SHORT_SECRET = "whsec_" + base64.b64encode(b"too short").decode()


@pytest.fixture
def soap(live_server: ServerThread, account: NewAccount) -> Iterator[Any]:
    """A zeep service proxy for the live gateway (the account acme exists)."""
    http = requests.Session()
    yield service_of(live_server.url, http)
    finish(live_server, http)


@pytest.fixture
def sid(soap: Any) -> str:
    """A session of acme."""
    return str(soap.login(userName="acme", password=PASSWORD))


@pytest.fixture
def dispatcher(runtime: Runtime) -> Iterator[Dispatcher]:
    engine = Dispatcher(runtime)
    yield engine
    engine.stop()


def as_dict(record: Any) -> dict[str, Any]:
    return zeep.helpers.serialize_object(record, dict)  # type: ignore[no-any-return]


def listed(soap: Any, sid: str, **filters: Any) -> list[int]:
    return [hook.id for hook in soap.getWebHooks(sessionId=sid, **filters)]


def test_create_returns_the_secret_once_and_every_field_of_the_webhook(
    runtime: Runtime, account: NewAccount, soap: Any, sid: str, http_receiver: Receiver
) -> None:
    created = soap.createWebHook(sessionId=sid, url=http_receiver.url, events=["open", "Click,bounce"], app="crm")

    assert created.secret.startswith("whsec_")
    assert len(base64.b64decode(created.secret.removeprefix("whsec_"), validate=True)) >= 24
    assert abs(created.createdAt - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert as_dict(created) == {
        "id": created.id, "url": http_receiver.url, "events": ["OPEN", "CLICK", "BOUNCE"], "format": "json",
        "app": "crm", "active": True, "deactivatedAt": None, "failingSince": None, "headers": [],
        "basicAuth": False, "batchMaxEvents": 500, "intervalSeconds": 0, "batchMaxBytes": None,
        "rateLimit": None, "createdAt": created.createdAt, "secret": created.secret}
    with runtime.sessions() as session:
        shown = webhooks.view(session, webhooks.get(session, account.id, created.id), with_secret=True)
    assert set(as_dict(created)) == {re.sub("_(.)", lambda m: m[1].upper(), name) for name in shown}
    assert as_dict(soap.getWebHook(sessionId=sid, webHookId=created.id)) == {**as_dict(created), "secret": None}

    given = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="SMSFAILED", format="json-single",
                               secret=SECRET)
    assert (given.secret, given.events, given.format, given.app) == (SECRET, ["SMSFAILED"], "json-single", None)
    assert soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN").secret != created.secret


def test_list_filters_by_app_and_event(runtime: Runtime, soap: Any, sid: str, http_receiver: Receiver) -> None:
    crm_opens = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN,CLICK", app="crm").id
    crm_bounces = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="BOUNCE", app="crm").id
    erp_opens = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN", app="erp").id

    assert listed(soap, sid) == [crm_opens, crm_bounces, erp_opens]
    assert listed(soap, sid, app="crm") == [crm_opens, crm_bounces]
    assert listed(soap, sid, event="OPEN") == [crm_opens, erp_opens]
    assert listed(soap, sid, app="crm", event="open") == [crm_opens]
    assert listed(soap, sid, event="hard") == [crm_bounces]
    assert listed(soap, sid, app="nobody") == []
    code, message = fault_of(soap.getWebHooks, sessionId=sid, event="NOPE")
    assert code.endswith("Client.ValidationError") and message.startswith("field 'event'")


def test_update_changes_only_the_fields_given(
    runtime: Runtime, account: NewAccount, soap: Any, sid: str, http_receiver: Receiver
) -> None:
    hook = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN", app="crm")
    before = as_dict(soap.getWebHook(sessionId=sid, webHookId=hook.id))

    moved = soap.updateWebHook(sessionId=sid, webHookId=hook.id, url=http_receiver.url + "/new")
    assert as_dict(moved) == {**before, "url": http_receiver.url + "/new"}
    changed = soap.updateWebHook(sessionId=sid, webHookId=hook.id, events=["CLICK", "BOUNCE"], format="form",
                                 app="erp", secret=SECRET)
    assert as_dict(changed) == {**as_dict(moved), "events": ["CLICK", "BOUNCE"], "format": "form", "app": "erp"}
    assert as_dict(soap.getWebHook(sessionId=sid, webHookId=hook.id)) == as_dict(changed)

    # Headers are set over REST; SOAP shows them.
    with runtime.sessions.begin() as session:
        webhooks.update_webhook(session, account.id, hook.id, {"headers": {"X-Env": "test"}})
    assert as_dict(soap.getWebHook(sessionId=sid, webHookId=hook.id))["headers"] == [{"name": "X-Env",
                                                                                       "value": "test"}]
    assert soap.verifyWebHook(sessionId=sid, webHookId=hook.id).ok
    (test_event,) = http_receiver.requests
    assert test_event.path == "/hook/new" and signature_ok(test_event, SECRET)
    assert test_event.headers["X-Env"] == "test"


def test_verify_reports_what_the_receiver_answered(soap: Any, sid: str, http_receiver: Receiver) -> None:
    hook = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN")

    http_receiver.respond(200, b"hello")
    assert as_dict(soap.verifyWebHook(sessionId=sid, webHookId=hook.id)) == {
        "ok": True, "status": 200, "answer": "hello", "error": None}
    http_receiver.respond(500, b"broken")
    failed = soap.verifyWebHook(sessionId=sid, webHookId=hook.id)

    assert (failed.ok, failed.status, failed.answer) == (False, 500, "broken") and "HTTP 500" in failed.error
    assert all(signature_ok(request, hook.secret) for request in http_receiver.requests)
    # A test event is not an attempt at real events, and the webhook stays as it was.
    assert soap.getWebHookAttempts(sessionId=sid, webHookId=hook.id) == []
    assert soap.getWebHook(sessionId=sid, webHookId=hook.id).active is True


def test_create_with_verify_refuses_a_url_that_does_not_answer_2xx(
    soap: Any, sid: str, http_receiver: Receiver
) -> None:
    http_receiver.respond(500, b"broken")
    code, message = fault_of(soap.createWebHook, sessionId=sid, url=http_receiver.url, events="OPEN", verify=True)
    assert code.endswith("Client.ValidationError") and message.startswith("field 'url'") and "HTTP 500" in message
    dead = refused_url()
    _, message = fault_of(soap.createWebHook, sessionId=sid, url=dead, events="OPEN", verify=True)
    assert message.endswith(f"could not connect to {dead.split('/')[2]}")
    assert listed(soap, sid) == []

    http_receiver.respond(200)
    created = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN", verify=True)
    assert listed(soap, sid) == [created.id] and len(http_receiver.requests) == 2


@pytest.mark.parametrize("replay", [True, False])
def test_activate_after_a_deactivation_delivers_or_drops_what_waited(
    runtime: Runtime, account: NewAccount, soap: Any, sid: str, http_receiver: Receiver, dispatcher: Dispatcher,
    replay: bool
) -> None:
    hook = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN")
    http_receiver.respond(410)
    ingest(runtime, account.id, [raw_event("e1"), raw_event("e2")])
    dispatcher.drain()
    ingest(runtime, account.id, [raw_event("e3")])
    gone = soap.getWebHook(sessionId=sid, webHookId=hook.id)
    assert gone.active is False and gone.deactivatedAt is not None

    http_receiver.respond(200)
    activated = soap.activateWebHook(sessionId=sid, webHookId=hook.id, replayEvents=replay)
    assert as_dict(activated) == {"id": hook.id, "active": True, "queued": 3 if replay else 0,
                                  "dropped": 0 if replay else 3}
    dispatcher.drain()

    assert deliveries(http_receiver.requests[1:]) == Counter(["e1", "e2", "e3"] if replay else [])
    shown = soap.getWebHook(sessionId=sid, webHookId=hook.id)
    assert shown.active is True and shown.deactivatedAt is None
    log = soap.getWebHookAttempts(sessionId=sid, webHookId=hook.id)
    delivered = [("delivered", 200, 1), ("delivered", 200, 2)] if replay else []
    assert [(a.outcome, a.status, a.events) for a in log] == delivered + [("deactivated", None, 0),
                                                                           ("failed", 410, 2)]
    assert log[-1].messageId == http_receiver.requests[0].headers["webhook-id"]
    assert None not in as_dict(log[-1]).values()
    assert all(isinstance(a.startedAt, datetime) and isinstance(a.durationMs, int) for a in log)
    assert [a.outcome for a in soap.getWebHookAttempts(sessionId=sid, webHookId=hook.id, limit=1)] == [log[0].outcome]


def test_replay_redelivers_a_time_window(
    runtime: Runtime, account: NewAccount, soap: Any, sid: str, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN")
    ingest(runtime, account.id, [raw_event("before", occurred_at="2026-11-23T23:59:59Z"),
                                 raw_event("inside", occurred_at="2026-11-24T00:00:00Z"),
                                 raw_event("after", occurred_at="2026-11-25T00:00:00Z")])
    dispatcher.drain()
    day = datetime(2026, 11, 24, tzinfo=timezone.utc)

    assert soap.replayWebHook(sessionId=sid, webHookId=hook.id, since=day, until=day + timedelta(days=1)) == 1
    dispatcher.drain()

    assert deliveries(http_receiver.requests) == Counter(["before", "inside", "inside", "after"])
    for since, until in [(day, day), (day + timedelta(days=1), day), (day.replace(tzinfo=None), day)]:
        code, message = fault_of(soap.replayWebHook, sessionId=sid, webHookId=hook.id, since=since, until=until)
        assert code.endswith("Client.ValidationError") and message.startswith("field 'since'"), (since, until)


def test_delete_gives_the_types_back_to_the_pull_queue(
    runtime: Runtime, account: NewAccount, soap: Any, sid: str, http_receiver: Receiver
) -> None:
    hook = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN")
    ingest(runtime, account.id, [raw_event("to-the-webhook")])

    assert soap.deleteWebHookById(sessionId=sid, webHookId=hook.id) is None

    assert listed(soap, sid) == []
    for operation in (soap.getWebHook, soap.deleteWebHookById):
        code, _ = fault_of(operation, sessionId=sid, webHookId=hook.id)
        assert code.endswith("Client.NotFound")
    ingest(runtime, account.id, [raw_event("to-the-pull-queue")])
    batch = soap.getBatch(sessionId=sid, types="OPEN", max=10, markAsRead=True)
    assert [event.id for event in batch.events.TypedEvent] == ["to-the-pull-queue"]


BAD_INPUT = [
    ({"url": "not a url"}, "url"),
    ({"url": "ftp://files.example.com/hook"}, "url"),
    ({"url": ""}, "url"),
    ({"events": ["OPEN", "NOPE"]}, "events"),
    ({"events": "OPEN,NOPE"}, "events"),
    ({"events": ""}, "events"),
    ({"events": [" ", ","]}, "events"),
    ({"format": "xml"}, "format"),
    ({"secret": SHORT_SECRET}, "secret"),
    ({"secret": base64.b64encode(b"x" * 32).decode()}, "secret"),
    ({"app": "x" * 201}, "app"),
]


def test_bad_input_is_a_fault_naming_the_field(soap: Any, sid: str, http_receiver: Receiver) -> None:
    valid = {"url": http_receiver.url, "events": "OPEN"}
    hook = soap.createWebHook(sessionId=sid, **valid)
    shown = as_dict(soap.getWebHook(sessionId=sid, webHookId=hook.id))
    missing = [({"events": None}, "events"), ({"events": []}, "events"), ({"url": None}, "url")]
    for operation, base, cases in [(soap.createWebHook, valid, BAD_INPUT + missing),
                                   (soap.updateWebHook, {"webHookId": hook.id}, BAD_INPUT)]:
        for change, field in cases:
            code, message = fault_of(operation, sessionId=sid, **{**base, **change})
            assert code.endswith("Client.ValidationError") and message.startswith(f"field '{field}'"), change

    assert listed(soap, sid) == [hook.id]
    assert as_dict(soap.getWebHook(sessionId=sid, webHookId=hook.id)) == shown


def webhook_calls(webhook_id: int) -> list[tuple[str, dict[str, Any]]]:
    """Every operation on one webhook, with valid arguments."""
    day = datetime(2026, 11, 24, tzinfo=timezone.utc)
    return [("getWebHook", {}), ("updateWebHook", {"url": "http://127.0.0.1:9/stolen"}), ("verifyWebHook", {}),
            ("activateWebHook", {"replayEvents": True}),
            ("replayWebHook", {"since": day, "until": day + timedelta(days=1)}),
            ("getWebHookAttempts", {}), ("deleteWebHookById", {})]


def test_another_accounts_webhook_is_not_found(
    soap: Any, sid: str, other_account: NewAccount, http_receiver: Receiver
) -> None:
    hook = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN", app="crm")
    shown = as_dict(soap.getWebHook(sessionId=sid, webHookId=hook.id))
    other = soap.login(userName="globex", password=PASSWORD)

    for name, arguments in webhook_calls(hook.id):
        code, message = fault_of(getattr(soap, name), sessionId=other, webHookId=hook.id, **arguments)
        assert code.endswith("Client.NotFound") and message == f"webhook {hook.id} not found", name
    assert listed(soap, other, app="crm") == []

    assert http_receiver.requests == []
    assert as_dict(soap.getWebHook(sessionId=sid, webHookId=hook.id)) == shown


def test_an_unknown_session_is_an_auth_fault(soap: Any, sid: str, http_receiver: Receiver) -> None:
    hook = soap.createWebHook(sessionId=sid, url=http_receiver.url, events="OPEN")
    calls = [("createWebHook", {"url": http_receiver.url, "events": "OPEN"}), ("getWebHooks", {})] + [
        (name, {"webHookId": hook.id, **arguments}) for name, arguments in webhook_calls(hook.id)]

    for name, arguments in calls:
        code, message = fault_of(getattr(soap, name), sessionId="X-not-a-session", **arguments)
        assert code.endswith("Client.AuthError") and "session" in message, name
    assert listed(soap, sid) == [hook.id] and http_receiver.requests == []
