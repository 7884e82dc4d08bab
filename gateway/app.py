"""The WSGI application: the Flask REST API with the SOAP endpoints mounted beside it."""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gateway.api import account, batches, destinations, errors, events, metrics, notices, routes, stats, webhooks
from gateway.api.context import attach_runtime
from gateway.runtime import Runtime
from gateway.soap import legacy, typed


def create_app(runtime: Runtime) -> Flask:
    """The gateway's web application over an opened Runtime."""
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    attach_runtime(app, runtime)
    errors.register(app)
    for module in (events, batches, stats, webhooks, routes, notices, destinations, account, metrics, legacy):
        app.register_blueprint(module.blueprint)
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {typed.PATH: typed.make_wsgi(runtime)})
    return app
