"""Maps the gateway's errors to JSON HTTP answers, in one place; never a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from gateway.errors import (
    AuthError,
    Conflict,
    DeliveryError,
    GatewayError,
    NotFound,
    TooLarge,
    ValidationError,
)

log = logging.getLogger(__name__)


def _answer(status: int, error: str, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": error, "message": message, **extra}), status


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> tuple[Response, int]:
        status = 413 if isinstance(exc, TooLarge) else 400
        return _answer(status, "too_large" if status == 413 else "invalid", str(exc),
                       problems=[p.as_dict() for p in exc.problems])

    @app.errorhandler(AuthError)
    def unauthorized(exc: AuthError) -> tuple[Response, int]:
        response, status = _answer(401, "unauthorized", str(exc))
        response.headers["WWW-Authenticate"] = 'Basic realm="eventgw", Bearer'
        return response, status

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> tuple[Response, int]:
        return _answer(404, "not_found", str(exc))

    @app.errorhandler(Conflict)
    def conflict(exc: Conflict) -> tuple[Response, int]:
        return _answer(409, "conflict", str(exc))

    @app.errorhandler(DeliveryError)
    def undelivered(exc: DeliveryError) -> tuple[Response, int]:
        # Raised where the caller asked for a delivery now (an export run again): the
        # receiving end failed, so a Bad Gateway, in the shape of the delivery's own report.
        return jsonify({"ok": False, "error": str(exc)}), 502

    @app.errorhandler(GatewayError)
    def other(exc: GatewayError) -> tuple[Response, int]:
        return _answer(400, "error", str(exc))

    @app.errorhandler(HTTPException)
    def http(exc: HTTPException) -> tuple[Response, int]:
        name = (exc.name or "error").lower().replace(" ", "_")
        return _answer(exc.code or 500, name, exc.description or name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return _answer(500, "internal", "internal error; the request was not applied")
