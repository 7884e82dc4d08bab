"""A legacy pull client over raw encoded handleRequest envelopes (the documented ones): login, getBatch, drain."""
from __future__ import annotations

import base64
import csv
import io
from typing import Any
from xml.sax.saxutils import escape

import requests

from tests.support.envelopes import DOCUMENTED_LOGIN, ENCODED_HEAD, TAIL, php_value, response_result

XML_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}

GET_BATCH = ENCODED_HEAD + """<ns1:handleRequest>
  <contextId xsi:type="xsd:string">{context}</contextId>
  <className xsi:type="xsd:string">bus_facade_eventNotification</className>
  <processName xsi:type="xsd:string">getBatch</processName>
  <entityData xsi:nil="true"/>
  <processData xsi:type="ns2:Map">
    <item><key xsi:type="xsd:string">notificationTypes</key><value xsi:type="xsd:string">{types}</value></item>
    <item><key xsi:type="xsd:string">maxNotifications</key><value xsi:type="xsd:int">{size}</value></item>
    <item><key xsi:type="xsd:string">markAsReadInd</key><value xsi:type="xsd:string">{mark}</value></item>
  </processData>
</ns1:handleRequest>""" + TAIL


class LegacyClient:
    """One account's legacy session at a running gateway's /paint endpoint."""

    def __init__(self, url: str, name: str, password: str) -> None:
        self.url = url
        self.http = requests.Session()
        result = self.call(DOCUMENTED_LOGIN.format(user=escape(name), password=escape(password)))
        assert result["result"] == "success", result
        self.context_id: str = result["resultData"]["bus_entity_context"]["beanId"]

    def call(self, envelope: str) -> dict[str, Any]:
        """POST an envelope; its Result, decoded as PHP decodes it."""
        response = self.http.post(self.url + "/paint", data=envelope.encode(), headers=XML_HEADERS, timeout=60)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = php_value(response_result(response.content))
        return result

    def get_batch(self, types: str = "", size: int = 1000, mark: str = "N") -> list[list[str]]:
        """One getBatch: its events as legacy CSV rows."""
        result = self.call(GET_BATCH.format(context=self.context_id, types=types, size=size, mark=mark))
        assert result["result"] == "success", result
        batch = result["resultData"]["bus_entity_eventNotificationBatch"]
        rows = list(csv.reader(io.StringIO(base64.b64decode(batch["eventData"]).decode("utf-8"))))
        assert batch["eventCount"] == len(rows)
        return rows

    def drain(self, types: str = "", size: int = 1000) -> list[list[str]]:
        """getBatch with markAsReadInd=Y until a batch comes back empty: every row, in order."""
        rows: list[list[str]] = []
        while batch := self.get_batch(types, size, "Y"):
            rows.extend(batch)
        return rows

    def close(self) -> None:
        """Close the HTTP connections (the session stays, as a crashed client leaves it)."""
        self.http.close()
