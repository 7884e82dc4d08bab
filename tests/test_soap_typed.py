"""The typed SOAP service at /soap/events, through a real zeep client against a running gateway."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import zeep.helpers
from lxml import etree
from spyne import MethodContext
from spyne.protocol import ProtocolBase
from spyne.server.wsgi import WsgiApplication
from werkzeug.test import Client as WsgiClient

from gateway import pull
from gateway.accounts import NewAccount, create_account
from gateway.app import create_app
from gateway.events import model
from gateway.ingest import ingest_request
from gateway.limits import MAX_BATCH_EVENTS, MAX_SOAP_REQUEST_BYTES
from gateway.runtime import Runtime
from gateway.server import ServerThread
from gateway.soap import typed
from tests.support.events import raw_events
from tests.support.runtime import PASSWORD, make_runtime
from tests.support.typed_soap import fault_of, finish, service_of

WSDL_FILE = Path(__file__).parents[1] / "wsdl" / "events.wsdl"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def http(live_server: ServerThread) -> Iterator[requests.Session]:
    session = requests.Session()
    yield session
    finish(live_server, session)


@pytest.fixture
def soap(live_server: ServerThread, http: requests.Session) -> Any:
    return service_of(live_server.url, http)


@pytest.fixture
def session_id(soap: Any, account: NewAccount) -> Iterator[str]:
    sid = soap.login(userName="acme", password=PASSWORD)
    yield sid
    soap.logout(sessionId=sid)


def ids(result: Any) -> list[str]:
    return [event.id for event in (result.events.TypedEvent if result.events else [])]


def waiting(runtime: Runtime, account_id: int, types: list[str] | None = None) -> list[str]:
    """Ids of the events that a puller could take now (a peek, which changes nothing)."""
    return pull.get_batch(runtime.sessions, account_id, types or [], MAX_BATCH_EVENTS, "peek",
                          lambda batch: [event["id"] for event in batch.events])


def test_login_and_logout(runtime: Runtime, account: NewAccount, soap: Any) -> None:
    sid = soap.login(userName="acme", password=PASSWORD)
    assert sid.startswith("X-")
    assert soap.getBatch(sessionId=sid, types="OPEN", max=10).count == 0
    soap.logout(sessionId=sid)
    code, message = fault_of(soap.getBatch, sessionId=sid, types="OPEN", max=10)
    assert code.endswith("Client.AuthError")


def test_wrong_password_is_an_auth_fault(runtime: Runtime, account: NewAccount, soap: Any) -> None:
    code, message = fault_of(soap.login, userName="acme", password="wrong-password")
    assert code.endswith("Client.AuthError")
    assert message == "wrong account name or password"


def test_unknown_session_is_an_auth_fault(runtime: Runtime, account: NewAccount, soap: Any) -> None:
    code, message = fault_of(soap.getBatch, sessionId="X-not-a-session", types="OPEN", max=10)
    assert code.endswith("Client.AuthError")
    assert "session" in message


def test_mark_as_read_empties_the_queue_for_those_types_only(runtime: Runtime, account: NewAccount, soap: Any,
                                                             session_id: str) -> None:
    ingest_request(runtime.sessions, account.id, raw_events(3, ["OPEN"], "o") + raw_events(2, ["CLICK"], "c")
                   + raw_events(2, ["BOUNCE"], "b"))
    result = soap.getBatch(sessionId=session_id, types="OPEN,CLICK", max=100, markAsRead=True)
    assert result.count == 5
    assert ids(result) == ["o-0", "o-1", "o-2", "c-0", "c-1"]
    assert result.batchId and result.leaseUntil is None
    assert soap.getBatch(sessionId=session_id, types=["OPEN", "CLICK"], max=100, markAsRead=True).count == 0
    assert waiting(runtime, account.id) == ["b-0", "b-1"]


def test_a_batch_never_holds_more_than_max(runtime: Runtime, account: NewAccount, soap: Any,
                                           session_id: str) -> None:
    ingest_request(runtime.sessions, account.id, raw_events(5))
    assert ids(soap.getBatch(sessionId=session_id, types="OPEN", max=2, markAsRead=True)) == ["e-0", "e-1"]
    assert ids(soap.getBatch(sessionId=session_id, max=10, markAsRead=True)) == ["e-2", "e-3", "e-4"]


def test_without_mark_as_read_a_batch_is_leased_until_acknowledged(runtime: Runtime, account: NewAccount,
                                                                   soap: Any, session_id: str) -> None:
    ingest_request(runtime.sessions, account.id, raw_events(3))
    leased = soap.getBatch(sessionId=session_id, types="OPEN", max=10, markAsRead=False)
    assert ids(leased) == ["e-0", "e-1", "e-2"]
    assert leased.leaseUntil > datetime.now(timezone.utc)
    assert soap.getBatch(sessionId=session_id, types="OPEN", max=10).count == 0
    assert waiting(runtime, account.id) == []
    assert soap.acknowledgeBatch(sessionId=session_id, batchId=leased.batchId) == 3
    assert soap.acknowledgeBatch(sessionId=session_id, batchId=leased.batchId) == 0
    assert soap.getBatch(sessionId=session_id, types="OPEN", max=10).count == 0


def test_a_lease_that_runs_out_gives_the_events_back(store_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(store_url, tmp_path, pull_lease_seconds=1)
    server = ServerThread(runtime)
    http = requests.Session()
    try:
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
        ingest_request(runtime.sessions, account.id, raw_events(2))
        soap = service_of(server.url, http)
        sid = soap.login(userName="acme", password=PASSWORD)
        first = soap.getBatch(sessionId=sid, types="OPEN", max=10)
        assert ids(first) == ["e-0", "e-1"]
        assert soap.getBatch(sessionId=sid, types="OPEN", max=10).count == 0
        time.sleep(1.2)
        again = soap.getBatch(sessionId=sid, types="OPEN", max=10)
        assert ids(again) == ["e-0", "e-1"] and again.batchId != first.batchId
        assert soap.acknowledgeBatch(sessionId=sid, batchId=first.batchId) == 0
        assert soap.acknowledgeBatch(sessionId=sid, batchId=again.batchId) == 2
        time.sleep(1.2)
        assert soap.getBatch(sessionId=sid, types="OPEN", max=10).count == 0
    finally:
        finish(server, http)
        server.close()
        runtime.close()


@pytest.mark.parametrize("mark_as_read", [True, False])
def test_get_batch_again_returns_the_same_events(runtime: Runtime, account: NewAccount, soap: Any,
                                                 session_id: str, mark_as_read: bool) -> None:
    ingest_request(runtime.sessions, account.id, raw_events(4))
    first = soap.getBatch(sessionId=session_id, types="OPEN", max=3, markAsRead=mark_as_read)
    again = soap.getBatchAgain(sessionId=session_id, batchId=first.batchId)
    assert again.batchId == first.batchId and again.count == 3
    assert zeep.helpers.serialize_object(again.events) == zeep.helpers.serialize_object(first.events)


@pytest.mark.parametrize("size", [0, -1, 10_001])
def test_max_out_of_range_is_a_fault_naming_the_field(runtime: Runtime, account: NewAccount, soap: Any,
                                                      session_id: str, size: int) -> None:
    ingest_request(runtime.sessions, account.id, raw_events(2))
    code, message = fault_of(soap.getBatch, sessionId=session_id, types="OPEN", max=size, markAsRead=True)
    assert code.endswith("Client.ValidationError")
    assert "'max'" in message and "10000" in message
    assert waiting(runtime, account.id) == ["e-0", "e-1"]


def test_unknown_type_is_a_fault_naming_the_field(runtime: Runtime, account: NewAccount, soap: Any,
                                                  session_id: str) -> None:
    code, message = fault_of(soap.getBatch, sessionId=session_id, types="OPEN,NOPE", max=10)
    assert code.endswith("Client.ValidationError")
    assert "'types'" in message and "'NOPE'" in message


def test_another_accounts_batch_is_not_found(runtime: Runtime, account: NewAccount, other_account: NewAccount,
                                             soap: Any, session_id: str) -> None:
    ingest_request(runtime.sessions, account.id, raw_events(2))
    batch_id = soap.getBatch(sessionId=session_id, types="OPEN", max=10).batchId
    other = soap.login(userName="globex", password=PASSWORD)
    for operation in (soap.getBatchAgain, soap.acknowledgeBatch):
        code, message = fault_of(operation, sessionId=other, batchId=batch_id)
        assert code.endswith("Client.NotFound")
        assert batch_id in message
    assert soap.acknowledgeBatch(sessionId=session_id, batchId=batch_id) == 2


def every_field_events() -> list[dict[str, Any]]:
    """Raw events that between them fill every field of the model, with characters XML must escape."""
    common = {"message_id": "m-1", "message_name": "Spring <sale> & \"more\" ✓", "list_id": "list-7",
              "delivered_at": "2024-03-01T08:00:00.250+01:00", "occurred_at": "2024-03-01T12:00:00Z"}
    return [
        {**common, "id": "click-1", "type": "CLICK", "email": "a@example.com", "url": "https://example.com/?a=1&b=2",
         "data": {"campaign": "spring", "tags": ["x", "y"], "n": 3}},
        {**common, "id": "bounce-1", "type": "BOUNCE", "email": "b@example.com", "category": "hard",
         "reason": "550 5.1.1 <b@example.com>: user unknown"},
        {**common, "id": "sms-1", "type": "SMSFAILED", "phone": "+4915112345678", "error": "unreachable"},
        {**common, "id": "optin-1", "type": "OPTIN", "email": "c@example.com", "source": "form"},
    ]


def test_every_field_of_the_model_round_trips(runtime: Runtime, account: NewAccount, soap: Any,
                                              session_id: str) -> None:
    expected = model.validate_all(every_field_events())
    ingest_request(runtime.sessions, account.id, every_field_events())
    result = soap.getBatch(sessionId=session_id, max=10, markAsRead=True)
    received = [zeep.helpers.serialize_object(event, dict) for event in result.events.TypedEvent]
    seen = set()
    for want, got in zip(expected, received, strict=True):
        for name in model.FIELD_NAMES:
            value = got[name]
            if name == "data" and value is not None:
                value = json.loads(value)
            assert value == want.get(name), name
            if value is not None:
                seen.add(name)
    assert seen == set(model.FIELD_NAMES)


def spyne_serialisation(batch: pull.Batch) -> bytes:
    """Spyne's own serialisation of ``batch`` as the getBatch answer (what the lxml writer replaces)."""
    wsgi = WsgiApplication(typed.application(None))
    result = typed.BatchResult(
        batchId=batch.id, count=len(batch.events), leaseUntil=batch.lease_until,
        events=[typed.TypedEvent(**{name: orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
                                    if name == "data" else value for name, value in event.items()})
                for event in batch.events])
    ctx = MethodContext(wsgi, MethodContext.SERVER)
    ctx.descriptor = wsgi.app.interface.service_method_map[f"{{{typed.TNS}}}getBatch"][0]
    ctx.out_object = [result]
    wsgi.app.out_protocol.serialize(ctx, message=ProtocolBase.RESPONSE)
    wsgi.app.out_protocol.create_out_string(ctx)
    return b"".join(ctx.out_string)


def infoset(element: etree._Element) -> tuple[Any, ...]:
    """An element as comparable nodes: name (namespace included), namespaces in scope, attributes, text, children.

    Text that is only indentation is left out.
    """
    text = (element.text or "") if (element.text or "").strip() or len(element) == 0 else ""
    return (element.tag, tuple(sorted(element.nsmap.items(), key=str)), tuple(sorted(element.attrib.items())),
            text, tuple(infoset(child) for child in element))


@pytest.mark.parametrize("lease_until", [None, T0])
def test_the_lxml_writer_writes_what_spyne_would(lease_until: datetime | None) -> None:
    # As the store reads them: fields in the model's order.
    events = [{name: event[name] for name in model.FIELD_NAMES if name in event}
              for event in model.validate_all(every_field_events())]
    batch = pull.Batch("b_test", events, "lease" if lease_until else "read", lease_until)
    written = typed.write_batch(batch)
    assert infoset(etree.fromstring(written)) == infoset(etree.fromstring(spyne_serialisation(batch)))


def test_an_empty_peek_is_written_as_spyne_would() -> None:
    batch = pull.Batch(None, [], "peek")
    assert infoset(etree.fromstring(typed.write_batch(batch))) == \
        infoset(etree.fromstring(spyne_serialisation(batch)))


def test_a_control_character_does_not_break_the_queue(runtime: Runtime, account: NewAccount, soap: Any,
                                                      session_id: str) -> None:
    raw = raw_events(2)
    raw[0]["message_name"] = "bad\x01name"
    ingest_request(runtime.sessions, account.id, raw)
    result = soap.getBatch(sessionId=session_id, types="OPEN", max=10, markAsRead=True)
    assert [event.message_name for event in result.events.TypedEvent] == ["bad\ufffdname", None]


def test_the_checked_in_wsdl_is_the_served_one(runtime: Runtime, live_server: ServerThread) -> None:
    response = requests.get(live_server.url + typed.PATH + "?wsdl", timeout=10)
    assert response.status_code == 200
    served = etree.fromstring(response.content)
    checked_in = etree.parse(str(WSDL_FILE)).getroot()
    address = ".//{http://schemas.xmlsoap.org/wsdl/soap/}address"
    assert served.find(address).get("location") == runtime.settings.effective_public_url + typed.PATH
    assert checked_in.find(address).get("location") == typed.WSDL_PUBLIC_URL + typed.PATH
    served.find(address).set("location", "PUBLIC_URL")
    checked_in.find(address).set("location", "PUBLIC_URL")
    assert infoset(served) == infoset(checked_in), "regenerate: python -m gateway.soap.typed > wsdl/events.wsdl"


def test_the_wsdl_names_the_configured_public_url(sqlite_url: str, tmp_path: Path) -> None:
    runtime = make_runtime(sqlite_url, tmp_path, public_url="https://events.example.com/gw/")
    try:
        response = WsgiClient(create_app(runtime)).get("/soap/events?wsdl")
        location = etree.fromstring(response.data).find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
        assert location.get("location") == "https://events.example.com/gw/soap/events"
    finally:
        runtime.close()


def post(url: str, body: bytes) -> etree._Element:
    """Post a raw envelope; returns the SOAP fault it was answered with."""
    response = requests.post(url + typed.PATH, data=body, headers={"Content-Type": "text/xml; charset=utf-8"},
                             timeout=10)
    assert response.status_code == 500
    fault = etree.fromstring(response.content).find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert fault is not None and "Traceback" not in response.text
    return fault


ENVELOPE = ('<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:eventgw:events:1">'
            "<s:Body>{}</s:Body></s:Envelope>")


def test_bad_requests_get_clear_faults(runtime: Runtime, account: NewAccount, live_server: ServerThread) -> None:
    missing_max = post(live_server.url, ENVELOPE.format(
        "<t:getBatch><t:sessionId>X-1</t:sessionId><t:types>OPEN</t:types></t:getBatch>").encode())
    assert missing_max.findtext("faultcode").endswith("Client.ValidationError")
    assert "'max'" in missing_max.findtext("faultstring")
    not_a_number = post(live_server.url, ENVELOPE.format(
        "<t:getBatch><t:sessionId>X-1</t:sessionId><t:max>abc</t:max></t:getBatch>").encode())
    assert "'abc'" in not_a_number.findtext("faultstring")
    laughs = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
              + ENVELOPE.format(f"<t:login><t:userName>&c;</t:userName><t:password>{PASSWORD}</t:password>"
                                "</t:login>"))
    doctype = post(live_server.url, laughs.encode())
    assert doctype.findtext("faultcode").endswith("Client.XMLSyntaxError")
    assert "DOCTYPE" in doctype.findtext("faultstring")
    huge = "x" * MAX_SOAP_REQUEST_BYTES
    too_large = post(live_server.url,
                     ENVELOPE.format(f"<t:logout><t:sessionId>{huge}</t:sessionId></t:logout>").encode())
    assert too_large.findtext("faultcode").endswith("Client.RequestTooLong")
