"""The WSGI application: the Flask REST API with the SOAP endpoints mounted beside it."""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gateway.api import destinations, errors, ingest, metrics, pull, stats, webhooks
from gateway.runtime import Runtime
from gateway.soap import legacy, typed


def create_app(runtime: Runtime) -> Flask:
    """The gateway's web application over an opened Runtime."""
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["eventgw"] = runtime
    errors.register(app)
    for module in (ingest, pull, stats, webhooks, destinations, metrics, legacy):
        app.register_blueprint(module.blueprint)
    soap = {typed.PATH: typed.make_wsgi(runtime)}
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, soap)  # type: ignore[method-assign]
    return app
