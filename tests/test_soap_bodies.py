"""Bodies that are no SOAP message at all, posted to every SOAP endpoint: a SOAP Fault, never a text 500 or a traceback."""
from __future__ import annotations

import logging

import pytest
import requests
from lxml import etree

from gateway.server import ServerThread
from gateway.soap import typed

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
ENDPOINTS = ["/paint", "/_bus/request.soap", typed.PATH]
LATIN_1 = ('<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="' + SOAP_ENV_NS + '">'
           "<SOAP-ENV:Body><login><userName>Jos\xe9</userName></login></SOAP-ENV:Body></SOAP-ENV:Envelope>"
           ).encode("latin-1")
BODIES = {
    "empty": (b"", "text/xml; charset=utf-8"),
    "latin-1 declared as UTF-8": (LATIN_1, "text/xml; charset=utf-8"),
    "latin-1 without a declaration": (LATIN_1.split(b"?>", 1)[1], "text/xml; charset=utf-8"),
    "binary": (bytes(range(256)) * 4, "text/xml"),
    "UTF-16 without a byte-order mark": ("<a>\u20ac</a>".encode("utf-16-le"), "text/xml; charset=utf-8"),
    "an unknown charset": (b"<a/>", "text/xml; charset=no-such-charset"),
}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("name", BODIES)
def test_a_body_that_is_no_soap_message_gets_a_client_fault(live_server: ServerThread, caplog: pytest.LogCaptureFixture,
                                                            path: str, name: str) -> None:
    body, content_type = BODIES[name]
    with caplog.at_level(logging.INFO):
        response = requests.post(live_server.url + path, data=body, headers={"Content-Type": content_type},
                                 timeout=30)

    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{SOAP_ENV_NS}}}Body/{{{SOAP_ENV_NS}}}Fault")
    assert fault is not None, response.text
    assert (fault.findtext("faultcode") or "").split(":")[-1].startswith("Client")
    assert fault.findtext("faultstring")
    assert b"Traceback" not in response.content
    logged = [record for record in caplog.records if record.levelno >= logging.WARNING or record.exc_info]
    assert logged == [], [record.getMessage() for record in logged]
