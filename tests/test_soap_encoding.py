"""The handleRequest codec: request decoding in both flavours, hardening, responses, faults, and the WSDLs."""

from __future__ import annotations

import base64
import codecs
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from lxml import etree
from zeep import xsd

from gateway.soap.encoding import (
    APACHE_SOAP_NS,
    PAINT_NS,
    PAINT_TYPES_NS,
    SOAP_ENV_NS,
    XSI_NS,
    BodyTooLarge,
    EnvelopeError,
    Flavour,
    ForbiddenXML,
    PaintDecodeError,
    PaintRequest,
    encode_fault,
    encode_result,
    parse_envelope,
)
from tests.support.envelopes import (
    COMMENTED_GET_BATCH,
    DOCUMENTED_GET_BATCH,
    DOCUMENTED_LOGIN,
    encoded,
    handle_request,
    literal,
    php_value,
    response_result,
)

WSDL_DIR = Path(__file__).resolve().parent.parent / "wsdl"
XSI_TYPE = f"{{{XSI_NS}}}type"


def entry(key: str, value: str, xsd_type: str = "xsd:string") -> str:
    """One Apache map item."""
    return f'<item><key xsi:type="xsd:string">{key}</key><value xsi:type="{xsd_type}">{value}</value></item>'


CONTEXT = "P-JMDAF9HdkwjRCevNVPathRy"
LOGIN = DOCUMENTED_LOGIN.format(user="API USERNAME HERE", password="API PASSWORD HERE").encode()


def test_login_as_documented() -> None:
    request = parse_envelope(LOGIN)

    assert request == PaintRequest(
        context_id=None,
        class_name="bus_facade_context",
        process_name="login",
        entity_data={"userName": "API USERNAME HERE", "password": "API PASSWORD HERE"},
        process_data={},
        flavour="encoded",
    )


def test_get_batch_as_documented() -> None:
    request = parse_envelope(DOCUMENTED_GET_BATCH.format(context=CONTEXT).encode())

    assert request.context_id == CONTEXT
    assert (request.class_name, request.process_name) == ("bus_facade_eventNotification", "getBatch")
    assert request.entity_data == {}
    assert request.process_data == {
        "notificationTypes": "OPEN,CLICK,DELIVERY",
        "maxNotifications": "1000",
        "markAsReadInd": "N",
    }
    assert list(request.process_data) == ["notificationTypes", "maxNotifications", "markAsReadInd"]


def test_get_batch_with_comments_and_whitespace_map() -> None:
    request = parse_envelope(COMMENTED_GET_BATCH.format(context=CONTEXT, mark="N").encode())

    assert request.context_id == CONTEXT
    assert request.entity_data == {}
    assert request.process_data == {
        "notificationTypes": "OPEN,CLICK",
        "maxNotifications": None,
        "markAsReadInd": "N",
        "markAsProcessingInd": "N",
        "encoding": "plain",
        "clientType": "CLIENT_PULL",
    }


@pytest.mark.parametrize(
    "context_id",
    [
        '<contextId xsi:nil="true"/>',
        '<contextId xsi:nil="true">01234567890</contextId>',
        '<contextId xsi:type="xsd:string"></contextId>',
        '<contextId xsi:type="xsd:string">  \n </contextId>',
        "<contextId/>",
        "",
    ],
    ids=["nil", "nil-with-text", "empty", "whitespace", "bare", "omitted"],
)
def test_null_forms_of_a_string_part(context_id: str) -> None:
    request = parse_envelope(
        handle_request(context_id, '<className xsi:type="xsd:string">bus_facade_context</className>')
    )

    assert request.context_id is None
    assert request.class_name == "bus_facade_context"


@pytest.mark.parametrize(
    "entity_data",
    [
        '<entityData xsi:nil="true"/>',
        '<entityData xsi:nil="true">text</entityData>',
        '<entityData xsi:type="ns2:Map"/>',
        '<entityData xsi:type="ns2:Map"> </entityData>',
        '<entityData xsi:type="SOAP-ENC:Array" SOAP-ENC:arrayType="xsd:ur-type[0]"/>',
        "<entityData></entityData>",
        "",
    ],
    ids=["nil", "nil-with-text", "empty-map", "whitespace-map", "empty-php-array", "bare", "omitted"],
)
def test_null_forms_of_a_map_part(entity_data: str) -> None:
    request = parse_envelope(handle_request('<contextId xsi:type="xsd:string">C-1</contextId>', entity_data))

    assert request.entity_data == {}
    assert request.process_data == {}
    assert request.context_id == "C-1"


def test_nil_and_empty_map_values() -> None:
    request = parse_envelope(
        handle_request(
            '<processData xsi:type="ns2:Map">'
            '<item><key xsi:type="xsd:string">maxNotifications</key><value xsi:nil="true"/></item>'
            + entry("customFieldNames", "")
            + '<item><key xsi:type="xsd:string">nested</key><value xsi:type="ns2:Map"/></item>'
            "<item><key>noValue</key></item>"
            "</processData>"
        )
    )

    assert request.process_data == {"maxNotifications": None, "customFieldNames": "", "nested": {}, "noValue": None}


def test_notification_types_as_soap_enc_array() -> None:
    request = parse_envelope(
        handle_request(
            '<processData xsi:type="ns2:Map"><item><key xsi:type="xsd:string">notificationTypes</key>'
            '<value SOAP-ENC:arrayType="xsd:string[2]" xsi:type="SOAP-ENC:Array">'
            '<item xsi:type="xsd:string">OPEN</item><item xsi:type="xsd:string">CLICK</item>'
            "</value></item></processData>"
        )
    )

    assert request.process_data == {"notificationTypes": ["OPEN", "CLICK"]}


def test_array_items_with_type_names_and_nested_maps() -> None:
    # .NET names array items after their type; a list of maps has item children without keys.
    request = parse_envelope(
        handle_request(
            '<processData xsi:type="ns2:Map">'
            '<item><key>names</key><value xsi:type="SOAP-ENC:Array"><string>a</string><string>b</string></value></item>'
            '<item><key>rows</key><value xsi:type="SOAP-ENC:Array">'
            '<item xsi:type="ns2:Map">' + entry("id", "1") + "</item>"
            '<item xsi:type="ns2:Map">' + entry("id", "2") + "</item>"
            "</value></item>"
            "</processData>"
        )
    )

    assert request.process_data == {"names": ["a", "b"], "rows": [{"id": "1"}, {"id": "2"}]}


def test_nested_maps_struct_and_stripped_keys() -> None:
    request = parse_envelope(
        handle_request(
            '<entityData xsi:type="ns2:Map">'
            '<item><key xsi:type="xsd:string"> markAsReadInd</key><value xsi:type="xsd:string">Y</value></item>'
            '<item><key xsi:type="xsd:int">0</key><value xsi:type="ns2:Map">' + entry("inner", "x") + "</value></item>"
            '<item><key>object</key><value xsi:type="SOAP-ENC:Struct"><a>1</a><b xsi:nil="true"/></value></item>'
            "</entityData>"
        )
    )

    assert request.entity_data == {"markAsReadInd": "Y", "0": {"inner": "x"}, "object": {"a": "1", "b": None}}


def test_href_multi_refs_as_axis_writes_them() -> None:
    request = parse_envelope(
        encoded(
            '<ns1:handleRequest><contextId href="#id0"/>'
            '<className xsi:type="xsd:string">bus_facade_eventNotification</className>'
            '<processName xsi:type="xsd:string">getBatch</processName>'
            '<entityData xsi:nil="true"/><processData href="#id1"/></ns1:handleRequest>'
            '<multiRef id="id0" SOAP-ENC:root="0" xsi:type="xsd:string">C-KFDsCMMHXpDUi0ltN0p3FvF</multiRef>'
            '<multiRef id="id1" SOAP-ENC:root="0" xsi:type="ns2:Map">'
            '<item><key href="#id2"/><value href="#id3"/></item>'
            '<item><key xsi:type="xsd:string">nested</key><value href="#id4"/></item>'
            "</multiRef>"
            '<multiRef id="id2" SOAP-ENC:root="0" xsi:type="xsd:string">notificationTypes</multiRef>'
            '<multiRef id="id3" SOAP-ENC:root="0" xsi:type="SOAP-ENC:Array"><item href="#id5"/><item>CLICK</item></multiRef>'
            '<multiRef id="id4" SOAP-ENC:root="0" xsi:type="ns2:Map">' + entry("k", "v") + "</multiRef>"
            '<multiRef id="id5" SOAP-ENC:root="0" xsi:type="xsd:string">OPEN</multiRef>'
        )
    )

    assert request.context_id == "C-KFDsCMMHXpDUi0ltN0p3FvF"
    assert request.process_data == {"notificationTypes": ["OPEN", "CLICK"], "nested": {"k": "v"}}


def test_href_to_nothing_and_href_cycles_are_refused() -> None:
    with pytest.raises(PaintDecodeError, match="names no element"):
        parse_envelope(handle_request('<processData href="#missing"/>'))
    with pytest.raises(PaintDecodeError, match="reference cycle"):
        parse_envelope(
            encoded(
                '<ns1:handleRequest><processData href="#a"/></ns1:handleRequest>'
                '<multiRef id="a" xsi:type="ns2:Map"><item><key>k</key><value href="#a"/></item></multiRef>'
            )
        )


def test_multi_ref_amplification_is_refused() -> None:
    # Each level names the previous one ten times: 10**8 values from a few dozen elements.
    levels = ['<multiRef id="r0" xsi:type="xsd:string">lol</multiRef>']
    for level in range(1, 9):
        items = "".join(f'<item href="#r{level - 1}"/>' for _ in range(10))
        levels.append(f'<multiRef id="r{level}" xsi:type="SOAP-ENC:Array">{items}</multiRef>')
    body = encoded(
        '<ns1:handleRequest><processData xsi:type="ns2:Map"><item><key>k</key><value href="#r8"/></item>'
        "</processData></ns1:handleRequest>" + "".join(levels)
    )

    with pytest.raises(PaintDecodeError, match="expand"):
        parse_envelope(body)


def test_base64_keys_are_decoded_at_every_level() -> None:
    name = base64.b64encode("Liste für Kunden".encode()).decode()
    request = parse_envelope(
        handle_request(
            '<entityData xsi:type="ns2:Map">'
            + entry("listName_base64", name)
            + '<item><key>inner</key><value xsi:type="ns2:Map">'
            + entry("note_base64", base64.encodebytes(b"hello " * 20).decode())
            + "</value></item>"
            '<item><key>empty_base64</key><value xsi:nil="true"/></item>'
            "</entityData>"
        )
    )

    assert request.entity_data == {"listName": "Liste für Kunden", "inner": {"note": "hello " * 20}, "empty": None}


def test_bad_base64_names_the_key() -> None:
    with pytest.raises(PaintDecodeError, match=r"entityData\.listName_base64") as caught:
        parse_envelope(
            handle_request('<entityData xsi:type="ns2:Map">' + entry("listName_base64", "no!") + "</entityData>")
        )

    assert caught.value.path == "entityData.listName_base64"
    assert isinstance(caught.value, EnvelopeError)


def test_unqualified_wrapper_and_parts_by_position() -> None:
    # Parts with names the codec does not know are taken by position.
    request = parse_envelope(
        encoded(
            "<handleRequest><arg0>C-1</arg0><arg1>bus_facade_context</arg1><arg2>logout</arg2>"
            '<arg3 xsi:nil="true"/><arg4 xsi:type="ns2:Map"/></handleRequest>'
        )
    )

    assert (request.context_id, request.class_name, request.process_name) == ("C-1", "bus_facade_context", "logout")
    assert request.entity_data == {} and request.process_data == {}


def test_any_prefix_and_qualified_parts() -> None:
    body = (
        '<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:p="urn:localhost-paint">'
        "<e:Header/><e:Body><p:handleRequest><p:className>bus_facade_context</p:className>"
        "<p:processName>logout</p:processName><p:contextId>C-1</p:contextId></p:handleRequest></e:Body></e:Envelope>"
    )

    request = parse_envelope(body.encode())

    assert (request.context_id, request.class_name, request.process_name) == ("C-1", "bus_facade_context", "logout")


@pytest.mark.parametrize("namespace", [PAINT_NS, PAINT_TYPES_NS])
def test_the_wrapper_in_the_soap_body_namespace_or_the_literal_wsdls_target_namespace(namespace: str) -> None:
    # node-soap writes the wrapper in the literal WSDL's targetNamespace, the types' namespace.
    body = (
        f'<e:Envelope xmlns:e="{SOAP_ENV_NS}" xmlns:tns="{namespace}"><e:Body><tns:handleRequest>'
        "<className>bus_facade_context</className><processName>login</processName><entityData>"
        "<tns:pairs><key>userName</key><value><str>acme</str></value></tns:pairs></entityData>"
        "</tns:handleRequest></e:Body></e:Envelope>"
    )

    request = parse_envelope(body.encode())

    assert (request.class_name, request.entity_data, request.flavour) == ("bus_facade_context",
                                                                          {"userName": "acme"}, "literal")


# suds on the literal WSDL: SOAP-ENV:encodingStyle on the Envelope, and a logout's maps left out.
SUDS_LOGOUT = (
    f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV_NS}" xmlns:ns0="{PAINT_NS}"'
    ' SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><SOAP-ENV:Header/><SOAP-ENV:Body>'
    "<ns0:handleRequest><contextId>C-1</contextId><className>bus_facade_context</className>"
    "<processName>logout</processName></ns0:handleRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
).encode()


@pytest.mark.parametrize("hint, flavour", [("literal", "literal"), ("encoded", "encoded"), (None, "encoded")])
def test_the_literal_soap_action_goes_before_the_encoding_style(hint: Flavour | None, flavour: Flavour) -> None:
    assert parse_envelope(SUDS_LOGOUT, flavour_hint=hint).flavour == flavour


def test_map_data_go_before_the_soap_action() -> None:
    items = handle_request('<processData xsi:type="ns2:Map"><item><key>a</key><value>b</value></item></processData>')
    pairs = literal("<processData><ns2:pairs><key>a</key><value><str>b</str></value></ns2:pairs></processData>")

    assert parse_envelope(items, flavour_hint="literal").flavour == "encoded"
    assert parse_envelope(pairs, flavour_hint="encoded").flavour == "literal"


def test_a_part_given_twice_is_refused() -> None:
    with pytest.raises(PaintDecodeError, match="className"):
        parse_envelope(handle_request("<className>a</className>", "<className>b</className>"))


def test_a_map_where_a_string_belongs_is_refused() -> None:
    with pytest.raises(PaintDecodeError, match="className"):
        parse_envelope(handle_request('<className xsi:type="ns2:Map">' + entry("a", "b") + "</className>"))
    with pytest.raises(PaintDecodeError, match="entityData"):
        parse_envelope(handle_request('<entityData xsi:type="xsd:string">userName</entityData>'))


LITERAL_LOGIN = (
    "<contextId/><className>bus_facade_context</className><processName>login</processName>"
    "<entityData><ns2:pairs><ns2:key>userName</ns2:key><ns2:value><ns2:str>u</ns2:str></ns2:value></ns2:pairs>"
    "<ns2:pairs><ns2:key>password</ns2:key><ns2:value><ns2:str>p</ns2:str></ns2:value></ns2:pairs></entityData>"
    "<processData/>"
)


def test_literal_login_as_php_writes_it() -> None:
    request = parse_envelope(literal(LITERAL_LOGIN))

    assert request == PaintRequest(
        context_id=None,
        class_name="bus_facade_context",
        process_name="login",
        entity_data={"userName": "u", "password": "p"},
        process_data={},
        flavour="literal",
    )


def test_literal_nested_arrays_unqualified_and_base64() -> None:
    request = parse_envelope(
        literal(
            "<contextId>C-1</contextId><className>bus_facade_eventNotification</className>"
            "<processName>getBatch</processName>"
            "<processData>"
            "<pairs><key>notificationTypes</key><value><arr>"
            "<pairs><key>0</key><value><str>OPEN</str></value></pairs>"
            "<pairs><key>1</key><value><str>CLICK</str></value></pairs>"
            "</arr></value></pairs>"
            "<pairs><key>maxNotifications</key><value><str>100</str></value></pairs>"
            f"<pairs><key>note_base64</key><value><str>{base64.b64encode(b'hi').decode()}</str></value></pairs>"
            "<pairs><key>empty</key><value><str/></value></pairs>"
            "<pairs><key>nothing</key><value/></pairs>"
            "</processData>"
        )
    )

    assert request.flavour == "literal"
    assert request.context_id == "C-1"
    assert request.process_data == {
        "notificationTypes": {"0": "OPEN", "1": "CLICK"},
        "maxNotifications": "100",
        "note": "hi",
        "empty": "",
        "nothing": None,
    }


def test_literal_logout_without_data_stays_literal() -> None:
    request = parse_envelope(
        literal("<contextId>C-1</contextId><className>bus_facade_context</className><processName>logout</processName>")
    )

    assert request.flavour == "literal"
    assert request.entity_data == {} and request.process_data == {}


def test_encoded_logout_without_data_stays_encoded() -> None:
    request = parse_envelope(
        handle_request(
            '<contextId xsi:type="xsd:string">C-1</contextId>',
            '<entityData xsi:type="ns2:Map"/><processData xsi:type="ns2:Map"/>',
        )
    )

    assert request.flavour == "encoded"


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
    + f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV_NS}"><SOAP-ENV:Body><handleRequest>'
    "<className>&lol9;</className></handleRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV_NS}"><SOAP-ENV:Body><handleRequest>'
    "<className>&xxe;</className></handleRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
)


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS.encode(),
        EXTERNAL_ENTITY.encode(),
        b'<!DOCTYPE e SYSTEM "http://127.0.0.1:9/e.dtd">' + LOGIN.split(b"\n", 1)[1],
        b"<?xml version='1.0'?>\n<!-- <looks like an element> -->\n<!DOCTYPE e>" + LOGIN.split(b"\n", 1)[1],
        codecs.BOM_UTF16_LE + EXTERNAL_ENTITY.replace('<?xml version="1.0"?>', "").encode("utf-16-le"),
    ],
    ids=["billion-laughs", "external-entity", "external-dtd", "after-comment", "utf-16"],
)
def test_doctype_is_refused(body: bytes) -> None:
    with pytest.raises(ForbiddenXML):
        parse_envelope(body)


def test_oversized_body_is_refused_before_parsing() -> None:
    body = handle_request("<className>" + "x" * 2000 + "</className>")

    with pytest.raises(BodyTooLarge) as caught:
        parse_envelope(body, max_bytes=1024)
    assert (caught.value.size, caught.value.limit) == (len(body), 1024)
    with pytest.raises(BodyTooLarge):
        parse_envelope(b" " * (5 * 1024 * 1024 + 1))
    assert parse_envelope(body, max_bytes=len(body)).class_name == "x" * 2000


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"userName=u&password=p",
        b"<unclosed>",
        b"<Envelope><Body><handleRequest/></Body></Envelope>",
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><handleRequest/></e:Body></e:Envelope>',
        f'<e:Envelope xmlns:e="{SOAP_ENV_NS}"><e:Header/></e:Envelope>'.encode(),
        f'<e:Envelope xmlns:e="{SOAP_ENV_NS}"><e:Body/></e:Envelope>'.encode(),
        encoded("<ns1:getBatch><contextId>C-1</contextId></ns1:getBatch>"),
        encoded('<x:handleRequest xmlns:x="urn:other"><contextId>C-1</contextId></x:handleRequest>'),
    ],
    ids=[
        "empty",
        "form",
        "broken",
        "no-namespace",
        "soap12",
        "no-body",
        "empty-body",
        "other-operation",
        "other-namespace",
    ],
)
def test_not_a_handle_request(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(body)


# -- responses -------------------------------------------------------------------------


LOGIN_RESULT: dict[str, Any] = {
    "result": "success",
    "resultData": {
        "bus_entity_context": {"beanId": "C-KFDsCMMHXpDUi0ltN0p3FvF", "roleList": {"1": "Admin"}},
        "bus_entity_account_identity": {"defaultLanguage": "en"},
    },
}
BATCH_RESULT: dict[str, Any] = {
    "result": "success",
    "resultData": {
        "bus_entity_eventNotificationBatch": {
            "eventCount": 2,
            "eventMeta": {"OPEN": "type, email, messageName, deliveryDate"},
            "eventData": base64.b64encode(b"OPEN,a@example.com,Aug-2014-Deals,1437581400\n").decode(),
            "types": ["OPEN", "CLICK"],
            "nothing": None,
            "empty": {},
            "big": 2**40,
            "flag": True,
        }
    },
}


def test_encoded_response_shape() -> None:
    body = encode_result(BATCH_RESULT)

    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = etree.fromstring(body)
    assert root.nsmap == {
        "SOAP-ENV": SOAP_ENV_NS,
        "ns1": PAINT_NS,
        "xsd": "http://www.w3.org/2001/XMLSchema",
        "xsi": XSI_NS,
        "ns2": APACHE_SOAP_NS,
        "SOAP-ENC": "http://schemas.xmlsoap.org/soap/encoding/",
    }
    assert root.get(f"{{{SOAP_ENV_NS}}}encodingStyle") == "http://schemas.xmlsoap.org/soap/encoding/"
    result = response_result(body)
    assert result.get(XSI_TYPE) == "ns2:Map"
    assert [item.findtext("key") for item in result] == ["result", "resultData"]
    assert b"SOAP-ENC:Struct" not in body
    batch = result.find("item[2]/value/item/value")
    types = {item.findtext("key"): item.find("value").get(XSI_TYPE) for item in batch}
    assert types == {
        "eventCount": "xsd:int",
        "eventMeta": "ns2:Map",
        "eventData": "xsd:string",
        "types": "SOAP-ENC:Array",
        "nothing": None,
        "empty": "SOAP-ENC:Array",
        "big": "xsd:long",
        "flag": "xsd:boolean",
    }
    assert batch.find("item[4]/value").get("{http://schemas.xmlsoap.org/soap/encoding/}arrayType") == "xsd:anyType[2]"


def test_encoded_response_decodes_as_php_would() -> None:
    decoded = php_value(response_result(encode_result(BATCH_RESULT)))

    batch = dict(BATCH_RESULT["resultData"]["bus_entity_eventNotificationBatch"], empty=[])
    assert decoded == {"result": "success", "resultData": {"bus_entity_eventNotificationBatch": batch}}
    assert type(decoded["resultData"]["bus_entity_eventNotificationBatch"]["eventCount"]) is int


def test_encoded_error_result_keeps_order_and_shapes() -> None:
    result = {"result": "bean_exception_validation", "resultData": {"maxNotifications": "must be between 1 and 10000"}}

    assert php_value(response_result(encode_result(result))) == result
    system = {
        "result": "bean_exception_system",
        "resultData": "Bean requested not found - Bean type: [bus_entity_context]",
    }
    assert php_value(response_result(encode_result(system))) == system


def test_literal_response_matches_the_ruby_client_regex() -> None:
    body = encode_result(LOGIN_RESULT, "literal")

    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    match = re.search(rb"<ns2:key>beanId</ns2:key><ns2:value><ns2:str>([A-Za-z0-9-]*)", body)
    assert match is not None and match.group(1) == b"C-KFDsCMMHXpDUi0ltN0p3FvF"
    assert etree.fromstring(body).nsmap["ns2"] == PAINT_TYPES_NS


def test_literal_response_shape() -> None:
    result = response_result(
        encode_result({"result": "success", "resultData": {"list": ["a", 7], "none": None}}, "literal")
    )

    paint = f"{{{PAINT_TYPES_NS}}}"
    assert [pair.findtext(f"{paint}key") for pair in result] == ["result", "resultData"]
    assert result.findtext(f"{paint}pairs/{paint}value/{paint}str") == "success"
    data = result.find(f"{paint}pairs[2]/{paint}value/{paint}arr")
    listed = data.find(f"{paint}pairs[1]/{paint}value/{paint}arr")
    assert [(p.findtext(f"{paint}key"), p.findtext(f"{paint}value/{paint}str")) for p in listed] == [
        ("0", "a"),
        ("1", "7"),
    ]
    assert data.find(f"{paint}pairs[2]/{paint}value/{paint}str").get(f"{{{XSI_NS}}}nil") == "true"


def as_request(response: bytes) -> bytes:
    """Turn a handleRequestResponse into a handleRequest whose entityData is the Result."""
    root = etree.fromstring(response)
    wrapper = root.find(f"{{{SOAP_ENV_NS}}}Body/{{{PAINT_NS}}}handleRequestResponse")
    wrapper.tag = f"{{{PAINT_NS}}}handleRequest"
    wrapper.find("Result").tag = "entityData"
    return etree.tostring(root)


@pytest.mark.parametrize("flavour", ["encoded", "literal"])
def test_round_trip_of_nested_maps(flavour: Flavour) -> None:
    data = {
        "result": "success",
        "resultData": {"a": {"b": {"c": "deep", "n": 3}}, "text": "  spaced <&> \u00e9 ", "none": None},
    }

    request = parse_envelope(as_request(encode_result(data, flavour)))

    assert request.flavour == flavour
    assert request.entity_data == {
        "result": "success",
        "resultData": {"a": {"b": {"c": "deep", "n": "3"}}, "text": "  spaced <&> \u00e9 ", "none": None},
    }


def test_large_event_data_is_written_whole() -> None:
    event_data = base64.b64encode(b"OPEN,a@example.com\n" * 80_000).decode()

    body = encode_result({"result": "success", "resultData": {"eventData": event_data}})

    assert response_result(body).findtext("item[2]/value/item/value") == event_data


def test_characters_xml_cannot_carry_are_replaced() -> None:
    body = encode_result({"result": "success", "resultData": {"note": "a\x00b\x0bc\ud800"}})

    assert response_result(body).findtext("item[2]/value/item/value") == "a\ufffdb\ufffdc\ufffd"


def test_bytes_values_are_a_caller_error() -> None:
    with pytest.raises(TypeError):
        encode_result({"result": "success", "resultData": {"eventData": b"raw"}})


@pytest.mark.parametrize("code", ["Client", "Server", "SOAP-ENV:Client"])
def test_fault(code: str) -> None:
    body = encode_fault(code, "not a handleRequest: <oops> & \x01")

    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    fault = etree.fromstring(body).find(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault")
    assert fault.findtext("faultcode") == "SOAP-ENV:" + code.removeprefix("SOAP-ENV:")
    assert fault.findtext("faultstring") == "not a handleRequest: <oops> & \ufffd"


def test_fault_code_must_be_client_or_server() -> None:
    with pytest.raises(ValueError):
        encode_fault("Receiver", "x")


# -- the WSDLs, through real clients ---------------------------------------------------


def local_wsdl(tmp_path: Path, name: str) -> str:
    """A copy of wsdl/<name> with the placeholder address filled in, as a file:// URL."""
    text = (WSDL_DIR / name).read_text(encoding="utf-8")
    assert "http://HOST/paint" in text
    path = tmp_path / name
    path.write_text(text.replace("http://HOST/paint", "http://127.0.0.1:9/paint"), encoding="utf-8")
    return path.as_uri()


def test_encoded_wsdl_has_what_raw_xml_clients_read() -> None:
    root = etree.parse(str(WSDL_DIR / "ctrlPaint.wsdl")).getroot()

    assert root.nsmap["soap"] == "http://schemas.xmlsoap.org/wsdl/soap/"
    # The raw-XML tester finds the endpoint with exactly this XPath.
    assert root.xpath("//soap:address/@location", namespaces={"soap": root.nsmap["soap"]}) == ["http://HOST/paint"]
    assert root.xpath("//comment()")


class CannedTransport(zeep.Transport):
    """Records each envelope zeep posts and answers with a fixed reply; no network."""

    def __init__(self, reply: bytes) -> None:
        super().__init__()
        self.reply = reply
        self.sent: list[bytes] = []

    def post_xml(self, address: str, envelope: etree._Element, headers: dict[str, str]) -> requests.Response:
        self.sent.append(etree.tostring(envelope))
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "text/xml; charset=utf-8"
        response._content = self.reply
        return response


# What zeep does with the encoded WSDL: it ignores use="encoded" and writes no xsi:type and
# no encodingStyle, so the codec tells the flavour from the map items. A map is passed in
# its schema shape, {"item": [{"key": ..., "value": ...}]}; a str value goes out as untyped
# text, an int or a nested map needs xsd.AnyObject(type, value) to carry an xsi:type. A null
# part must be xsd.Nil (None fails with "Missing element") or xsd.SkipValue to leave it out.
# Reading the reply it returns maps as {"item": [...]} with typed scalars (xsd:int -> int);
# a SOAP-ENC:Array value (a list, or an empty dict) makes it fetch the SOAP encoding schema
# from schemas.xmlsoap.org, so the reply here has none.
def test_zeep_encoded_call(tmp_path: Path) -> None:
    reply = {"result": "success", "resultData": {"bus_entity_context": {"beanId": "C-1", "eventCount": 3}}}
    transport = CannedTransport(encode_result(reply))
    with zeep.Client(local_wsdl(tmp_path, "ctrlPaint.wsdl"), transport=transport) as client:
        map_type = client.get_type(f"{{{APACHE_SOAP_NS}}}Map")
        result = client.service.handleRequest(
            contextId="C-1",
            className="bus_facade_eventNotification",
            processName="getBatch",
            entityData=xsd.Nil,
            processData={
                "item": [
                    {"key": "notificationTypes", "value": "OPEN,CLICK"},
                    {"key": "maxNotifications", "value": xsd.AnyObject(xsd.Int(), 1000)},
                    {"key": "nested", "value": xsd.AnyObject(map_type, {"item": [{"key": "a", "value": "b"}]})},
                ]
            },
        )

    (sent,) = transport.sent
    assert parse_envelope(sent) == PaintRequest(
        context_id="C-1",
        class_name="bus_facade_eventNotification",
        process_name="getBatch",
        entity_data={},
        process_data={"notificationTypes": "OPEN,CLICK", "maxNotifications": "1000", "nested": {"a": "b"}},
        flavour="encoded",
    )
    assert [(item.key, item.value) for item in result[:1]] == [("result", "success")]
    context = result[1].value.item[0].value.item
    assert [(item.key, item.value) for item in context] == [("beanId", "C-1"), ("eventCount", 3)]


def test_zeep_literal_call(tmp_path: Path) -> None:
    transport = CannedTransport(encode_result(LOGIN_RESULT, "literal"))
    with zeep.Client(local_wsdl(tmp_path, "ctrlPaintLiteral.wsdl"), transport=transport) as client:
        result = client.service.handleRequest(
            contextId=xsd.SkipValue,
            className="bus_facade_context",
            processName="login",
            entityData={
                "pairs": [
                    {"key": "userName", "value": {"str": "u"}},
                    {"key": "roles", "value": {"arr": {"pairs": [{"key": "0", "value": {"str": "admin"}}]}}},
                ]
            },
            processData=xsd.SkipValue,
        )

    (sent,) = transport.sent
    assert parse_envelope(sent) == PaintRequest(
        context_id=None,
        class_name="bus_facade_context",
        process_name="login",
        entity_data={"userName": "u", "roles": {"0": "admin"}},
        process_data={},
        flavour="literal",
    )
    assert [pair.key for pair in result] == ["result", "resultData"]
    assert result[0].value.str == "success"
    context = result[1].value.arr.pairs[0].value.arr
    assert (context.pairs[0].key, context.pairs[0].value.str) == ("beanId", "C-KFDsCMMHXpDUi0ltN0p3FvF")


PHP = shutil.which("php")
needs_php = pytest.mark.skipif(
    PHP is None
    or "soap" not in subprocess.run([PHP, "-m"], capture_output=True, text=True, check=False).stdout.split(),
    reason="PHP with the soap extension is not installed",
)

PHP_REQUESTS = r"""<?php
$client = new SoapClient($argv[1], ['trace' => 1, 'location' => 'http://127.0.0.1:9/paint',
    'exceptions' => true, 'connection_timeout' => 5]);
$calls = [
    [null, 'bus_facade_context', 'login', ['userName' => 'test.sys', 'password' => 'secret'], null],
    ['C-KFDsCMMHXpDUi0ltN0p3FvF', 'bus_facade_eventNotification', 'getBatch', null,
        ['notificationTypes' => ['OPEN', 'CLICK'], 'maxNotifications' => 1000, 'markAsReadInd' => 'N',
         'customFieldNames' => []]],
];
$sent = [];
foreach ($calls as $args) {
    try {
        $client->__soapCall('handleRequest', $args);
    } catch (SoapFault $e) {
        // Nothing listens on port 9: the request is written, then the transport fails.
    }
    $sent[] = base64_encode($client->__getLastRequest());
}
echo json_encode($sent);
"""

PHP_RESPONSE = r"""<?php
class CannedClient extends SoapClient {
    public $reply;
    public function __doRequest($request, $location, $action, $version, $oneWay = 0): ?string {
        return $this->reply;
    }
}
$client = new CannedClient($argv[1], ['exceptions' => true]);
$client->reply = stream_get_contents(STDIN);
echo json_encode($client->handleRequest(null, 'bus_facade_context', 'login', [], null));
"""


def run_php(tmp_path: Path, script: str, wsdl: str, stdin: bytes = b"") -> Any:
    path = tmp_path / "client.php"
    path.write_text(script, encoding="utf-8")
    done = subprocess.run([PHP, str(path), wsdl], input=stdin, capture_output=True, timeout=60, check=True)
    return json.loads(done.stdout)


@needs_php
def test_php_soap_client_requests_decode(tmp_path: Path) -> None:
    login, get_batch = (
        base64.b64decode(sent) for sent in run_php(tmp_path, PHP_REQUESTS, local_wsdl(tmp_path, "ctrlPaint.wsdl"))
    )

    assert parse_envelope(login) == PaintRequest(
        context_id=None,
        class_name="bus_facade_context",
        process_name="login",
        entity_data={"userName": "test.sys", "password": "secret"},
        process_data={},
        flavour="encoded",
    )
    assert b'xsi:type="SOAP-ENC:Array"' in get_batch
    assert parse_envelope(get_batch) == PaintRequest(
        context_id="C-KFDsCMMHXpDUi0ltN0p3FvF",
        class_name="bus_facade_eventNotification",
        process_name="getBatch",
        entity_data={},
        process_data={
            "notificationTypes": ["OPEN", "CLICK"],
            "maxNotifications": "1000",
            "markAsReadInd": "N",
            "customFieldNames": [],
        },
        flavour="encoded",
    )


@needs_php
def test_php_soap_client_decodes_the_encoded_response(tmp_path: Path) -> None:
    decoded = run_php(tmp_path, PHP_RESPONSE, local_wsdl(tmp_path, "ctrlPaint.wsdl"), encode_result(BATCH_RESULT))

    batch = dict(BATCH_RESULT["resultData"]["bus_entity_eventNotificationBatch"], empty=[])
    assert decoded == {"result": "success", "resultData": {"bus_entity_eventNotificationBatch": batch}}
