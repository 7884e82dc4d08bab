"""The WSGI application: the Flask REST API with the SOAP endpoints mounted beside it."""
from __future__ import annotations

from flask import Flask
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
from gateway.api.body import BodyBudget
from gateway.api.context import attach_runtime
from gateway.api.params import IdConverter, refuse_nul_characters
from gateway.runtime import Runtime
from gateway.soap import legacy, typed


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
    return app
