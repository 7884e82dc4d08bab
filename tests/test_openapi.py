"""The OpenAPI 3.1 document at /openapi.json: a valid document, describing exactly the REST routes the app has,
whose schemas the API's real requests and answers match (on SQLite and PostgreSQL); and the /docs reference,
served with its assets by the gateway itself."""
from __future__ import annotations

import base64
import importlib.metadata
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from gateway.accounts import create_account
from gateway.app import create_app
from gateway.events import model
from gateway.runtime import Runtime
from tests.support.runtime import PASSWORD, make_runtime

METRICS_TOKEN = "metrics-token-for-the-document-test"
# The REST API: JSON over HTTP under /api/, and the two operational endpoints. Everything else the app serves
# (the SOAP endpoints and their WSDLs, the console's pages, static files, this document and its reference page)
# is not part of it.
OPERATIONAL = ("/healthz", "/metrics")
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def is_rest(rule: str) -> bool:
    return rule.startswith("/api/") or rule in OPERATIONAL


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


@pytest.fixture
def app(sqlite_url: str, tmp_path: Path) -> Iterator[Flask]:
    runtime = make_runtime(sqlite_url, tmp_path)
    yield create_app(runtime)
    runtime.close()


@pytest.fixture
def document(app: Flask) -> dict[str, Any]:
    answer = app.test_client().get("/openapi.json")
    assert answer.status_code == 200 and answer.content_type == "application/json"
    return answer.get_json()  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)  # raises, naming what is wrong
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["version"] == importlib.metadata.version("eventgw")
    schemes = document["components"]["securitySchemes"]
    assert schemes["basicAuth"] == {**schemes["basicAuth"], "type": "http", "scheme": "basic"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}


def test_every_rest_route_is_described_and_nothing_else(app: Flask, document: dict[str, Any]) -> None:
    routes = {(openapi_path(rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if is_rest(rule.rule)
              for method in (rule.methods or set()) - IGNORED_METHODS}
    described = {(path, method) for path, item in document["paths"].items() for method in item
                 if method in ("get", "put", "post", "delete", "patch")}
    assert sorted(routes - described) == [], "REST routes the document does not describe"
    assert sorted(described - routes) == [], "described operations the app does not have"


def test_operations_name_their_parameters_answers_and_errors(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            in_path = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            assert in_path == set(re.findall(r"{(\w+)}", path)), where
            assert operation["summary"], where
            successes = [status for status in operation["responses"] if status.startswith("2")]
            assert len(successes) == 1, where
            if path.startswith("/api/"):
                assert operation["security"] == [{"basicAuth": []}, {"apiKey": []}], where
                error = operation["responses"]["401"]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorBody"}, where
            if "requestBody" in operation:
                assert "400" in operation["responses"], where
    batches = document["paths"]["/api/v1/batches"]["get"]
    assert {p["name"]: p["in"] for p in batches["parameters"]} == {"types": "query", "max": "query", "mode": "query"}
    webhook = document["paths"]["/api/v1/webhooks/{webhook_id}"]["get"]
    assert webhook["parameters"][0]["schema"]["type"] == "integer"
    assert "404" in webhook["responses"]
    assert document["paths"]["/healthz"]["get"]["security"] == []


def test_the_event_schema_is_the_event_models(document: dict[str, Any]) -> None:
    event = document["components"]["schemas"]["Event"]
    assert list(event["properties"]) == [field.name for field in model.FIELDS]
    assert set(event["required"]) == {"id", "type", "occurred_at"}


class Api:
    """Calls the app as a client would, checking each request body and answer against the document."""

    def __init__(self, client: FlaskClient, document: dict[str, Any]) -> None:
        self.client, self.document = client, document
        token = base64.b64encode(f"acme:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}
        self.checked: set[tuple[str, str, int]] = set()
        self.accepted: dict[tuple[str, str], tuple[dict[str, object], dict[str, Any]]] = {}

    def _matches(self, schema: dict[str, Any], instance: object, where: str) -> None:
        root = {"components": self.document["components"], **schema}
        errors = sorted(Draft202012Validator(root).iter_errors(instance), key=str)
        assert not errors, f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}"

    def __call__(self, method: str, template: str, status: int, *, json: object = None,
                 headers: dict[str, str] | None = None, **values: object) -> Any:
        operation = self.document["paths"][template][method.lower()]
        path = template.format(**{k: v for k, v in values.items() if f"{{{k}}}" in template})
        query = {k: v for k, v in values.items() if f"{{{k}}}" not in template}
        where = f"{method} {template}"
        if json is not None and status < 300:
            self._matches(operation["requestBody"]["content"]["application/json"]["schema"], json,
                          f"{where} request")
        answer = self.client.open(path, method=method, json=json, query_string=query,
                                  headers=self.headers if headers is None else headers)
        assert answer.status_code == status, (where, answer.get_data(as_text=True))
        described = operation["responses"][str(status)]
        if "content" in described:
            media, content = next(iter(described["content"].items()))
            assert answer.content_type.split(";")[0] == media.split(";")[0], where
            body = answer.get_json() if media == "application/json" else answer.get_data(as_text=True)
            self._matches(content["schema"], body, f"{where} {status}")
        else:
            assert not answer.get_data(), where
            body = None
        self.checked.add((method, template, status))
        if isinstance(json, dict) and status < 300:
            self.accepted[(method, template)] = (values, json)
        return body

    def refuse_unknown_fields(self) -> None:
        """Send each JSON object body the API accepted again with one more field: the document says request
        bodies are closed, so the API must refuse it, naming the field."""
        for (method, template), (values, json) in self.accepted.items():
            answer = self(method, template, 400, json={**json, "bogus": 1}, **values)
            assert [p["field"] for p in answer["problems"]] == ["bogus"], (method, template, answer)


@pytest.fixture
def api(store_url: str, tmp_path: Path) -> Iterator[Api]:
    runtime: Runtime = make_runtime(store_url, tmp_path, metrics_token=METRICS_TOKEN)
    with runtime.sessions.begin() as session:
        create_account(session, "acme", PASSWORD)
    app = create_app(runtime)
    document = app.test_client().get("/openapi.json").get_json()
    yield Api(app.test_client(), document)
    runtime.close()


def test_real_requests_and_answers_match_the_document(api: Api) -> None:
    events = [{"id": "e1", "type": "OPEN", "occurred_at": "2026-11-20T10:00:00Z", "email": "a@example.com",
               "message_id": "m1"},
              {"id": "e2", "type": "CLICK", "occurred_at": 1_763_632_800, "email": "b@example.com",
               "message_id": "m1", "url": "https://example.com/x", "data": {"campaign": "fall"}}]
    assert api("POST", "/api/v1/events", 200, json=events) == {"accepted": 2, "duplicates": 0}
    api("POST", "/api/v1/events", 400, json=[{"id": "e3"}])
    api("POST", "/api/v1/events", 401, json=events, headers={})

    batch = api("GET", "/api/v1/batches", 200, max=1)
    assert batch["count"] == 1
    api("POST", "/api/v1/batches/{batch_id}/ack", 200, batch_id=batch["batch_id"])
    api("GET", "/api/v1/batches/{batch_id}", 200, batch_id=batch["batch_id"])
    api("GET", "/api/v1/batches", 200, mode="peek")
    api("GET", "/api/v1/batches", 400, mode="take")
    api("POST", "/api/v1/pull/requeue", 200, json={"since": int(time.time()) - 3600, "types": ["OPEN"]})

    hook = api("POST", "/api/v1/webhooks", 201, json={"url": "http://127.0.0.1:9/hook", "events": ["OPEN"],
                                                      "app": "crm", "basic_auth": {"username": "u", "password": "p"}})
    assert hook["secret"].startswith("whsec_")
    api("GET", "/api/v1/webhooks", 200, app="crm")
    api("GET", "/api/v1/webhooks/{webhook_id}", 200, webhook_id=hook["id"])
    api("GET", "/api/v1/webhooks/{webhook_id}", 404, webhook_id=hook["id"] + 100)
    api("PUT", "/api/v1/webhooks/{webhook_id}", 200, webhook_id=hook["id"], json={"rate_limit": 5})
    api("PUT", "/api/v1/webhooks/{webhook_id}", 400, webhook_id=hook["id"], json={"format": "yaml"})
    api("POST", "/api/v1/webhooks/{webhook_id}/deactivate", 200, webhook_id=hook["id"])
    api("POST", "/api/v1/webhooks/{webhook_id}/retry", 409, webhook_id=hook["id"])
    api("POST", "/api/v1/webhooks/{webhook_id}/activate", 200, webhook_id=hook["id"], replay="true")
    api("POST", "/api/v1/webhooks/{webhook_id}/retry", 200, webhook_id=hook["id"])
    api("POST", "/api/v1/webhooks/{webhook_id}/replay", 200, webhook_id=hook["id"],
        since="2026-11-20T00:00:00Z", until="2026-11-21T00:00:00Z")
    api("GET", "/api/v1/webhooks/{webhook_id}/attempts", 200, webhook_id=hook["id"], limit=5)
    assert api("POST", "/api/v1/webhooks/{webhook_id}/verify", 200, webhook_id=hook["id"])["ok"] is False

    email = api("POST", "/api/v1/destinations", 201, json={"kind": "email", "recipients": ["ops@example.com"],
                                                           "events": ["CLICK"]})
    api("POST", "/api/v1/destinations", 400, json={"kind": "email"})
    api("GET", "/api/v1/destinations", 200, kind="email")
    api("GET", "/api/v1/destinations/{destination_id}", 200, destination_id=email["id"])
    api("PUT", "/api/v1/destinations/{destination_id}", 200, destination_id=email["id"],
        json={"subject": "Clicks", "events": ["CLICK", "OPEN"]})
    api("POST", "/api/v1/destinations/{destination_id}/deactivate", 200, destination_id=email["id"])
    api("POST", "/api/v1/destinations/{destination_id}/activate", 200, destination_id=email["id"])
    api("POST", "/api/v1/destinations/{destination_id}/retry", 200, destination_id=email["id"])
    api("GET", "/api/v1/destinations/{destination_id}/attempts", 200, destination_id=email["id"])
    api("POST", "/api/v1/destinations/{destination_id}/test", 200, destination_id=email["id"])
    api("POST", "/api/v1/destinations/{destination_id}/flush", 200, destination_id=email["id"])
    api("POST", "/api/v1/destinations/{destination_id}/export", 404, destination_id=email["id"], date="2026-11-20")
    api("DELETE", "/api/v1/destinations/{destination_id}", 204, destination_id=email["id"])

    api("GET", "/api/v1/routes", 200)
    api("PUT", "/api/v1/routes/{event_type}", 200, event_type="OPEN", json={"destinations": [hook["id"]]})
    api("GET", "/api/v1/notifications", 200)
    api("PUT", "/api/v1/notifications/email", 200, json={"email": "ops@example.com"})
    api("GET", "/api/v1/notifications/email", 200)
    api("GET", "/api/v1/failed", 200, limit=10)
    api("POST", "/api/v1/failed/redrive", 200, json={"destination_id": hook["id"]})
    api("GET", "/api/v1/stats", 200)
    api("GET", "/api/v1/account", 200)
    api("PUT", "/api/v1/account/password", 200, json={"current_password": PASSWORD, "password": PASSWORD})
    api("POST", "/api/v1/account/api-key", 201)
    api.refuse_unknown_fields()
    api("DELETE", "/api/v1/webhooks/{webhook_id}", 204, webhook_id=hook["id"])
    api("GET", "/healthz", 200, headers={})
    metrics = api("GET", "/metrics", 200, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert "eventgw_" in metrics
    api("GET", "/metrics", 401, headers={})
    described = {(method.upper(), path) for path, item in api.document["paths"].items() for method in item}
    assert described == {(method, template) for method, template, _ in api.checked}, "operations not exercised"


def test_the_reference_page_is_served_with_local_assets(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    html = page.get_data(as_text=True)
    assert "://" not in html, "the page must load nothing from elsewhere"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {asset.rsplit("/", 1)[-1] for asset in assets} >= {"swagger-ui.css", "swagger-ui-bundle.js"}
    for asset in assets:
        with client.get(asset) as answer:
            assert answer.status_code == 200 and len(answer.get_data()) > 100, asset
    assert re.search(r'data-document="/openapi.json"', html)
    assert client.get("/docs/assets/../../app.py").status_code == 404
