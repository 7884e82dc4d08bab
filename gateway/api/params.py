"""Request parsing shared by the REST blueprints: ids in paths, the JSON body and query parameters, with
ValidationError naming the parameter."""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

import orjson
from flask import request
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from gateway.api.body import read_body
from gateway.api.context import current_runtime
from gateway.errors import Problem, ValidationError, excerpt
from gateway.events import model

# Ids are 32-bit on PostgreSQL (an int column); a larger one names nothing, on either database.
MAX_ID = 2**31 - 1
MAX_LIMIT = 10_000


class IdConverter(IntegerConverter):
    """``<id:name>`` in a route: a stored row's id, 1 to MAX_ID; any other number is not found (404)."""

    def to_python(self, value: str) -> int:
        number = int(value) if len(value) <= len(str(MAX_ID)) else 0
        if not 1 <= number <= MAX_ID:
            # Not found at once, rather than a failed match: werkzeug would then answer
            # another method's route on the same path with 405.
            raise NotFound(f"no object has the id {excerpt(value)}")
        return number


def refuse_nul_characters() -> None:
    """Refuse a request whose path or query holds a NUL character (no stored text can hold one: PostgreSQL
    refuses it), naming the parameter."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and "\x00" in value:
            raise ValidationError("must not contain NUL characters", name)
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            raise ValidationError("must not contain NUL characters", name.replace("\x00", "\\x00"))


def json_body(fields: type | Collection[str] | Callable[[Mapping[str, Any]], Collection[str]],
              read_only: Mapping[str, str] | None = None, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object (gzip-compressed if Content-Encoding says so), with no NUL character
    in any of its texts and no field but ``fields`` (the keys of the TypedDict the view's ``@operation``
    declares as its body, or the names given, or those a function of the object gives): one of
    ``read_only`` is refused with its advice (what changes it), any other one as not a field, each
    named, rather than silently ignored. With ``optional``, an empty body is an empty object."""
    try:
        text = read_body(current_runtime().settings.max_body_bytes)
        payload = {} if optional and not text.strip() else orjson.loads(text)
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        raise ValidationError("must be a JSON object", "body")
    for name, value in payload.items():
        if _holds_nul(name) or _holds_nul(value):
            raise ValidationError("must not contain NUL characters", name.replace("\x00", "\\x00"))
    read_only = read_only or {}
    if isinstance(fields, type):
        fields = tuple(fields.__annotations__)
    elif callable(fields):
        fields = fields(payload)
    unknown = [Problem(None, name, f"is read-only: {read_only[name]}" if name in read_only
                       else f"is not a field of this request (its fields: {', '.join(fields) or 'none'})")
               for name in payload if name not in fields]
    if unknown:
        raise ValidationError(unknown)
    return payload


def _holds_nul(value: object) -> bool:
    """Whether a parsed JSON value has a NUL character in a text or key anywhere (iteratively: no depth limit)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


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


def limit_param(default: int = 100, most: int = MAX_LIMIT) -> int:
    """Query parameter ``limit`` as a whole number from 0 to ``most`` (``default`` when absent)."""
    limit = request.args.get("limit", str(default)).strip()
    if not (limit.isascii() and limit.isdigit() and len(limit) <= 5 and int(limit) <= most):
        raise ValidationError(f"must be a whole number from 0 to {most}", "limit")
    return int(limit)
