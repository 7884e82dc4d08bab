"""The web console at ``/``: an account's overview, destinations, pull batches and events, as server-rendered
pages. ``install`` adds it to the gateway's Flask application; ``login`` owns who is signed in (cookies, CSRF,
the idle timeout), ``queries`` what the pages read, ``chart`` the overview's SVG chart, ``forms`` how a form
becomes the same request the REST API takes, and ``pages`` the pages themselves."""
from __future__ import annotations

from flask import Flask

from gateway.console.login import configure
from gateway.console.pages import blueprint
from gateway.runtime import Runtime


def install(app: Flask, runtime: Runtime) -> None:
    """Serve the console from ``app``: its session cookies signed with a key derived from the store's secret key
    (so every web process of one store accepts them), and its pages, login and assets."""
    configure(app, runtime)
    app.register_blueprint(blueprint)
