"""Control of deliveries over the REST API: retry now, deactivate, activate of an active webhook, failed
deliveries across destinations and their re-drive, unknown and read-only JSON fields, and the queue's age."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.core import Metric

from gateway.accounts import NewAccount
from gateway.app import create_app
from gateway.delivery.engine import Dispatcher
from gateway.metrics import QueueCollector
from gateway.runtime import Runtime
from gateway.server import ServerThread
from tests.support.delivery import deliveries
from tests.support.events import raw_event
from tests.support.http_receiver import Receiver
from tests.support.parking import park
from tests.support.rest import GLOBEX, call, create, post_events


@pytest.fixture
def dispatcher(runtime: Runtime) -> Iterator[Dispatcher]:
    """A dispatcher over the live server's store, stopped after the test."""
    engine = Dispatcher(runtime)
    yield engine
    engine.stop()


def _failing_webhook(server: ServerThread, receiver: Receiver, dispatcher: Dispatcher, *uids: str) -> int:
    """A webhook whose receiver answered 503 to a batch of ``uids``, which now waits for its retry."""
    hook = int(create(server, url=receiver.url, events=["OPEN"])["id"])
    receiver.respond(503, b"down for maintenance")
    post_events(server, [raw_event(uid) for uid in uids])
    dispatcher.drain()
    assert len(receiver.requests) == 1
    return hook


def test_retry_now_sends_a_waiting_retry_at_once_under_its_message_id(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = _failing_webhook(live_server, http_receiver, dispatcher, "e1", "e2")
    (failed,) = call(live_server, "GET", f"/api/v1/webhooks/{hook}/attempts").body["attempts"]
    assert failed["outcome"] == "failed" and "next try in" in failed["detail"]
    http_receiver.respond(200)
    dispatcher.drain()
    assert len(http_receiver.requests) == 1  # the retry waits out its backoff

    retried = call(live_server, "POST", f"/api/v1/webhooks/{hook}/retry")
    assert retried.status == 200 and retried.body == {"id": hook, "due": 2}
    dispatcher.drain()

    first, again = http_receiver.requests
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert deliveries([again]) == Counter(["e1", "e2"])
    assert call(live_server, "POST", f"/api/v1/webhooks/{hook}/retry").body == {"id": hook, "due": 0}


def test_retry_now_is_refused_for_a_deactivated_webhook_and_another_accounts(
    live_server: ServerThread, account: NewAccount, other_account: NewAccount, http_receiver: Receiver
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    assert call(live_server, "POST", f"/api/v1/webhooks/{hook}/retry", GLOBEX).status == 404
    assert call(live_server, "POST", f"/api/v1/webhooks/{hook}/deactivate", GLOBEX).status == 404
    assert call(live_server, "POST", f"/api/v1/webhooks/{hook}").status == 405
    assert call(live_server, "POST", f"/api/v1/webhooks/{hook}/deactivate").status == 200

    refused = call(live_server, "POST", f"/api/v1/webhooks/{hook}/retry")
    assert refused.status == 409
    assert "deactivated" in refused.body["message"] and "activate" in refused.body["message"]


def test_deactivate_by_hand_keeps_the_events_for_a_replay(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]

    deactivated = call(live_server, "POST", f"/api/v1/webhooks/{hook}/deactivate")
    assert deactivated.status == 200 and deactivated.body == {"id": hook, "active": False, "deactivated": True}
    again = call(live_server, "POST", f"/api/v1/webhooks/{hook}/deactivate")
    assert again.body == {"id": hook, "active": False, "deactivated": False}
    post_events(live_server, [raw_event("e1"), raw_event("e2")])
    dispatcher.drain()
    assert http_receiver.requests == []

    (notice,) = call(live_server, "GET", "/api/v1/notifications").body["notifications"]
    assert notice["kind"] == "deactivated" and "deactivated by the account" in notice["message"]
    assert "kept" in notice["message"]
    shown = call(live_server, "GET", f"/api/v1/webhooks/{hook}").body
    assert shown["active"] is False and shown["deactivated_at"]
    assert call(live_server, "GET", "/api/v1/stats").body["pending"][str(hook)]["pending"] == 2

    activated = call(live_server, "POST", f"/api/v1/webhooks/{hook}/activate?replay=true")
    assert activated.body["activated"] is True and activated.body["queued"] == 2
    dispatcher.drain()
    assert deliveries(http_receiver.requests) == Counter(["e1", "e2"])


def test_activating_an_active_webhook_changes_nothing_and_says_so(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]

    answer = call(live_server, "POST", f"/api/v1/webhooks/{hook}/activate")

    assert answer.status == 200
    assert answer.body["activated"] is False and answer.body["dropped"] == 0
    assert "already active" in answer.body["message"]
    assert call(live_server, "GET", "/api/v1/notifications").body["notifications"] == []


def test_other_destinations_have_retry_and_deactivate_too(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    created = call(live_server, "POST", "/api/v1/destinations",
                   json={"kind": "email", "events": ["BOUNCE"], "recipients": ["ops@example.com"]})
    assert created.status == 201
    email = created.body["id"]
    assert call(live_server, "POST", f"/api/v1/destinations/{email}/retry").body == {"id": email, "due": 0}
    assert call(live_server, "POST", f"/api/v1/destinations/{email}/deactivate").body["deactivated"] is True
    assert call(live_server, "GET", f"/api/v1/destinations/{email}").body["active"] is False
    assert call(live_server, "POST", f"/api/v1/destinations/{email}/retry").status == 409
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    # Each API names its own kind: a webhook is not a /destinations one, nor the reverse.
    assert call(live_server, "POST", f"/api/v1/destinations/{hook}/deactivate").status == 404
    assert call(live_server, "POST", f"/api/v1/webhooks/{email}/retry").status == 404


def test_failed_deliveries_across_destinations_and_their_redrive(
    runtime: Runtime, live_server: ServerThread, account: NewAccount, other_account: NewAccount,
    http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    failing = _failing_webhook(live_server, http_receiver, dispatcher, "e1")
    parking = create(live_server, url=http_receiver.url, events=["CLICK"])["id"]
    post_events(live_server, [raw_event("c1", "CLICK"), raw_event("c2", "CLICK")])
    park(runtime, parking, "c1", "cannot be written as JSON")

    listed = call(live_server, "GET", "/api/v1/failed")
    assert listed.status == 200
    parked, attempt = listed.body["failed"]  # newest first
    assert (parked["failure"], parked["destination_id"], parked["event"], parked["type"]) == (
        "parked", parking, "c1", "CLICK")
    assert parked["error"] == "cannot be written as JSON"
    assert (attempt["failure"], attempt["destination_id"], attempt["status"], attempt["events"]) == (
        "attempt", failing, 503, 1)
    assert "down for maintenance" in attempt["error"]
    assert call(live_server, "GET", "/api/v1/failed?limit=1").body["failed"] == [parked]
    assert call(live_server, "GET", "/api/v1/failed", params={"before": parked["at"]}).body["failed"] == [attempt]
    assert call(live_server, "GET", f"/api/v1/failed?destination={failing}").body["failed"] == [attempt]
    assert call(live_server, "GET", "/api/v1/failed", GLOBEX).body == {"failed": []}
    assert call(live_server, "GET", f"/api/v1/failed?destination={parking}", GLOBEX).status == 404
    assert call(live_server, "GET", "/api/v1/failed?destination=x").body["problems"][0]["field"] == "destination"
    assert call(live_server, "POST", "/api/v1/failed/redrive", GLOBEX).body == {"requeued": 0}

    bad = call(live_server, "POST", "/api/v1/failed/redrive", json={"event_ids": "all"})
    assert bad.status == 400 and bad.body["problems"][0]["field"] == "event_ids"
    http_receiver.respond(200)
    redriven = call(live_server, "POST", "/api/v1/failed/redrive", json={"destination_id": parking})
    assert redriven.body == {"requeued": 1}
    dispatcher.drain()
    assert deliveries(http_receiver.requests[1:]) == Counter(["c1", "c2"])
    assert [f["failure"] for f in call(live_server, "GET", "/api/v1/failed").body["failed"]] == ["attempt"]
    assert call(live_server, "POST", "/api/v1/failed/redrive").body == {"requeued": 0}


@pytest.mark.parametrize(("method", "path", "payload", "field", "says"), [
    ("PUT", "/api/v1/webhooks/{hook}", {"active": False}, "active", "/deactivate"),
    ("PUT", "/api/v1/webhooks/{hook}", {"id": 7}, "id", "read-only"),
    ("PUT", "/api/v1/webhooks/{hook}", {"verify": True}, "verify", "not a field"),
    ("POST", "/api/v1/webhooks", {"url": "{url}", "events": ["OPEN"], "bogus": 1}, "bogus", "not a field"),
    ("POST", "/api/v1/destinations", {"kind": "email", "events": ["OPEN"], "recipients": ["a@example.com"],
                                      "bogus": 1}, "bogus", "not a field"),
    ("PUT", "/api/v1/destinations/{email}", {"active": True}, "active", "/activate"),
    ("PUT", "/api/v1/routes/OPEN", {"destinations": [], "bogus": 1}, "bogus", "not a field"),
    ("PUT", "/api/v1/notifications/email", {"email": None, "bogus": 1}, "bogus", "not a field"),
    ("PUT", "/api/v1/account/password", {"current_password": "x", "password": "y", "bogus": 1}, "bogus",
     "not a field"),
    ("POST", "/api/v1/pull/requeue", {"since": "2026-11-01T00:00:00Z", "bogus": 1}, "bogus", "not a field"),
    ("POST", "/api/v1/failed/redrive", {"bogus": 1}, "bogus", "not a field"),
])
def test_unknown_and_read_only_fields_are_refused_naming_the_field(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, method: str, path: str,
    payload: dict[str, object], field: str, says: str
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    email = call(live_server, "POST", "/api/v1/destinations",
                 json={"kind": "email", "events": ["BOUNCE"], "recipients": ["ops@example.com"]}).body["id"]
    before = call(live_server, "GET", f"/api/v1/webhooks/{hook}").body
    body = {k: v.format(url=http_receiver.url) if isinstance(v, str) else v for k, v in payload.items()}

    answer = call(live_server, method, path.format(hook=hook, email=email), json=body)

    assert answer.status == 400, answer.body
    assert [p["field"] for p in answer.body["problems"]] == [field]
    assert says in answer.body["problems"][0]["message"]
    assert call(live_server, "GET", f"/api/v1/webhooks/{hook}").body == before
    assert len(call(live_server, "GET", "/api/v1/webhooks").body["webhooks"]) == 1


def test_every_json_endpoint_refuses_an_unknown_field(
    runtime: Runtime, live_server: ServerThread, account: NewAccount, http_receiver: Receiver
) -> None:
    """Each REST route that takes a body answers 400 naming a field it does not have; the routes that take none
    are listed here, so that a new route taking JSON cannot skip the check unnoticed."""
    takes_no_body = {"/api/v1/webhooks/<id:webhook_id>/verify", "/api/v1/webhooks/<id:webhook_id>/activate",
                     "/api/v1/webhooks/<id:webhook_id>/deactivate", "/api/v1/webhooks/<id:webhook_id>/retry",
                     "/api/v1/webhooks/<id:webhook_id>/replay", "/api/v1/destinations/<id:destination_id>/test",
                     "/api/v1/destinations/<id:destination_id>/activate",
                     "/api/v1/destinations/<id:destination_id>/deactivate",
                     "/api/v1/destinations/<id:destination_id>/retry",
                     "/api/v1/destinations/<id:destination_id>/export",
                     "/api/v1/destinations/<id:destination_id>/flush", "/api/v1/batches/<batch_id>/ack",
                     "/api/v1/account/api-key",
                     "/api/v1/events"}  # a batch of events: each event's fields are the event model's
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    email = call(live_server, "POST", "/api/v1/destinations",
                 json={"kind": "email", "events": ["BOUNCE"], "recipients": ["ops@example.com"]}).body["id"]
    ids = {"webhook_id": hook, "destination_id": email, "event_type": "OPEN", "batch_id": "b1"}
    checked = []
    for rule in create_app(runtime).url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule in takes_no_body:
            continue
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH"}):
            built = rule.build({name: ids[name] for name in rule.arguments}, append_unknown=False)
            assert built is not None
            answer = call(live_server, method, built[1], json={"bogus": 1})
            assert answer.status == 400, (method, rule.rule, answer.body)
            assert "bogus" in [p["field"] for p in answer.body["problems"]], (method, rule.rule, answer.body)
            checked.append(rule.rule)
    assert len(checked) >= 8


def _queue_age(runtime: Runtime) -> dict[str, float]:
    metrics: list[Metric] = list(QueueCollector(runtime.read_sessions).collect())
    (age,) = [m for m in metrics if m.name == "eventgw_queue_oldest_age_seconds"]
    return {sample.labels["kind"]: sample.value for sample in age.samples}


def test_queue_age_counts_from_arrival_and_grows_during_a_backoff(
    runtime: Runtime, live_server: ServerThread, account: NewAccount, http_receiver: Receiver,
    dispatcher: Dispatcher
) -> None:
    hook = _failing_webhook(live_server, http_receiver, dispatcher, "e1")
    time.sleep(0.3)
    first = call(live_server, "GET", "/api/v1/stats").body["pending"][str(hook)]
    first_metric = _queue_age(runtime)["http"]
    time.sleep(1.0)
    later = call(live_server, "GET", "/api/v1/stats").body["pending"][str(hook)]

    assert first["pending"] == 1
    assert first["oldest_age_seconds"] >= 0.3 and first_metric >= 0.3  # the next try is seconds ahead
    assert later["oldest_age_seconds"] >= first["oldest_age_seconds"] + 0.9
    assert _queue_age(runtime)["http"] >= first_metric + 0.9


def test_stats_show_no_age_when_nothing_waits(
    live_server: ServerThread, account: NewAccount, http_receiver: Receiver, dispatcher: Dispatcher
) -> None:
    hook = create(live_server, url=http_receiver.url, events=["OPEN"])["id"]
    post_events(live_server, [raw_event("e1")])
    dispatcher.drain()
    shown = call(live_server, "GET", "/api/v1/stats").body["pending"][str(hook)]
    assert (shown["pending"], shown["oldest_age_seconds"]) == (0, None)
    assert requests.get(live_server.url + "/api/v1/failed", timeout=10).status_code == 401
