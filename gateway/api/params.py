"""Request parsing shared by the REST blueprints: the JSON body and query parameters, with ValidationError naming
the parameter."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request

from gateway.errors import Problem, ValidationError
from gateway.events import model


def json_body() -> dict[str, Any]:
    """The request's JSON object."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ValidationError("must be a JSON object", "body")
    return payload


def text_field(payload: dict[str, Any], name: str) -> str:
    """Field ``name`` of a JSON body, which must be a string."""
    value = payload.get(name)
    if not isinstance(value, str):
        raise ValidationError("is required, as a string", name)
    return value


def flag(name: str) -> bool:
    """Query parameter ``name`` as a yes/no flag (1/0, true/false, yes/no); false when absent."""
    value = request.args.get(name, "false").strip().lower()
    if value not in ("1", "0", "true", "false", "yes", "no"):
        raise ValidationError(f"{value!r} is not true or false", name)
    return value in ("1", "true", "yes")


def time_param(name: str) -> datetime:
    """Required query parameter ``name`` as a time, as events give them."""
    value = request.args.get(name)
    if not value:
        raise ValidationError("is required", name)
    try:
        return model.parse_time(value)
    except ValueError as exc:
        raise ValidationError([Problem(None, name, str(exc))]) from None


def limit_param(default: int = 100) -> int:
    """Query parameter ``limit`` as a whole number (``default`` when absent)."""
    limit = request.args.get("limit", str(default))
    if not limit.isdigit():
        raise ValidationError("must be a whole number", "limit")
    return int(limit)
