"""The Runtime a Flask application works with: attached once when the app is made, read by every request."""
from __future__ import annotations

from flask import Flask, current_app

from gateway.runtime import Runtime

_EXTENSION = "eventgw"


def attach_runtime(app: Flask, runtime: Runtime) -> None:
    """Make ``runtime`` the one the requests ``app`` handles work with."""
    app.extensions[_EXTENSION] = runtime


def current_runtime() -> Runtime:
    """The Runtime of the web application handling the current request."""
    runtime: Runtime = current_app.extensions[_EXTENSION]
    return runtime
