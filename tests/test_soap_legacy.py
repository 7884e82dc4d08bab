"""The legacy handleRequest endpoint against a running server: PHP SoapClient, zeep, raw envelopes, errors, hardening."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import requests
import zeep
from lxml import etree
from zeep import xsd

from bench.eventgen import generate
from gateway import events as model
from gateway.accounts import NewAccount, create_account
from gateway.ingest import ingest_request
from gateway.runtime import Runtime
from tests.conftest import PASSWORD, LiveServer, make_runtime

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
PAINT_NS = "urn:localhost-paint"
PAINT_TYPES_NS = "http://www.pure360.com/paint"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSI_TYPE = f"{{{XSI_NS}}}type"
XSI_NIL = f"{{{XSI_NS}}}nil"
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

    def post(self, body: bytes | str, path: str = "/paint", **options: Any) -> requests.Response:
        """POST a body as raw-XML clients do: text/xml and no SOAPAction."""
        data = body.encode() if isinstance(body, str) else body
        response = requests.post(self.url + path, data=data, headers=XML_HEADERS, timeout=60, **options)
        assert "SOAPAction" not in response.request.headers
        assert b"Traceback" not in response.content
        return response

    def call(self, body: bytes | str, path: str = "/paint") -> dict[str, Any]:
        """POST a handleRequest envelope; its Result, decoded as PHP would."""
        return result_of(self.post(body, path))

    def login(self, name: str = "acme", password: str = PASSWORD) -> str:
        result = self.call(login_envelope(name, password))
        assert result["result"] == "success", result
        context_id: str = result["resultData"]["bus_entity_context"]["beanId"]
        return context_id

    def get_batch(self, context_id: str | None, **process_data: Any) -> dict[str, Any]:
        """The Result of a getBatch with these processData entries."""
        return self.call(envelope(context_id, "bus_facade_eventNotification", "getBatch", None, process_data))

    def store(self, count: int, *, seed: int = 1, prefix: str = "evt", account_id: int | None = None,
              start: Any = None) -> list[model.Event]:
        return store(self.runtime, self.account.id if account_id is None else account_id,
                     count, seed=seed, prefix=prefix, start=start)


def store(runtime: Runtime, account_id: int, count: int, *, seed: int = 1, prefix: str = "evt",
          start: Any = None) -> list[model.Event]:
    """Ingest ``count`` generated events; the events as the store holds them, in arrival order."""
    raws = list(generate(count, seed=seed, start=start, prefix=prefix))
    assert ingest_request(runtime.sessions, account_id, raws).accepted == count
    return model.validate_all(raws)


def serve(runtime: Runtime, server: LiveServer, account: NewAccount) -> Paint:
    """Point the WSDLs' soap:address at the running server, as a deployment's public_url would."""
    runtime.settings = runtime.settings.replace(public_url=server.url)
    return Paint(runtime, account, server.url)


@pytest.fixture
def paint(runtime: Runtime, account: NewAccount, live_server: LiveServer) -> Paint:
    """The live server with the acme account, its public URL being its own."""
    return serve(runtime, live_server, account)


@pytest.fixture
def make_paint(store_url: str, tmp_path: Path) -> Iterator[Any]:
    """A factory of servers over the same store with some settings changed (idle timeout, lockout)."""
    opened: list[tuple[Runtime, LiveServer]] = []

    def make(**settings: Any) -> Paint:
        runtime = make_runtime(store_url, tmp_path, **settings)
        with runtime.sessions.begin() as session:
            account = create_account(session, "acme", PASSWORD)
        server = LiveServer(runtime)
        opened.append((runtime, server))
        return serve(runtime, server, account)

    yield make
    for runtime, server in opened:
        server.close()
        runtime.close()


# -- envelopes ------------------------------------------------------------------------

# The encoded envelope head exactly as the platform documents its getBatch request.
ENCODED_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:ns1="urn:localhost-paint" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:ns2="http://xml.apache.org/xml-soap"'
    ' xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"'
    ' SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">\n'
    "<SOAP-ENV:Body>\n"
)
# ... and as it documents the login request (another namespace order).
LOGIN_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"'
    ' xmlns:ns1="urn:localhost-paint" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    ' xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:ns2="http://xml.apache.org/xml-soap"'
    ' xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"'
    ' SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">\n'
    "<SOAP-ENV:Body>\n"
)
TAIL = "\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"

# The published login request (D-sess), with the credentials filled in.
DOCUMENTED_LOGIN = LOGIN_HEAD + """<ns1:handleRequest>
  <contextId xsi:nil="true"/>
  <className xsi:type="xsd:string">bus_facade_context</className>
  <processName xsi:type="xsd:string">login</processName>
  <entityData xsi:type="ns2:Map">
    <item><key xsi:type="xsd:string">userName</key><value xsi:type="xsd:string">{user}</value></item>
    <item><key xsi:type="xsd:string">password</key><value xsi:type="xsd:string">{password}</value></item>
  </entityData>
  <processData xsi:nil="true"/>
</ns1:handleRequest>""" + TAIL

# The published getBatch request (D-pull), with the session filled in.
DOCUMENTED_GET_BATCH = ENCODED_HEAD + """<ns1:handleRequest>
  <contextId xsi:type="xsd:string">{context}</contextId>
  <className xsi:type="xsd:string">bus_facade_eventNotification</className>
  <processName xsi:type="xsd:string">getBatch</processName>
  <entityData xsi:nil="true"/>
  <processData xsi:type="ns2:Map">
    <item><key xsi:type="xsd:string">notificationTypes</key><value xsi:type="xsd:string">OPEN,CLICK,DELIVERY</value></item>
    <item><key xsi:type="xsd:string">maxNotifications</key><value xsi:type="xsd:int">1000</value></item>
    <item><key xsi:type="xsd:string">markAsReadInd</key><value xsi:type="xsd:string">N</value></item>
  </processData>
</ns1:handleRequest>""" + TAIL

# The documentation's comments, and the raw-XML tester's whitespace-only entityData, nil
# maxNotifications and undocumented extra keys (Get Batch.xml).
COMMENTED_GET_BATCH = ENCODED_HEAD + """<ns1:handleRequest>
  <!-- The current session identifier -->
  <contextId xsi:type="xsd:string">{context}</contextId>
  <!-- The facade and its process -->
  <className xsi:type="xsd:string">bus_facade_eventNotification</className>
  <processName xsi:type="xsd:string">getBatch</processName>
  <entityData xsi:type="ns2:Map"> </entityData>
  <!-- Parameters for the process, not stored on the entity -->
  <processData xsi:type="ns2:Map">
    <item>
      <!-- Which types to collect -->
      <key xsi:type="xsd:string">notificationTypes</key>
      <value xsi:type="xsd:string">OPEN,<!-- and -->CLICK</value>
    </item>
    <item><key xsi:type="xsd:string">maxNotifications</key><value xsi:nil="true"/></item>
    <item><key xsi:type="xsd:string">markAsReadInd</key><value xsi:type="xsd:string">{mark}</value></item>
    <item><key xsi:type="xsd:string">markAsProcessingInd</key><value xsi:type="xsd:string">N</value></item>
    <item><key xsi:type="xsd:string">encoding</key><value xsi:type="xsd:string">plain</value></item>
    <item><key xsi:type="xsd:string">clientType</key><value xsi:type="xsd:string">CLIENT_PULL</value></item>
  </processData>
</ns1:handleRequest>""" + TAIL

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
             entity_data: Mapping[str, Any] | None, process_data: Mapping[str, Any] | None) -> str:
    """A complete encoded handleRequest envelope."""
    parts = (
        encoded_value("contextId", context_id), encoded_value("className", class_name),
        encoded_value("processName", process_name), encoded_value("entityData", entity_data),
        encoded_value("processData", process_data),
    )
    return ENCODED_HEAD + "<ns1:handleRequest>" + "".join(parts) + "</ns1:handleRequest>" + TAIL


def literal_pairs(name: str, mapping: Mapping[str, Any] | None) -> str:
    """A paintArray accessor as the literal clients write it (None: nil)."""
    if mapping is None:
        return f'<{name} xsi:nil="true"/>'
    pairs = "".join(
        f"<ns2:pairs><ns2:key>{escape(key)}</ns2:key><ns2:value>"
        + (literal_pairs("ns2:arr", value) if isinstance(value, Mapping) else f"<ns2:str>{escape(str(value))}</ns2:str>")
        + "</ns2:value></ns2:pairs>"
        for key, value in mapping.items()
    )
    return f"<{name}>{pairs}</{name}>"


def literal_envelope(context_id: str | None, class_name: str, process_name: str,
                     entity_data: Mapping[str, Any] | None, process_data: Mapping[str, Any] | None) -> str:
    """A complete rpc/literal handleRequest envelope, as suds or PHP write it for ctrlPaintLiteral.wsdl."""
    context = "" if context_id is None else f"<contextId>{context_id}</contextId>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV_NS}" xmlns:ns1="{PAINT_NS}" xmlns:ns2="{PAINT_TYPES_NS}"'
        f' xmlns:xsi="{XSI_NS}"><SOAP-ENV:Body><ns1:handleRequest>{context}'
        f"<className>{class_name}</className><processName>{process_name}</processName>"
        + literal_pairs("entityData", entity_data) + literal_pairs("processData", process_data)
        + "</ns1:handleRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def login_envelope(name: str, password: str) -> str:
    return DOCUMENTED_LOGIN.format(user=escape(name), password=escape(password))


# -- reading answers ----------------------------------------------------------------------


def response_root(response: requests.Response, status: int) -> etree._Element:
    assert response.status_code == status, response.text[:2000]
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    root = etree.fromstring(response.content)
    assert root.tag == f"{{{SOAP_ENV_NS}}}Envelope"
    return root


def result_element(response: requests.Response) -> etree._Element:
    """The Result element of a 200 handleRequestResponse."""
    body = response_root(response, 200).find(f"{{{SOAP_ENV_NS}}}Body")
    (wrapper,) = body
    assert wrapper.tag == f"{{{PAINT_NS}}}handleRequestResponse"
    (result,) = wrapper
    assert result.tag == "Result"
    return result


def php_value(value: etree._Element) -> Any:
    """An encoded value decoded the way PHP's SoapClient decodes it, from xsi:type alone."""
    if value.get(XSI_NIL) == "true":
        return None
    kind = value.get(XSI_TYPE)
    if kind == "ns2:Map":
        return {item.findtext("key"): php_value(item.find("value")) for item in value.findall("item")}
    if kind == "SOAP-ENC:Array":
        return [php_value(item) for item in value.findall("item")]
    if kind in ("xsd:int", "xsd:long"):
        return int(value.text or "")
    assert kind == "xsd:string", kind
    return value.text or ""


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


def batch_of(result: Mapping[str, Any]) -> dict[str, Any]:
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
    return [model.to_legacy_row(event) for event in events if types is None or event["type"] in types]


def headers_for(rows: Sequence[Sequence[str]]) -> dict[str, str]:
    """The eventMeta a batch with these rows must carry: exactly the types present."""
    return {row[0]: model.legacy_header(row[0]) for row in rows}


# -- 1. PHP SoapClient, as the platform's own PHP sample uses it --------------------------

PHP = shutil.which("php")


def php_problem() -> str | None:
    if PHP is None:
        return "php is not installed (CI installs php-cli and php-soap)"
    modules = subprocess.run([PHP, "-m"], capture_output=True, text=True, check=False).stdout.split()
    if "soap" not in modules:
        return "PHP's soap extension is not installed (CI installs php-soap)"
    return None


PHP_PROBLEM = php_problem()
needs_php = pytest.mark.skipif(PHP_PROBLEM is not None, reason=PHP_PROBLEM or "")


def run_php_pull(wsdl_url: str, user: str, password: str, marks: str) -> dict[str, Any]:
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
    assert paint.get_batch(output["contextId"]) == {"result": "bean_exception_system",
                                                   "resultData": CONTEXT_NOT_FOUND}
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
    assert gone == {"result": "bean_exception_system", "resultData": CONTEXT_NOT_FOUND}
