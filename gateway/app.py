"""The WSGI application: the Flask REST API with the SOAP endpoints mounted beside it; and the answers, in the
protocol of each, to the requests the HTTP server refuses before the application sees them."""
from __future__ import annotations

import json
from typing import Any

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gateway import console
from gateway.api import (
    account,
    batches,
    destinations,
    errors,
    events,
    failed,
    metrics,
    notices,
    openapi,
    routes,
    stats,
    webhooks,
)
from gateway.api.body import BodyBudget, tune_memory
from gateway.api.context import attach_runtime
from gateway.api.errors import refusal
from gateway.api.params import IdConverter, refuse_nul_characters
from gateway.runtime import Runtime
from gateway.soap import legacy, typed
from gateway.soap.encoding import encode_fault

SOAP_PATHS = ("/paint", "/_bus/request.soap", typed.PATH)


def create_app(runtime: Runtime) -> Flask:
    """The gateway's web application over an opened Runtime."""
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    attach_runtime(app, runtime)
    errors.register(app)
    app.url_map.converters["id"] = IdConverter
    app.before_request(refuse_nul_characters)
    for module in (events, batches, stats, webhooks, routes, notices, destinations, failed, account, metrics, legacy,
                   openapi):
        app.register_blueprint(module.blueprint)
    console.install(app, runtime)
    app.wsgi_app = BodyBudget(  # type: ignore[method-assign]
        DispatcherMiddleware(app.wsgi_app, {typed.PATH: typed.make_wsgi(runtime)}),
        runtime.settings.body_budget_bytes, runtime.settings.max_body_bytes)
    tune_memory()
    return app


class _RefusalTask(ErrorTask):
    """waitress's answer to a request it refuses itself: a SOAP Fault on the SOAP endpoints, JSON elsewhere."""

    def execute(self) -> None:
        error: Any = self.request.error  # type: ignore[attr-defined]
        path = str(getattr(self.request, "path", "") or "")
        limit = self.channel.server.adj.max_request_body_size - 1
        answer = refusal(error.code, error.reason, str(error.body), limit)
        if path.startswith(SOAP_PATHS):
            # SOAP 1.1 carries a fault with HTTP 500, whatever went wrong.
            self.status = "500 Internal Server Error"
            self.response_headers = [("Content-Type", "text/xml; charset=utf-8")]
            data = encode_fault("Client", str(answer["message"]))
        else:
            self.status = f"{error.code} {error.reason}"
            self.response_headers = [("Content-Type", "application/json")]
            data = json.dumps(answer).encode()
        self.set_close_on_finish()
        self.content_length = len(data)
        self.write(data)


class _RefusingChannel(HTTPChannel):
    error_task_class = _RefusalTask


def answer_refusals(server: Any) -> None:
    """Make a waitress server (from create_server: one listener or several) answer the requests it refuses
    itself (a body over max_request_body_size, a malformed request) as the application would: JSON, or a
    SOAP Fault on the SOAP endpoints."""
    listeners = [s for s in getattr(server, "map", {}).values() if isinstance(s, BaseWSGIServer)] or [server]
    for listener in listeners:
        listener.channel_class = _RefusingChannel
