"""The legacy handleRequest endpoint on a running server: PHP SoapClient, zeep, raw envelopes, errors, hardening."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import requests
import zeep
from lxml import etree
from zeep import xsd

from bench.eventgen import generate
from gateway.accounts import NewAccount, create_account
from gateway.events import formats, model
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from gateway.server import ServerThread
from gateway.soap.sessions import stored_id
from gateway.store.models import LegacySession
from tests.support.envelopes import (
    COMMENTED_GET_BATCH,
    DOCUMENTED_GET_BATCH,
    DOCUMENTED_LOGIN,
    ENCODED_HEAD,
    TAIL,
    encoded,
    handle_request,
    literal,
    php_value,
    response_result,
)
from tests.support.http_receiver import Receiver
from tests.support.runtime import PASSWORD, make_runtime

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
PAINT_TYPES_NS = "http://www.pure360.com/paint"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{XSI_NS}}}type"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XML_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
PHP_PULL = Path(__file__).parent / "php" / "pull.php"

CONTEXT_NOT_FOUND = "Bean requested not found - Bean type: [bus_entity_context]"
# The only two eventMeta header strings the platform documents, verbatim.
DOCUMENTED_HEADERS = {
    "OPEN": "type, email, messageName, deliveryDate",
    "CLICK": "type,email,Message Name,Delivery Date,Click Url,Click Date",
}
CONTEXT_ID = re.compile(r"^[A-Za-z]-[A-Za-z0-9]{22,24}$")


# -- the server, its events and plain HTTP ----------------------------------------------


@dataclass
class Paint:
    """A running gateway with an account, seen through raw handleRequest envelopes."""

    runtime: Runtime
    account: NewAccount
    url: str

    def post(self, body: bytes | str | Iterator[bytes], path: str = "/paint") -> requests.Response:
        """POST a body as raw-XML clients do: text/xml and no SOAPAction (an iterator goes chunked)."""
        data = body.encode() if isinstance(body, str) else body
        response = requests.post(self.url + path, data=data, headers=XML_HEADERS, timeout=60)
        assert "SOAPAction" not in response.request.headers
        assert b"Traceback" not in response.content
        return response

    def call(self, body: bytes | str, path: str = "/paint") -> dict[str, Any]:
        """POST a handleRequest envelope; its Result, decoded as PHP would."""
        return result_of(self.post(body, path))

    def login(self, name: str = "acme", password: str = PASSWORD) -> str:
        """Log in with the documented envelope; the context id."""
        result = self.call(login_envelope(name, password))
        assert result["result"] == "success", result
        context_id: str = result["resultData"]["bus_entity_context"]["beanId"]
        return context_id

    def get_batch(self, context_id: str | None, **process_data: Any) -> dict[str, Any]:
        """The Result of a getBatch with these processData entries."""
        return self.call(envelope(context_id, "bus_facade_eventNotification", "getBatch", None, process_data))

    def store(self, count: int, *, seed: int = 1, prefix: str = "evt", account_id: int | None = None,
              start: datetime | None = None) -> list[model.Event]:
        """Ingest generated events for acme (or ``account_id``); see store()."""
        return store(self.runtime, self.account.id if account_id is None else account_id,
                     count, seed=seed, prefix=prefix, start=start)


def store(runtime: Runtime, account_id: int, count: int, *, seed: int = 1, prefix: str = "evt",
          start: datetime | None = None) -> list[model.Event]:
    """Ingest ``count`` generated events; the events as the store holds them, in arrival order."""
    raws = list(generate(count, seed=seed, start=start, prefix=prefix))
    assert ingest_request(runtime.sessions, account_id, raws).accepted == count
    return model.validate_all(raws)


def serve(runtime: Runtime, server: ServerThread, account: NewAccount) -> Paint:
    """Point the WSDLs' soap:address at the running server, as a deployment's public_url would."""
    runtime.settings = runtime.settings.replace(public_url=server.url)
    return Paint(runtime, account, server.url)


@pytest.fixture
def server(live_server: ServerThread) -> Iterator[ServerThread]:
    """The live server, stopped cleanly after the test."""
    yield live_server


@pytest.fixture
def paint(runtime: Runtime, account: NewAccount, server: ServerThread) -> Paint:
    """The live server with the acme account, its public URL being its own."""
    return serve(runtime, server, account)


@pytest.fixture
def make_paint(store_url: str, tmp_path: Path) -> Iterator[Callable[..., Paint]]:
    """A factory of servers over a fresh store with some settings changed (idle timeout, lockout)."""
    opened: list[tuple[Runtime, ServerThread]] = []

    def make(**settings: Any) -> Paint:
        runtime = make_runtime(store_url, tmp_path, **settings)
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
        server = ServerThread(runtime)
        opened.append((runtime, server))
        return serve(runtime, server, account)

    yield make
    for runtime, server in opened:
        server.close()
        runtime.close()


# -- envelopes ------------------------------------------------------------------------

# The raw-XML tester's Logout.xml: empty maps.
CWORK_LOGOUT = ENCODED_HEAD + """<ns1:handleRequest>
  <contextId xsi:type="xsd:string">{context}</contextId>
  <className xsi:type="xsd:string">bus_facade_context</className>
  <processName xsi:type="xsd:string">logout</processName>
  <entityData xsi:type="ns2:Map"/>
  <processData xsi:type="ns2:Map"/>
</ns1:handleRequest>""" + TAIL


def encoded_value(name: str, value: Any) -> str:
    """One SOAP-encoded accessor, typed as PHP's SoapClient types it."""
    if value is None:
        return f'<{name} xsi:nil="true"/>'
    if isinstance(value, Mapping):
        items = "".join(
            f'<item><key xsi:type="xsd:string">{escape(key)}</key>{encoded_value("value", item)}</item>'
            for key, item in value.items()
        )
        return f'<{name} xsi:type="ns2:Map">{items}</{name}>'
    if isinstance(value, (list, tuple)):
        items = "".join(encoded_value("item", item) for item in value)
        return f'<{name} SOAP-ENC:arrayType="xsd:anyType[{len(value)}]" xsi:type="SOAP-ENC:Array">{items}</{name}>'
    kind = "xsd:int" if isinstance(value, int) else "xsd:string"
    return f'<{name} xsi:type="{kind}">{escape(str(value))}</{name}>'


def envelope(context_id: str | None, class_name: str, process_name: str,
             entity_data: Mapping[str, Any] | None, process_data: Mapping[str, Any] | None) -> bytes:
    """A complete encoded handleRequest envelope."""
    return handle_request(
        encoded_value("contextId", context_id), encoded_value("className", class_name),
        encoded_value("processName", process_name), encoded_value("entityData", entity_data),
        encoded_value("processData", process_data),
    )


def literal_pairs(name: str, mapping: Mapping[str, Any] | None) -> str:
    """A paintArray accessor as the literal clients write it (None: nil)."""
    if mapping is None:
        return f'<{name} xsi:nil="true"/>'
    pairs = "".join(
        f"<ns2:pairs><ns2:key>{escape(key)}</ns2:key><ns2:value>"
        + (literal_pairs("ns2:arr", value) if isinstance(value, Mapping) else f"<ns2:str>{escape(value)}</ns2:str>")
        + "</ns2:value></ns2:pairs>"
        for key, value in mapping.items()
    )
    return f"<{name}>{pairs}</{name}>"


def literal_envelope(context_id: str | None, class_name: str, process_name: str,
                     entity_data: Mapping[str, Any] | None, process_data: Mapping[str, Any] | None) -> bytes:
    """A complete rpc/literal handleRequest envelope, as suds or PHP write it for ctrlPaintLiteral.wsdl."""
    context = "" if context_id is None else f"<contextId>{context_id}</contextId>"
    return literal(
        f"{context}<className>{class_name}</className><processName>{process_name}</processName>"
        + literal_pairs("entityData", entity_data) + literal_pairs("processData", process_data)
    )


def login_envelope(name: str, password: str) -> str:
    """The documented login request with these credentials."""
    return DOCUMENTED_LOGIN.format(user=escape(name), password=escape(password))


# -- reading answers ----------------------------------------------------------------------


def response_root(response: requests.Response, status: int, tag: str = f"{{{SOAP_ENV_NS}}}Envelope") -> etree._Element:
    """The parsed XML answer, after checking its status, content type and root element."""
    assert response.status_code == status, response.text[:2000]
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    root = etree.fromstring(response.content)
    assert root.tag == tag
    return root


def result_element(response: requests.Response) -> etree._Element:
    """The Result element of a 200 handleRequestResponse."""
    response_root(response, 200)
    return response_result(response.content)


def paint_array(element: etree._Element) -> dict[str, Any]:
    """A literal paintArray as a dict (str values, nested arrays as dicts)."""
    out: dict[str, Any] = {}
    for pair in element.findall(f"{{{PAINT_TYPES_NS}}}pairs"):
        value = pair.find(f"{{{PAINT_TYPES_NS}}}value")
        nested = value.find(f"{{{PAINT_TYPES_NS}}}arr")
        out[pair.findtext(f"{{{PAINT_TYPES_NS}}}key")] = (
            paint_array(nested) if nested is not None else value.findtext(f"{{{PAINT_TYPES_NS}}}str")
        )
    return out


def result_of(response: requests.Response) -> dict[str, Any]:
    """The Result of a handleRequestResponse of either flavour, as nested dicts."""
    result = result_element(response)
    if result.get(XSI_TYPE) == "ns2:Map":
        decoded = php_value(result)
        keys = [item.findtext("key") for item in result]
    else:
        decoded = paint_array(result)
        keys = [pair.findtext(f"{{{PAINT_TYPES_NS}}}key") for pair in result]
    # Clients that index the pairs by position rely on this order.
    assert keys == ["result", "resultData"][: len(keys)], keys
    assert isinstance(decoded, dict)
    return decoded


def fault_of(response: requests.Response, status: int = 500) -> tuple[str, str]:
    """The faultcode and faultstring of a SOAP Fault answer."""
    fault = response_root(response, status).find(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault")
    assert fault is not None, response.text[:2000]
    return fault.findtext("faultcode") or "", fault.findtext("faultstring") or ""


def system_error(message: str = CONTEXT_NOT_FOUND) -> dict[str, Any]:
    """The Result of a bean_exception_system, by default the unknown-session one."""
    return {"result": "bean_exception_system", "resultData": message}


def batch_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The eventNotificationBatch bean of a successful getBatch Result."""
    assert result["result"] == "success", result
    batch: dict[str, Any] = result["resultData"]["bus_entity_eventNotificationBatch"]
    return batch


def rows_of(batch: Mapping[str, Any]) -> list[list[str]]:
    """The CSV rows of a batch's eventData, checking that eventCount counts them."""
    text = base64.b64decode(batch["eventData"], validate=True).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert int(batch["eventCount"]) == len(rows)
    return rows


def legacy_rows(events: Sequence[model.Event], types: Sequence[str] | None = None) -> list[list[str]]:
    """The legacy CSV rows of these events (of these types only), in order."""
    return [formats.to_legacy_row(event) for event in events if types is None or event["type"] in types]


def headers_for(rows: Sequence[Sequence[str]]) -> dict[str, str]:
    """The eventMeta a batch with these rows must carry: exactly the types present."""
    return {row[0]: formats.legacy_header(row[0]) for row in rows}


# -- 1. PHP SoapClient, as the platform's own PHP sample uses it --------------------------

PHP = shutil.which("php")


def php_problem() -> str | None:
    if PHP is None:
        return "php is not installed (the test setup installs php-cli and php-soap)"
    modules = subprocess.run([PHP, "-m"], capture_output=True, text=True, check=False).stdout.split()
    if "soap" not in modules:
        return "PHP's soap extension is not installed (the test setup installs php-soap)"
    return None


PHP_PROBLEM = php_problem()
needs_php = pytest.mark.skipif(PHP_PROBLEM is not None, reason=PHP_PROBLEM or "")


def run_php_pull(wsdl_url: str, user: str, password: str, marks: str) -> dict[str, Any]:
    """Run tests/php/pull.php; what it printed."""
    assert PHP is not None
    done = subprocess.run([PHP, str(PHP_PULL), wsdl_url, user, password, marks],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    output: dict[str, Any] = json.loads(done.stdout)
    return output


@needs_php
def test_php_soap_client_pulls_with_n_then_y(paint: Paint) -> None:
    stored = paint.store(80)
    expected = legacy_rows(stored, ("OPEN", "CLICK"))
    assert {row[0] for row in expected} == {"OPEN", "CLICK"}

    output = run_php_pull(paint.url + "/paint/ctrlPaint.wsdl", "acme", PASSWORD, "N,N,Y,N")

    assert CONTEXT_ID.match(output["contextId"])
    first, second, marked, after = output["batches"]
    assert first["eventCount"] == len(expected)  # an int, as PHP decodes xsd:int
    assert list(csv.reader(io.StringIO(first["eventData"]))) == expected
    assert dict(first["eventMeta"]) == {etype: DOCUMENTED_HEADERS[etype] for etype in ("OPEN", "CLICK")}
    assert second == first
    assert marked == dict(first, markAsReadInd="Y")
    assert after == {"markAsReadInd": "N", "eventCount": 0, "eventMeta": [], "eventData": ""}
    assert output["logout"] == {"result": "success"}
    # The session is gone, and only OPEN and CLICK were marked.
    assert paint.get_batch(output["contextId"]) == system_error()
    rest = paint.get_batch(paint.login(), markAsReadInd="N")
    assert rows_of(batch_of(rest)) == [row for row in legacy_rows(stored) if row[0] not in ("OPEN", "CLICK")]


# -- 2. zeep, with both WSDLs -------------------------------------------------------------


def zeep_map(mapping: Mapping[str, Any] | None) -> Any:
    """A dict as zeep takes an Apache map on the encoded WSDL (ints need an explicit xsi:type)."""
    if mapping is None:
        return xsd.Nil
    return {"item": [
        {"key": key, "value": xsd.AnyObject(xsd.Int(), value) if isinstance(value, int) else value}
        for key, value in mapping.items()
    ]}


def from_zeep_map(items: Any) -> dict[str, Any]:
    """zeep's decoding of an Apache map (a list of items with key and value) as a dict."""
    return {item.key: from_zeep_map(item.value.item) if hasattr(item.value, "item") else item.value
            for item in items}


def zeep_pairs(mapping: Mapping[str, Any] | None) -> Any:
    """A dict as zeep takes a paintArray on the literal WSDL."""
    if mapping is None:
        return xsd.SkipValue
    return {"pairs": [
        {"key": key, "value": {"arr": zeep_pairs(value)} if isinstance(value, Mapping) else {"str": str(value)}}
        for key, value in mapping.items()
    ]}


def from_zeep_pairs(pairs: Any) -> dict[str, Any]:
    """zeep's decoding of a paintArray as a dict."""
    return {pair.key: from_zeep_pairs(pair.value.arr.pairs) if pair.value.arr is not None else pair.value.str
            for pair in pairs or ()}


class ZeepPaint:
    """handleRequest through zeep on one of the served WSDLs; Results as dicts."""

    def __init__(self, client: zeep.Client, flavour: str) -> None:
        self.client = client
        self.flavour = flavour

    def call(self, context_id: str | None, class_name: str, process_name: str,
             entity_data: Mapping[str, Any] | None = None, process_data: Mapping[str, Any] | None = None,
             *, raw: bool = False) -> dict[str, Any]:
        """One call; with ``raw`` its reply is read with lxml instead of zeep."""
        encode = zeep_map if self.flavour == "encoded" else zeep_pairs
        no_context = xsd.Nil if self.flavour == "encoded" else xsd.SkipValue
        with self.client.settings(raw_response=raw):
            reply = self.client.service.handleRequest(
                contextId=no_context if context_id is None else context_id, className=class_name,
                processName=process_name, entityData=encode(entity_data), processData=encode(process_data),
            )
        if raw:
            return result_of(reply)
        return from_zeep_map(reply) if self.flavour == "encoded" else from_zeep_pairs(reply)


@pytest.mark.parametrize("flavour, wsdl", [("encoded", "ctrlPaint.wsdl"), ("literal", "ctrlPaintLiteral.wsdl")])
def test_zeep_login_pull_and_logout(paint: Paint, flavour: str, wsdl: str) -> None:
    stored = paint.store(40)
    expected = legacy_rows(stored, ("OPEN", "CLICK"))
    # zeep's transport never closes its connections, and a kept-alive one holds the server up.
    with requests.Session() as session:
        zp = ZeepPaint(zeep.Client(f"{paint.url}/paint/{wsdl}", transport=zeep.Transport(session=session)), flavour)
        login = zp.call(None, "bus_facade_context", "login", {"userName": "acme", "password": PASSWORD})
        assert login["result"] == "success"
        context_id = login["resultData"]["bus_entity_context"]["beanId"]
        assert CONTEXT_ID.match(context_id)

        pulls = [
            batch_of(zp.call(context_id, "bus_facade_eventNotification", "getBatch", None,
                             {"notificationTypes": "OPEN,CLICK", "maxNotifications": 1000, "markAsReadInd": mark}))
            for mark in ("N", "N", "Y")
        ]
        # The encoded reply to an empty batch holds an empty SOAP-ENC:Array, which sends zeep
        # off to fetch the SOAP encoding schema; read that one reply with lxml.
        after = batch_of(zp.call(context_id, "bus_facade_eventNotification", "getBatch", None,
                                 {"notificationTypes": "OPEN,CLICK", "maxNotifications": 1000}, raw=True))
        # zeep writes no xsi:type and no encodingStyle, so a logout with null maps is the
        # very request a literal client sends, and is answered in the literal flavour.
        logout = zp.call(context_id, "bus_facade_context", "logout", raw=flavour == "encoded")
        gone = zp.call(context_id, "bus_facade_eventNotification", "getBatch", None, {"markAsReadInd": "N"})

    assert pulls[0] == pulls[1] == pulls[2]
    assert rows_of(pulls[0]) == expected
    assert pulls[0]["eventMeta"] == DOCUMENTED_HEADERS
    # Every scalar of the literal flavour is a string.
    assert pulls[0]["eventCount"] == (len(expected) if flavour == "encoded" else str(len(expected)))
    assert rows_of(after) == [] and after["eventMeta"] in ({}, [])
    assert logout == {"result": "success"}
    assert gone == system_error()


# -- 3. the documented envelopes, posted raw with no SOAPAction ---------------------------


@pytest.mark.parametrize("path", ["/paint", "/_bus/request.soap"])
def test_documented_envelopes(paint: Paint, path: str) -> None:
    stored = paint.store(60)

    login = paint.call(DOCUMENTED_LOGIN.format(user="acme", password=PASSWORD), path)
    assert login["result"] == "success"
    context_id = login["resultData"]["bus_entity_context"]["beanId"]
    assert CONTEXT_ID.match(context_id)

    response = paint.post(DOCUMENTED_GET_BATCH.format(context=context_id), path)
    batch_element = result_element(response).find("item[2]/value/item/value")
    assert {item.findtext("key"): item.find("value").get(XSI_TYPE) for item in batch_element} == {
        "eventCount": "xsd:int", "eventMeta": "ns2:Map", "eventData": "xsd:string",
    }
    peeked = batch_of(result_of(response))
    expected = legacy_rows(stored, ("OPEN", "CLICK", "DELIVERY"))
    assert rows_of(peeked) == expected
    assert peeked["eventMeta"] == headers_for(expected)

    marked = batch_of(paint.call(COMMENTED_GET_BATCH.format(context=context_id, mark="Y"), path))
    assert rows_of(marked) == legacy_rows(stored, ("OPEN", "CLICK"))
    left = batch_of(paint.call(DOCUMENTED_GET_BATCH.format(context=context_id), path))
    assert rows_of(left) == legacy_rows(stored, ("DELIVERY",))

    assert paint.call(CWORK_LOGOUT.format(context=context_id), path) == {"result": "success"}
    assert paint.call(DOCUMENTED_GET_BATCH.format(context=context_id), path) == system_error()


LOGIN_NULL_FORMS = {
    "nil-with-text": ('<contextId xsi:nil="true">01234567890</contextId>', '<processData xsi:type="ns2:Map"/>'),
    "blank": ('<contextId xsi:type="xsd:string"></contextId>', '<processData xsi:type="ns2:Map"> </processData>'),
    "omitted": ("", ""),
}


def test_login_with_the_null_forms_clients_send(paint: Paint) -> None:
    documented = DOCUMENTED_LOGIN.format(user="acme", password=PASSWORD)
    for name, (context_part, process_part) in LOGIN_NULL_FORMS.items():
        body = (documented.replace('<contextId xsi:nil="true"/>', context_part)
                .replace('<processData xsi:nil="true"/>', process_part))

        result = paint.call(body)

        assert result["result"] == "success", name
        assert CONTEXT_ID.match(result["resultData"]["bus_entity_context"]["beanId"]), name


def test_literal_login_as_node_and_ruby_clients_read_it(paint: Paint) -> None:
    response = paint.post(literal_envelope(None, "bus_facade_context", "login",
                                           {"userName": "acme", "password": PASSWORD}, None))

    # node-soap indexes Result.pairs[1] (resultData) -> pairs[3] (the context) -> pairs[9].
    pairs = f"{{{PAINT_TYPES_NS}}}pairs"
    context = result_element(response).findall(pairs)[1].find(f"{{{PAINT_TYPES_NS}}}value/{{{PAINT_TYPES_NS}}}arr")
    context = context.findall(pairs)[3].find(f"{{{PAINT_TYPES_NS}}}value/{{{PAINT_TYPES_NS}}}arr")
    bean_id = context.findall(pairs)[9]
    assert bean_id.findtext(f"{{{PAINT_TYPES_NS}}}key") == "beanId"
    # Savon's client reads it with a regular expression over the raw reply.
    found = re.search(rb"<ns2:key>beanId</ns2:key><ns2:value><ns2:str>([A-Za-z0-9-]*)", response.content)
    assert found is not None
    assert found.group(1).decode() == bean_id.findtext(f"{{{PAINT_TYPES_NS}}}value/{{{PAINT_TYPES_NS}}}str")
    assert CONTEXT_ID.match(found.group(1).decode())


# -- 4. business errors: HTTP 200 and a documented result code ---------------------------


def test_unknown_session(paint: Paint) -> None:
    paint.store(5)

    for context_id in ("X-AAAAAAAAAAAAAAAAAAAAAA", "not a session", "", None):
        assert paint.get_batch(context_id, markAsReadInd="Y") == system_error(), context_id
    assert len(rows_of(batch_of(paint.get_batch(paint.login(), markAsReadInd="N")))) == 5


def test_idle_session_expires(make_paint: Callable[..., Paint]) -> None:
    paint = make_paint(session_idle_seconds=1)
    stored = paint.store(10)
    context_id = paint.login()

    # Activity keeps the session alive past its idle time...
    for _ in range(3):
        time.sleep(0.4)
        assert batch_of(paint.get_batch(context_id, markAsReadInd="N"))
    # ... and idleness ends it, for good and without touching the queue.
    time.sleep(1.3)
    assert paint.get_batch(context_id, markAsReadInd="Y") == system_error()
    with paint.runtime.sessions() as session:
        assert session.get(LegacySession, stored_id(context_id)) is None
    assert paint.get_batch(context_id, markAsReadInd="Y") == system_error()
    assert rows_of(batch_of(paint.get_batch(paint.login(), markAsReadInd="N"))) == legacy_rows(stored)


def test_wrong_password(paint: Paint) -> None:
    wrong = paint.call(login_envelope("acme", "not-the-password"))

    assert wrong["result"] == "bean_exception_validation"
    messages = wrong["resultData"]
    assert isinstance(messages, dict) and messages
    assert all(isinstance(message, str) and message for message in messages.values())
    assert "not-the-password" not in json.dumps(wrong)
    # An unknown account gets the same answer: logins cannot probe for names.
    assert paint.call(login_envelope("nobody", "not-the-password")) == wrong
    assert paint.call(envelope(None, "bus_facade_context", "login", {"userName": "acme"}, None)) == {
        "result": "bean_exception_validation", "resultData": {"password": "is required"},
    }


def test_repeated_wrong_passwords_lock_the_account(make_paint: Callable[..., Paint]) -> None:
    paint = make_paint(login_failure_limit=3, login_backoff_max_seconds=300)

    for _ in range(3):
        assert paint.call(login_envelope("acme", "guess"))["result"] == "bean_exception_validation"
    locked = paint.call(login_envelope("acme", PASSWORD))

    assert locked["result"] == "bean_exception_security"
    assert isinstance(locked["resultData"], str) and locked["resultData"]
    assert paint.call(login_envelope("acme", "guess"))["result"] == "bean_exception_security"


def test_unknown_class_or_process(paint: Paint) -> None:
    context_id = paint.login()
    for class_name, process_name in [
        ("bus_facade_campaign_list", "search"),
        ("bus_entity_context", "login"),
        ("bus_facade_eventNotification", "processBatchReport"),
        ("bus_facade_context", "getBatch"),
        ("bus_facade_eventNotification", None),
        (None, "getBatch"),
    ]:
        result = paint.call(envelope(context_id, class_name, process_name, None, None))

        assert result["result"] == "bean_exception_system", (class_name, process_name)
        assert isinstance(result["resultData"], str) and result["resultData"]


BAD_PARAMETERS = [
    ({"maxNotifications": 0}, "maxNotifications"),
    ({"maxNotifications": -1}, "maxNotifications"),
    ({"maxNotifications": 10_001}, "maxNotifications"),
    ({"maxNotifications": "abc"}, "maxNotifications"),
    ({"maxNotifications": "1.5"}, "maxNotifications"),
    ({"notificationTypes": "OPEN,NOSUCHTYPE"}, "notificationTypes"),
    ({"notificationTypes": ["CLICK", "opened twice"]}, "notificationTypes"),
    ({"markAsReadInd": "X"}, "markAsReadInd"),
    ({"markAsReadInd": "yes"}, "markAsReadInd"),
]


def test_bad_get_batch_parameters(paint: Paint) -> None:
    stored = paint.store(10)
    context_id = paint.login()
    for parameters, field in BAD_PARAMETERS:
        process_data = {"notificationTypes": "OPEN,CLICK", "maxNotifications": 1000, "markAsReadInd": "Y"}

        result = paint.get_batch(context_id, **(process_data | parameters))

        assert result["result"] == "bean_exception_validation", parameters
        assert list(result["resultData"]) == [field], parameters
        assert isinstance(result["resultData"][field], str) and result["resultData"][field]
    # Nothing was marked as read.
    assert rows_of(batch_of(paint.get_batch(context_id, markAsReadInd="N"))) == legacy_rows(stored)


def test_every_bad_parameter_is_named_at_once(paint: Paint) -> None:
    result = paint.get_batch(paint.login(), notificationTypes="NOPE", maxNotifications=0, markAsReadInd="X")

    assert result["result"] == "bean_exception_validation"
    assert set(result["resultData"]) == {"notificationTypes", "maxNotifications", "markAsReadInd"}


# -- 5. hostile and broken input: SOAP Faults, nothing resolved, the server unharmed -------


def assert_client_fault(response: requests.Response) -> str:
    """Check that the answer is a Client SOAP Fault; its faultstring."""
    code, message = fault_of(response)
    assert code == "SOAP-ENV:Client"
    return message


def test_a_50_mb_body_is_refused(paint: Paint) -> None:
    password = "x" * (50 * 1024 * 1024)
    body = envelope(None, "bus_facade_context", "login", {"userName": "acme", "password": password}, None)

    assert_client_fault(paint.post(body))
    # Without a Content-Length, too.
    chunks = (body[start:start + (1 << 20)] for start in range(0, len(body), 1 << 20))
    assert_client_fault(paint.post(chunks))
    assert CONTEXT_ID.match(paint.login())


def passwd_line() -> str:
    """A line of /etc/passwd, to prove that no response ever carries it."""
    try:
        return Path("/etc/passwd").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "root:x:0:0"


LOGIN_ELEMENT = (
    "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ns1=\"urn:localhost-paint\""
    " xmlns:ns2=\"http://xml.apache.org/xml-soap\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
    "<SOAP-ENV:Body><ns1:handleRequest><className>bus_facade_context</className><processName>login</processName>"
    "<entityData xsi:type=\"ns2:Map\"><item><key>userName</key><value>{user}</value></item>"
    "<item><key>password</key><value>{password}</value></item></entityData>"
    "</ns1:handleRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
)
LAUGHS = "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
HOSTILE = {
    "doctype": "<!DOCTYPE SOAP-ENV:Envelope>" + LOGIN_ELEMENT.format(user="acme", password=PASSWORD),
    "external-entity": '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    + LOGIN_ELEMENT.format(user="&xxe;", password="&xxe;"),
    "billion-laughs": f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">{LAUGHS}]>'
    + LOGIN_ELEMENT.format(user="&lol9;", password="&lol9;"),
    "internal-entity": f'<!DOCTYPE e [<!ENTITY pw "{PASSWORD}">]>' + LOGIN_ELEMENT.format(user="acme", password="&pw;"),
    "external-dtd": '<!DOCTYPE e SYSTEM "{receiver}/e.dtd">' + LOGIN_ELEMENT.format(user="acme", password=PASSWORD),
    "parameter-entity": '<!DOCTYPE e [<!ENTITY % remote SYSTEM "{receiver}/p.dtd"> %remote;]>'
    + LOGIN_ELEMENT.format(user="acme", password=PASSWORD),
}


def test_doctypes_and_entities_are_refused_unresolved(paint: Paint, http_receiver: Receiver) -> None:
    secret = passwd_line()
    for name, body in HOSTILE.items():
        response = paint.post(body.replace("{receiver}", http_receiver.url))

        assert "DOCTYPE" in assert_client_fault(response), name
        assert secret not in response.text and "lollol" not in response.text, name
    # Nothing was fetched, and the server is fine.
    assert http_receiver.requests == []
    assert CONTEXT_ID.match(paint.login())


NOT_A_HANDLE_REQUEST = {
    "empty": b"",
    "form": b"userName=acme&password=secret",
    "json": b'{"className": "bus_facade_context"}',
    "binary": bytes(range(256)),
    "unclosed": b"<SOAP-ENV:Envelope",
    "html": b"<html><body>hello</body></html>",
    "soap-1.2": b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
    b'<handleRequest xmlns="urn:localhost-paint"/></e:Body></e:Envelope>',
    "other-operation": encoded('<ns1:getBatch><contextId xsi:type="xsd:string">X-1</contextId></ns1:getBatch>'),
    "no-body": f'<e:Envelope xmlns:e="{SOAP_ENV_NS}"><e:Header/></e:Envelope>'.encode(),
    "bad-base64": envelope(None, "bus_facade_context", "login", {"userName_base64": "@@@"}, None),
}


def test_what_is_not_a_handle_request_gets_a_fault(paint: Paint) -> None:
    for name, body in NOT_A_HANDLE_REQUEST.items():
        assert assert_client_fault(paint.post(body)), name


def test_get_without_wsdl_is_a_fault(paint: Paint) -> None:
    response = requests.get(paint.url + "/paint", timeout=10)

    assert fault_of(response, 405)[0] == "SOAP-ENV:Client"
    assert b"Traceback" not in response.content


# -- 6. semantics ----------------------------------------------------------------------


def pull_all(paint: Paint, context_id: str, size: int, **parameters: Any) -> list[list[list[str]]]:
    """Pull with mark-as-read in batches of ``size`` until the queue is empty; the rows of each batch."""
    batches = []
    while rows := rows_of(batch_of(paint.get_batch(context_id, maxNotifications=size, markAsReadInd="Y",
                                                   **parameters))):
        assert len(rows) <= size
        batches.append(rows)
    return batches


def test_oldest_first(paint: Paint) -> None:
    earlier = paint.store(12, seed=1, prefix="early")
    later = paint.store(12, seed=2, prefix="late", start=datetime(2026, 12, 1, tzinfo=timezone.utc))

    batches = pull_all(paint, paint.login(), 5)

    assert [len(rows) for rows in batches] == [5, 5, 5, 5, 4]
    assert [row for rows in batches for row in rows] == legacy_rows(earlier + later)


def test_only_the_callers_account(paint: Paint, other_account: NewAccount) -> None:
    ours = paint.store(20, seed=1, prefix="acme")
    theirs = paint.store(20, seed=2, prefix="globex", account_id=other_account.id)

    acme = pull_all(paint, paint.login(), 1000)
    globex = pull_all(paint, paint.login("globex"), 1000)

    assert acme == [legacy_rows(ours)]
    assert globex == [legacy_rows(theirs)]


def test_only_the_asked_types_any_case_and_spacing(paint: Paint) -> None:
    stored = paint.store(120)
    asked = ("BOUNCE", "OPTOUT", "SOFTBOUNCE")

    batch = batch_of(paint.get_batch(paint.login(), notificationTypes=" bounce, OPTOUT ,SoftBounce,",
                                     markAsReadInd="N"))

    expected = legacy_rows(stored, asked)
    assert {row[0] for row in expected} == set(asked)
    assert rows_of(batch) == expected
    assert batch["eventMeta"] == headers_for(expected)


@pytest.mark.parametrize("flavour", ["encoded", "literal"])
def test_parameters_in_entity_data_as_pyresponse_sends_them(paint: Paint, flavour: str) -> None:
    stored = paint.store(60)
    context_id = paint.login()
    build = envelope if flavour == "encoded" else literal_envelope
    # pyresponse puts them in entityData, with a stray space in one key; the default of
    # markAsReadInd being Y, a repeated batch shows that " markAsReadInd" was read.
    body = build(context_id, "bus_facade_eventNotification", "getBatch",
                 {"notificationTypes": "CLICK", "maxNotifications": "3", " markAsReadInd": "N"}, None)

    first, second = batch_of(paint.call(body)), batch_of(paint.call(body))

    assert rows_of(first) == legacy_rows(stored, ("CLICK",))[:3]
    assert second == first
    assert first["eventMeta"] == {"CLICK": DOCUMENTED_HEADERS["CLICK"]}
    assert first["eventCount"] == (3 if flavour == "encoded" else "3")


def test_process_data_wins_over_entity_data(paint: Paint) -> None:
    stored = paint.store(10)

    body = envelope(paint.login(), "bus_facade_eventNotification", "getBatch",
                    {"maxNotifications": 5, "markAsReadInd": "Y"}, {"maxNotifications": 2, "markAsReadInd": "N"})

    assert rows_of(batch_of(paint.call(body))) == legacy_rows(stored)[:2]
    assert rows_of(batch_of(paint.call(body))) == legacy_rows(stored)[:2]


@pytest.mark.parametrize("flavour", ["encoded", "literal"])
def test_notification_types_as_an_array(paint: Paint, flavour: str) -> None:
    stored = paint.store(60)
    context_id = paint.login()
    if flavour == "encoded":
        # What PHP's SoapClient sends for array("OPEN", "CLICK"): a SOAP-ENC:Array.
        body = envelope(context_id, "bus_facade_eventNotification", "getBatch", None,
                        {"notificationTypes": ["OPEN", "CLICK"], "markAsReadInd": "N"})
        assert b'xsi:type="SOAP-ENC:Array"' in body
    else:
        body = literal_envelope(context_id, "bus_facade_eventNotification", "getBatch", None,
                                {"notificationTypes": {"0": "OPEN", "1": "CLICK"}, "markAsReadInd": "N"})

    assert rows_of(batch_of(paint.call(body))) == legacy_rows(stored, ("OPEN", "CLICK"))


def b64(text: str) -> str:
    """Text as the *_base64 keys carry it."""
    return base64.b64encode(text.encode()).decode()


def test_base64_keys(paint: Paint) -> None:
    stored = paint.store(40)

    login = paint.call(envelope(None, "bus_facade_context", "login",
                                {"userName_base64": b64("acme"), "password_base64": b64(PASSWORD)}, None))
    context_id = login["resultData"]["bus_entity_context"]["beanId"]
    body = envelope(context_id, "bus_facade_eventNotification", "getBatch", None,
                    {"notificationTypes_base64": b64("OPEN"), "markAsReadInd_base64": b64("N")})

    assert rows_of(batch_of(paint.call(body))) == legacy_rows(stored, ("OPEN",))
    assert rows_of(batch_of(paint.call(body))) == legacy_rows(stored, ("OPEN",))


def test_mark_as_read_defaults_to_y(paint: Paint) -> None:
    stored = paint.store(10)
    context_id = paint.login()

    assert rows_of(batch_of(paint.get_batch(context_id))) == legacy_rows(stored)
    assert rows_of(batch_of(paint.get_batch(context_id))) == []


def test_a_batch_of_exactly_10000(paint: Paint) -> None:
    stored = paint.store(10_001)
    context_id = paint.login()

    full = batch_of(paint.get_batch(context_id, maxNotifications=10_000, markAsReadInd="Y"))
    rest = batch_of(paint.get_batch(context_id, maxNotifications="10000", markAsReadInd="Y"))

    assert full["eventCount"] == 10_000
    assert rows_of(full) == legacy_rows(stored[:10_000])
    assert rows_of(rest) == legacy_rows(stored[10_000:])


def wsdl_address(response: requests.Response) -> str:
    """The soap:address of a served WSDL."""
    root = response_root(response, 200, "{http://schemas.xmlsoap.org/wsdl/}definitions")
    # The raw-XML tester reads the endpoint with exactly this XPath.
    (location,) = root.xpath("//soap:address/@location", namespaces={"soap": root.nsmap["soap"]})
    assert root.nsmap["soap"] == WSDL_SOAP_NS
    return str(location)


def test_wsdls_carry_the_configured_public_url(runtime: Runtime, server: ServerThread) -> None:
    # Nothing configured: the address the gateway is configured to listen on.
    assert runtime.settings.effective_public_url == "http://127.0.0.1:8080"
    served = {path: requests.get(server.url + path, timeout=10)
              for path in ("/paint?wsdl", "/paint?WSDL", "/paint/ctrlPaint.wsdl", "/paint/ctrlPaintLiteral.wsdl")}

    for response in served.values():
        assert wsdl_address(response) == "http://127.0.0.1:8080/paint"
    assert served["/paint?wsdl"].content == served["/paint?WSDL"].content == served["/paint/ctrlPaint.wsdl"].content
    assert b'use="encoded"' in served["/paint/ctrlPaint.wsdl"].content
    assert b"paintArray" in served["/paint/ctrlPaintLiteral.wsdl"].content

    runtime.settings = runtime.settings.replace(public_url="https://events.example.com/legacy/")
    for path in served:
        assert wsdl_address(requests.get(server.url + path, timeout=10)) == (
            "https://events.example.com/legacy/paint"
        )


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_listening_on_every_address_the_wsdls_name_the_host(runtime: Runtime, server: ServerThread,
                                                            wildcard: str) -> None:
    runtime.settings = runtime.settings.replace(host=wildcard, port=8080)
    address = wsdl_address(requests.get(server.url + "/paint?wsdl", timeout=10))
    assert address == f"http://{socket.getfqdn()}:8080/paint"
