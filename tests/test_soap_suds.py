"""suds-community (the client behind the published Python integrations) on both services of a live gateway.

On the literal legacy WSDL it creates the paintArray types by plain name, logs in, peeks twice,
drains and logs out; on the typed WSDL it calls every operation of both ports of the one service.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from suds.client import Client
from suds.plugin import MessagePlugin
from suds.sudsobject import asdict

from bench.eventgen import generate
from gateway.accounts import NewAccount
from gateway.events import formats, model
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from gateway.server import ServerThread
from gateway.soap import typed, typed_webhooks
from tests.support.http_receiver import Receiver
from tests.support.runtime import PASSWORD

LITERAL_ACTION = '"urn:localhost-paint#handleRequestLiteral"'


@pytest.fixture
def stored(runtime: Runtime, account: NewAccount) -> list[model.Event]:
    """60 events of acme, in arrival order."""
    raws = list(generate(60, seed=3))
    assert ingest_request(runtime.sessions, account.id, raws).accepted == 60
    return model.validate_all(raws)


class Recorder(MessagePlugin):
    """Keeps what suds sent: the SOAPAction is in the WSDL, the envelope is suds' own."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sending(self, context: Any) -> None:
        self.sent.append(context.envelope)


# -- the literal legacy WSDL --------------------------------------------------------------


def paint_array(client: Client, mapping: Mapping[str, Any]) -> Any:
    """A paintArray built from the types created by their plain names, as published suds clients do."""
    array = client.factory.create("paintArray")
    for key, value in mapping.items():
        pair = client.factory.create("paintKeyValuePair")
        pair.key = key
        pair.value = client.factory.create("paintKeyValuePairValue")
        if isinstance(value, Mapping):
            pair.value.arr = paint_array(client, value)
        else:
            pair.value.str = str(value)
        array.pairs.append(pair)
    return array


def from_paint_array(array: Any) -> dict[str, Any]:
    """suds' paintArray as a dict."""
    decoded: dict[str, Any] = {}
    for pair in getattr(array, "pairs", None) or ():
        nested = getattr(pair.value, "arr", None)
        decoded[pair.key] = from_paint_array(nested) if nested is not None else pair.value.str
    return decoded


def test_suds_on_the_literal_wsdl(runtime: Runtime, live_server: ServerThread, stored: list[model.Event]) -> None:
    runtime.settings = runtime.settings.replace(public_url=live_server.url)
    recorder = Recorder()
    client = Client(live_server.url + "/paint/ctrlPaintLiteral.wsdl", cache=None, plugins=[recorder])

    def call(context_id: str | None, class_name: str, process_name: str,
             entity_data: Mapping[str, Any] | None = None, process_data: Mapping[str, Any] | None = None) -> Any:
        result = client.service.handleRequest(
            context_id, class_name, process_name,
            None if entity_data is None else paint_array(client, entity_data),
            None if process_data is None else paint_array(client, process_data))
        return from_paint_array(result)

    login = call(None, "bus_facade_context", "login", {"userName": "acme", "password": PASSWORD})
    assert login["result"] == "success"
    context_id = login["resultData"]["bus_entity_context"]["beanId"]
    wanted = {"notificationTypes": "OPEN,CLICK", "maxNotifications": 1000}
    peeks = [call(context_id, "bus_facade_eventNotification", "getBatch", None, {**wanted, "markAsReadInd": "N"})
             for _ in range(2)]
    drained = call(context_id, "bus_facade_eventNotification", "getBatch", None, {**wanted, "markAsReadInd": "Y"})
    after = call(context_id, "bus_facade_eventNotification", "getBatch", None, {**wanted, "markAsReadInd": "Y"})
    # Empty maps and suds' SOAP-ENV:encodingStyle on the Envelope: the SOAPAction says literal.
    logout = call(context_id, "bus_facade_context", "logout")

    expected = [formats.to_legacy_row(event) for event in stored if event["type"] in ("OPEN", "CLICK")]
    assert expected
    batches = [result["resultData"]["bus_entity_eventNotificationBatch"] for result in (*peeks, drained)]
    assert batches[0] == batches[1] == batches[2]
    assert batches[0]["eventCount"] == str(len(expected))
    assert set(batches[0]["eventMeta"]) == {"OPEN", "CLICK"}
    assert after["resultData"]["bus_entity_eventNotificationBatch"]["eventCount"] == "0"
    assert logout == {"result": "success"}
    assert b"encodingStyle" in recorder.sent[-1] and b"<entityData" not in recorder.sent[-1]
    gone = call(context_id, "bus_facade_eventNotification", "getBatch", None, wanted)
    assert gone["result"] == "bean_exception_system"


# -- the typed WSDL: one service, two ports --------------------------------------------------


def suds_events(server: ServerThread) -> Client:
    """A suds client of /soap/events, talking to ``server`` whatever address the WSDL names."""
    return Client(server.url + typed.PATH + "?wsdl", cache=None, location=server.url + typed.PATH)


def test_the_typed_wsdl_is_one_service_of_two_ports(live_server: ServerThread) -> None:
    client = suds_events(live_server)

    (service,) = client.wsdl.services
    assert service.name == "EventsService"
    ports = {port.name: sorted(port.methods) for port in service.ports}
    assert ports == {
        typed.PORT: sorted(typed.EventsService.public_methods),
        typed_webhooks.PORT: sorted(typed_webhooks.WebHooksService.public_methods),
    }
    assert len(ports[typed.PORT]) + len(ports[typed_webhooks.PORT]) == 14
    assert not set(ports[typed.PORT]) & set(ports[typed_webhooks.PORT])


def test_suds_calls_every_typed_operation(runtime: Runtime, live_server: ServerThread, stored: list[model.Event],
                                          http_receiver: Receiver) -> None:
    client = suds_events(live_server)
    events, hooks = client.service[typed.PORT], client.service[typed_webhooks.PORT]
    called: set[str] = set()

    def call(port: Any, operation: str, *args: Any) -> Any:
        called.add(operation)
        return getattr(port, operation)(*args)

    sid = call(events, "login", "acme", PASSWORD)
    peeked = call(events, "getBatch", sid, ["OPEN"], 10, None, True)
    leased = call(events, "getBatch", sid, ["OPEN"], 10, False, None)
    opens = [event for event in stored if event["type"] == "OPEN"][:10]
    assert [event.id for event in peeked.events.TypedEvent] == [event["id"] for event in opens]
    assert int(peeked.count) == int(leased.count) == len(opens) and not hasattr(peeked, "batchId")
    again = call(events, "getBatchAgain", sid, leased.batchId)
    assert [event.id for event in again.events.TypedEvent] == [event["id"] for event in opens]
    assert call(events, "acknowledgeBatch", sid, leased.batchId) == len(opens)

    hook = call(hooks, "createWebHook", sid, http_receiver.url, ["CLICK"], None, "crm", None, False)
    assert hook.secret.startswith("whsec_") and hook.events == ["CLICK"]
    assert [found.id for found in call(hooks, "getWebHooks", sid, "crm", None)] == [hook.id]
    assert call(hooks, "getWebHook", sid, hook.id).url == http_receiver.url
    assert call(hooks, "updateWebHook", sid, hook.id, None, None, "form", None, None).format == "form"
    assert call(hooks, "verifyWebHook", sid, hook.id).ok
    assert len(http_receiver.requests) == 1
    activated = asdict(call(hooks, "activateWebHook", sid, hook.id, False))
    assert activated
    now = datetime.now(timezone.utc)
    assert call(hooks, "replayWebHook", sid, hook.id, now - timedelta(days=400), now) == len(
        [event for event in stored if event["type"] == "CLICK"])
    attempts = call(hooks, "getWebHookAttempts", sid, hook.id, 10)
    assert attempts is not None
    assert call(hooks, "deleteWebHookById", sid, hook.id) is None
    assert call(hooks, "getWebHooks", sid, None, None) in ([], None, "")
    assert call(events, "logout", sid) is None

    assert called == set(typed.EventsService.public_methods) | set(typed_webhooks.WebHooksService.public_methods)
