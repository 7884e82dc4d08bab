"""Checks of the fields of a destination request, each failing with a ValidationError that names the field."""
from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from gateway.errors import Problem, ValidationError
from gateway.events import model


def problem(field: str, message: str) -> ValidationError:
    """A ValidationError about one field of a management request."""
    return ValidationError([Problem(None, field, message)])


def check_keys(payload: Mapping[str, Any], allowed: Collection[str], kind: str) -> None:
    """Refuse a setting that destinations of ``kind`` do not have."""
    for key in payload:
        if key not in allowed:
            raise problem(key, f"is not a setting of {kind} destinations (they have {', '.join(allowed)})")


def check_events(value: Any) -> list[str]:
    """The event types a destination receives: a non-empty list of known types."""
    if not isinstance(value, list):
        raise problem("events", "must be a non-empty list of event types")
    try:
        types = model.parse_types(value)
    except ValueError as exc:
        raise problem("events", str(exc)) from None
    if not types:  # parse_types skips blank names, so [""] would route nothing
        raise problem("events", "must be a non-empty list of event types")
    return types


def check_number(payload: Mapping[str, Any], key: str, low: float, high: float) -> float:
    """``payload[key]`` as a number from ``low`` to ``high``."""
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise problem(key, f"must be a number from {low:g} to {high:g}")
    return value


def check_whole(payload: Mapping[str, Any], key: str, low: int, high: int) -> int:
    """``payload[key]`` as a whole number from ``low`` to ``high``."""
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise problem(key, f"must be a whole number from {low:g} to {high:g}")
    return value


def check_text(payload: Mapping[str, Any], key: str, *, required: bool = False, limit: int = 1000) -> str | None:
    """``payload[key]`` as a string of at most ``limit`` characters; None when missing or empty (unless
    ``required``)."""
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise problem(key, "is required")
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise problem(key, f"must be a string of at most {limit} characters")
    return value


def check_flag(payload: Mapping[str, Any], key: str) -> bool:
    """``payload[key]`` as true or false."""
    value = payload[key]
    if not isinstance(value, bool):
        raise problem(key, "must be true or false")
    return value


def check_address(value: object, field: str = "email") -> str:
    """``value`` as an email address."""
    try:
        # The event model's own address rule, so recipients and event emails are checked alike.
        return model.check_email(value)
    except ValueError as exc:
        raise ValidationError(str(exc), field) from None
