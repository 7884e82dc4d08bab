"""The OpenAPI 3.1 document at /openapi.json, built by apispec from the app's routes and each view's declaration
(``gateway.api.operations``), with JSON Schema that pydantic derives from the declared types; and the API
reference at /docs, Swagger UI served from the flask-swagger-ui package (no CDN)."""
from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

from apispec import APISpec
from flask import Blueprint, Flask, Response, current_app, send_from_directory, url_for
from pydantic import TypeAdapter
from werkzeug.routing import Rule

from gateway.api.operations import Operation, declared
from gateway.api.params import MAX_ID
from gateway.api.schemas import DeliveryFailure, ErrorBody

blueprint = Blueprint("openapi", __name__)
# Swagger UI as the flask-swagger-ui package ships it (only its files are used, not its blueprint).
ASSETS = Path(str(importlib.resources.files("flask_swagger_ui") / "dist"))
_DOCUMENT = "eventgw.openapi"
_REF = "#/components/schemas/{model}"
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "account": [{"basicAuth": []}, {"apiKey": []}],
    "metrics": [{"metricsToken": []}],
    "anyone": [],
}
_ERRORS = {
    400: "Invalid request: the problems name each field or parameter",
    401: "Credentials missing or wrong",
    404: "No such object of the calling account",
    409: "Conflicts with the current state",
    413: "Request body over max_body_bytes",
    415: "Unsupported Content-Type",
    429: "Too many failed logins from this address: wait Retry-After seconds",
    502: "The receiving end refused or could not be reached",
    503: "Not ready",
}
# A variable of a werkzeug rule: <name> or <converter:name> (the converter's arguments, if any, skipped).
_VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def package_version() -> str:
    """The installed eventgw's version, which the document gives as the API's."""
    return importlib.metadata.version("eventgw")


def is_rest(rule: Rule) -> bool:
    """Whether a route belongs to the REST API the document describes (the SOAP endpoints, the console and the
    document's own pages do not)."""
    return rule.rule.startswith("/api/") or rule.rule in ("/healthz", "/metrics")


class _Schemas:
    """JSON Schema of declared types, their named parts registered once as components of the document."""

    def __init__(self, spec: APISpec) -> None:
        self._spec = spec

    def _register(self, name: str, schema: dict[str, Any]) -> None:
        if name not in self._spec.components.schemas:
            self._spec.components.schema(name, schema)

    def inline(self, declared_type: object, mode: str = "serialization") -> dict[str, Any]:
        """The schema of ``declared_type`` itself, the named types it holds registered as components."""
        schema = TypeAdapter(declared_type).json_schema(ref_template=_REF, mode=mode)  # type: ignore[arg-type]
        for name, part in schema.pop("$defs", {}).items():
            self._register(name, part)
        return schema

    def of(self, declared_type: object, mode: str = "serialization") -> dict[str, Any]:
        """The schema of ``declared_type``: a reference to its component when it is a named object type."""
        schema = self.inline(declared_type, mode)
        if inspect.isclass(declared_type) and schema.get("type") == "object":
            self._register(declared_type.__name__, schema)
            return {"$ref": _REF.format(model=declared_type.__name__)}
        return schema

    def request_body(self, op: Operation) -> dict[str, Any]:
        """The schema of a request body: the declared type, or one of the kinds' settings joined with the fields
        every kind's request has."""
        if not isinstance(op.body, tuple):
            return self.of(op.body, "validation")
        fields = self.of(op.fields, "validation")
        # No field but the kind's settings and the request's own (the API refuses any other, naming it).
        if op.partial:
            # The stored destination's kind decides which settings a change may give.
            return {"anyOf": [{"allOf": [fields, self._optional(kind)], "unevaluatedProperties": False}
                              for kind in op.body]}
        return {"oneOf": [{"allOf": [fields, self.of(kind, "validation"),
                                     {"properties": {"kind": {"const": kind.kind}}}],
                           "unevaluatedProperties": False} for kind in op.body]}

    def _optional(self, kind: type) -> dict[str, Any]:
        """A kind's settings with none of them required, as a change gives them."""
        schema = self.inline(kind, "validation")
        return {"title": f"{kind.__name__} (change)", "type": "object", "properties": schema["properties"]}

    def parameters(self, query: object) -> list[dict[str, Any]]:
        """Query parameters: one per property of the declared typed dict."""
        schema = self.inline(query, "validation")
        required = set(schema.get("required", ()))
        parameters = []
        for name, prop in schema.get("properties", {}).items():
            prop = {key: value for key, value in prop.items() if key != "title"}
            description = prop.pop("description", None)
            parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if description:
                parameter["description"] = description
            parameters.append(parameter)
        return parameters


def _path_of(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """The rule's path in OpenAPI's template syntax, and its path parameters (an ``id`` is a stored row's id)."""
    parameters = []
    for converter, name in _VARIABLE.findall(rule.rule):
        schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID} if converter == "id" else {"type": "string"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _VARIABLE.sub(lambda match: "{" + match[2] + "}", rule.rule), parameters


def _error_statuses(op: Operation, has_path_id: bool) -> list[int]:
    statuses = set(op.errors)
    if op.caller == "account":
        statuses |= {401, 429}
    elif op.caller == "metrics":
        statuses |= {401, 404}
    if op.body is not None:
        statuses |= {400, 413}
    if op.query is not None:
        statuses.add(400)
    if has_path_id:
        statuses.add(404)
    return sorted(statuses)


def _operation(schemas: _Schemas, view: Any, op: Operation, tag: str,
               path_parameters: list[dict[str, Any]]) -> dict[str, Any]:
    first, _, description = (inspect.getdoc(view) or "").partition("\n\n")
    summary = " ".join(first.split())
    success: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    if op.answer is not None:
        success["content"] = {op.media_type: {"schema": schemas.of(op.answer)}}
    responses: dict[str, Any] = {str(op.status): success}
    # A failed delivery asked for now (502) has a shape of its own; not ready (503), the ready answer's, saying why.
    shapes = {502: schemas.of(DeliveryFailure), 503: success.get("content", {}).get(op.media_type, {}).get("schema")}
    has_path_id = any(p["schema"]["type"] == "integer" for p in path_parameters)
    for status in _error_statuses(op, has_path_id):
        schema = shapes.get(status) or schemas.of(ErrorBody)
        responses[str(status)] = {"description": _ERRORS[status], "content": {"application/json": {"schema": schema}}}
    if "429" in responses:
        responses["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    operation: dict[str, Any] = {
        "operationId": view.__name__ if tag == view.__name__ else f"{tag}_{view.__name__}",
        "tags": [tag], "summary": summary, "security": _SECURITY[op.caller], "responses": responses,
    }
    if description.strip():
        operation["description"] = description.strip()
    parameters = path_parameters + (schemas.parameters(op.query) if op.query is not None else [])
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        # A body in another media type (NDJSON) is text: the same events, one JSON object a line.
        content = {media: {"schema": schemas.request_body(op) if media == "application/json" else {"type": "string"}}
                   for media in op.body_media_types}
        operation["requestBody"] = {"required": not op.body_optional, "content": content}
    return operation


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s REST routes, each as its view declares it."""
    spec = APISpec(
        title="eventgw API", version=package_version(), openapi_version="3.1.0",
        info={"description": "Ingest, pull and delivery management of the event-notification gateway. "
                             "The reference: /docs."},
    )
    spec.components.security_scheme("basicAuth", {"type": "http", "scheme": "basic",
                                                  "description": "The account's name and password"})
    spec.components.security_scheme("apiKey", {"type": "http", "scheme": "bearer",
                                               "description": "Authorization: Bearer <the account's API key>"})
    spec.components.security_scheme("metricsToken", {"type": "http", "scheme": "bearer",
                                                     "description": "Authorization: Bearer <metrics_token>"})
    schemas = _Schemas(spec)
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        op = declared(view)
        if op is None or not is_rest(rule):
            continue
        path, path_parameters = _path_of(rule)
        tag = rule.endpoint.partition(".")[0]
        # A resource's tag says what its blueprint module's docstring says.
        tags.setdefault(tag, " ".join((inspect.getdoc(inspect.getmodule(view)) or "").split()))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(schemas, view, op, tag, path_parameters)
    for name in sorted(tags):
        spec.tag({"name": name, "description": tags[name]})
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@blueprint.get("/openapi.json")
def document() -> Response:
    """The OpenAPI 3.1 document of the REST API (built once: routes and declarations do not change)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if _DOCUMENT not in app.extensions:
        app.extensions[_DOCUMENT] = app.json.dumps(build_document(app))
    return Response(app.extensions[_DOCUMENT], content_type="application/json")


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>eventgw API reference</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="reference" data-document="{document}"></div>
<script src="{bundle}"></script>
<script src="{start}"></script>
</body>
</html>
"""
_START = """const node = document.getElementById("reference");
// No validatorUrl: Swagger UI would otherwise send the document to an outside validator for its badge.
window.ui = SwaggerUIBundle({url: node.dataset.document, domNode: node, deepLinking: true, validatorUrl: null});
"""
# The page loads only the gateway's own files; Swagger UI sets inline styles and draws its icons as data: images.
_PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@blueprint.get("/docs")
def reference() -> Response:
    """The API reference page: Swagger UI over /openapi.json."""
    page = _PAGE.format(css=url_for("openapi.asset", name="swagger-ui.css"),
                        icon=url_for("openapi.asset", name="favicon-32x32.png"),
                        bundle=url_for("openapi.asset", name="swagger-ui-bundle.js"),
                        start=url_for("openapi.start"), document=url_for("openapi.document"))
    return Response(page, content_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": _PAGE_POLICY, "X-Content-Type-Options": "nosniff"})


@blueprint.get("/docs/start.js")
def start() -> Response:
    """What starts Swagger UI on the reference page (a file of its own, so no inline script is needed)."""
    return Response(_START, content_type="text/javascript; charset=utf-8")


@blueprint.get("/docs/assets/<name>")
def asset(name: str) -> Response:
    """One file of Swagger UI, as the flask-swagger-ui package ships it."""
    return send_from_directory(ASSETS, name, max_age=86_400)
