"""The WSGI application: the Flask REST API with the SOAP endpoints mounted beside it."""
from __future__ import annotations

from flask import Flask

from gateway.api import errors, ingest, pull, stats
from gateway.runtime import Runtime
from gateway.soap import legacy


def create_app(runtime: Runtime) -> Flask:
    """The gateway's web application over an opened Runtime."""
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["eventgw"] = runtime
    errors.register(app)
    for module in (ingest, pull, stats, legacy):
        app.register_blueprint(module.blueprint)
    return app
