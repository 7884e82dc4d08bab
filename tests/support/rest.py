"""The REST API as the tests call it: an answer's status, JSON body and Content-Type, and the calls many
tests make (create a webhook, post events)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from gateway.server import ServerThread
from tests.support.runtime import PASSWORD

TIMEOUT = 30
ACME = ("acme", PASSWORD)
GLOBEX = ("globex", PASSWORD)


@dataclass(frozen=True)
class Answer:
    """What the gateway answered: status, JSON body (or text) and Content-Type."""

    status: int
    body: Any
    content_type: str

    def problem_fields(self) -> list[str]:
        """The fields the answer's problems name, in order."""
        return [p["field"] for p in self.body["problems"]]


def call(server: ServerThread, method: str, path: str, auth: tuple[str, str] = ACME, **kwargs: Any) -> Answer:
    """Call the gateway's API as ``auth`` (acme by default); ``kwargs`` go to requests."""
    # The response is not kept, so its connection closes here rather than when the server stops.
    with requests.request(method, server.url + path, auth=auth, timeout=TIMEOUT, **kwargs) as response:
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return Answer(response.status_code, response.json() if is_json else response.text,
                      response.headers.get("Content-Type", ""))


def create(server: ServerThread, auth: tuple[str, str] = ACME, **payload: Any) -> dict[str, Any]:
    """Create a webhook as ``payload`` describes it; its view (with the secret)."""
    answer = call(server, "POST", "/api/v1/webhooks", auth, json=payload)
    assert answer.status == 201, answer.body
    return answer.body  # type: ignore[no-any-return]


def post_events(server: ServerThread, events: list[dict[str, Any]], auth: tuple[str, str] = ACME) -> None:
    """Ingest ``events`` over REST, every one accepted."""
    answer = call(server, "POST", "/api/v1/events", auth, json=events)
    assert answer.status == 200 and answer.body["accepted"] == len(events), answer.body
