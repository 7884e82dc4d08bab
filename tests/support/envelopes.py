"""handleRequest envelopes as the platform documents them and clients write them; answers read as PHP reads them."""
from __future__ import annotations

from typing import Any

from lxml import etree

from gateway.soap.encoding import PAINT_NS, SOAP_ENV_NS, XSI_NS

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

# The published login request (D-sess), with the credentials to fill in.
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

# The published getBatch request (D-pull), with the session to fill in.
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
</ns1:handleRequest>""" + TAIL  # noqa: E501 (verbatim)

# The documentation's comments, and the raw-XML tester's whitespace-only entityData, nil
# maxNotifications and undocumented extra keys (Get Batch.xml), with the session and the
# mark-as-read flag to fill in.
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


def encoded(body: str) -> bytes:
    """An encoded-flavour envelope (the documented head) around ``body``."""
    return (ENCODED_HEAD + body + TAIL).encode()


def handle_request(*parts: str) -> bytes:
    """An encoded-flavour envelope whose ns1:handleRequest holds ``parts``."""
    return encoded("<ns1:handleRequest>" + "".join(parts) + "</ns1:handleRequest>")


def literal(body: str) -> bytes:
    """An rpc/literal envelope around ns1:handleRequest ``body``, as suds or PHP write it for ctrlPaintLiteral.wsdl."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:ns1="urn:localhost-paint" xmlns:ns2="http://www.pure360.com/paint"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<SOAP-ENV:Body><ns1:handleRequest>{body}</ns1:handleRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ).encode()


def response_result(body: bytes) -> etree._Element:
    """The Result element of a handleRequestResponse envelope."""
    root = etree.fromstring(body)
    assert root.tag == f"{{{SOAP_ENV_NS}}}Envelope"
    soap_body = root.find(f"{{{SOAP_ENV_NS}}}Body")
    assert soap_body is not None
    (response,) = soap_body
    assert response.tag == f"{{{PAINT_NS}}}handleRequestResponse"
    (result,) = response
    assert result.tag == "Result"
    return result


def php_value(value: etree._Element | None) -> Any:
    """An encoded value decoded the way PHP's SoapClient decodes it, from xsi:type alone."""
    assert value is not None, "a map item without a value"
    if value.get(f"{{{XSI_NS}}}nil") == "true":
        return None
    kind = value.get(f"{{{XSI_NS}}}type")
    if kind == "ns2:Map":
        return {item.findtext("key"): php_value(item.find("value")) for item in value.findall("item")}
    if kind == "SOAP-ENC:Array":
        return [php_value(item) for item in value.findall("item")]
    if kind in ("xsd:int", "xsd:long"):
        return int(value.text or "")
    if kind == "xsd:boolean":
        return value.text == "true"
    assert kind == "xsd:string", kind
    return value.text or ""
