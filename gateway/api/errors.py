"""Maps the gateway's errors, and the HTTP server's own refusals, to JSON HTTP answers, in one place; never a
stack trace."""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from gateway.errors import (
    AuthError,
    Conflict,
    DeliveryError,
    GatewayError,
    NotFound,
    Problem,
    TooLarge,
    Unsupported,
    ValidationError,
    shorten,
)

log = logging.getLogger(__name__)


def _answer(status: int, error: str, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": error, "message": shorten(message), **extra}), status


def too_large_problem(limit: int) -> Problem:
    """The problem of a request body over ``limit`` bytes (max_body_bytes)."""
    return Problem(None, "body", f"is larger than the limit of {limit} bytes (max_body_bytes)")


def refusal(status: int, reason: str, detail: str, body_limit: int) -> dict[str, object]:
    """The JSON answer to a request the HTTP server refuses before the application sees it (a body over
    ``body_limit``: 413; a malformed request)."""
    if status == 413:
        problem = too_large_problem(body_limit)
        return {"error": "too_large", "message": str(problem), "problems": [problem.as_dict()]}
    return {"error": reason.lower().replace(" ", "_"), "message": shorten(f"{reason}: {detail}")}


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(ValidationError)
    def invalid(exc: ValidationError) -> tuple[Response, int]:
        status, error = (413, "too_large") if isinstance(exc, TooLarge) else (
            (415, "unsupported_media_type") if isinstance(exc, Unsupported) else (400, "invalid"))
        return _answer(status, error, str(exc), problems=[p.as_dict() for p in exc.problems])

    @app.errorhandler(RequestEntityTooLarge)
    def over_limit(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        return invalid(TooLarge(too_large_problem(app.config["MAX_CONTENT_LENGTH"])))

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
