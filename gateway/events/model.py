"""The one model of an event: types, fields and validation.

Everything else (ingest, the store, pull, SOAP types, sinks) reads its field list and
type names from here, so a field added here appears everywhere at once.
"""
from __future__ import annotations

import enum
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.errors import Problem, ValidationError

if sys.version_info >= (3, 11):
    _fromisoformat = datetime.fromisoformat
else:
    # Python 3.10 reads only what isoformat() writes (no "Z", no basic format); the backport,
    # a dependency there, reads ISO 8601 as 3.11 and later do.
    from backports.datetime_fromisoformat import datetime_fromisoformat as _fromisoformat


class EventType(str, enum.Enum):
    """The event types: the 11 triggers of the legacy platform plus COMPLAINT."""

    DELIVERYSTART = "DELIVERYSTART"
    DELIVERY = "DELIVERY"
    OPEN = "OPEN"
    CLICK = "CLICK"
    BOUNCE = "BOUNCE"
    SOFTBOUNCE = "SOFTBOUNCE"
    BLOCKED = "BLOCKED"
    OPTIN = "OPTIN"
    OPTOUT = "OPTOUT"
    SMSOPTOUT = "SMSOPTOUT"
    SMSFAILED = "SMSFAILED"
    COMPLAINT = "COMPLAINT"


ALL_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
SMS_TYPES = frozenset({"SMSOPTOUT", "SMSFAILED"})
# Campaign-level events of the legacy platform: they describe a send, not one recipient.
CAMPAIGN_TYPES = frozenset({"DELIVERYSTART", "DELIVERY"})
BOUNCE_TYPES = frozenset({"BOUNCE", "SOFTBOUNCE", "BLOCKED"})
OPT_TYPES = frozenset({"OPTIN", "OPTOUT"})

# Names other platforms use for the same events (lower-case keys).
TYPE_ALIASES: dict[str, str] = {
    "hard": "BOUNCE",
    "hardbounce": "BOUNCE",
    "hard_bounce": "BOUNCE",
    "bounce": "BOUNCE",
    "soft": "SOFTBOUNCE",
    "soft_bounce": "SOFTBOUNCE",
    "unsubscribe": "OPTOUT",
    "unsub": "OPTOUT",
    "subscribe": "OPTIN",
    "signup": "OPTIN",
    "sent": "DELIVERY",
    "delivered": "DELIVERY",
    "complaint": "COMPLAINT",
    "spam": "COMPLAINT",
    "blocked": "BLOCKED",
    "open": "OPEN",
    "opened": "OPEN",
    "click": "CLICK",
    "clicked": "CLICK",
}

MAX_TEXT = 1000
MAX_URL = 2048
MAX_DATA_BYTES = 16_384
# Deeper data cannot be written by every rendering (orjson stops at 255 levels), and no real
# producer nests this deep: refused at ingest rather than failing at every delivery.
MAX_DATA_DEPTH = 32


@dataclass(frozen=True)
class Field:
    """One field of the event model.

    ``kind`` is one of ``text``, ``time``, ``url``, ``email``, ``phone``, ``object``;
    ``types`` limits the field to some event types (None: every type).
    """

    name: str
    kind: str
    doc: str
    types: frozenset[str] | None = None
    max_len: int = MAX_TEXT


FIELDS: tuple[Field, ...] = (
    Field("id", "text", "the producer's event id, unique per account", max_len=200),
    Field("type", "text", "the event type"),
    Field("occurred_at", "time", "when it happened"),
    Field("email", "email", "recipient email address"),
    Field("phone", "phone", "recipient phone number (SMS types)"),
    Field("message_id", "text", "message or campaign id"),
    Field("message_name", "text", "message or campaign name"),
    Field("list_id", "text", "list or profile id"),
    Field("delivered_at", "time", "when the message was sent"),
    Field("url", "url", "the clicked URL", frozenset({"CLICK"}), MAX_URL),
    Field("category", "text", "bounce category", BOUNCE_TYPES),
    Field("reason", "text", "bounce reason", BOUNCE_TYPES, 4000),
    Field("error", "text", "SMS failure text", frozenset({"SMSFAILED"}), 4000),
    Field("source", "text", "where the opt-in or opt-out came from (form, link, api, ...)", OPT_TYPES),
    Field("data", "object", "any further fields the producer sent"),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
TIME_FIELDS = frozenset(f.name for f in FIELDS if f.kind == "time")

Event = dict[str, Any]
"""A validated event: the field names above as keys, times as aware UTC datetimes."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9]{5,20}$")
_UNIX = re.compile(r"\d{9,11}(\.\d+)?")
_PHONE_SEPARATORS = str.maketrans("", "", " -().")


def normalize_type(value: object) -> str:
    """Return the canonical type name for ``value`` (case-insensitive, aliases allowed).

    Raises ``ValueError`` naming the accepted types when it is unknown.
    """
    if not isinstance(value, str):
        raise ValueError("must be a string")
    upper = value.strip().upper()
    if upper in EventType.__members__:
        return upper
    alias = TYPE_ALIASES.get(value.strip().lower())
    if alias:
        return alias
    raise ValueError(f"unknown event type {value!r}; expected one of {', '.join(ALL_TYPES)}")


def parse_types(value: str | Iterable[str] | None) -> list[str]:
    """Parse a comma-separated string or a list of type names into canonical names (no repeats)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        name = normalize_type(item)
        if name not in out:
            out.append(name)
    return out


def parse_time(value: object) -> datetime:
    """Parse an ISO 8601 time with a zone, or Unix seconds, into an aware UTC datetime."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, bool):
        raise ValueError("must be an ISO 8601 time or Unix seconds")
    elif isinstance(value, (int, float)):
        return _from_unix(value)
    elif isinstance(value, str):
        text = value.strip()
        if _UNIX.fullmatch(text):
            return _from_unix(float(text))
        try:
            parsed = _fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time or Unix seconds") from None
    else:
        raise ValueError("must be an ISO 8601 time or Unix seconds")
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (add Z or an offset such as +01:00)")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range") from None


def _from_unix(seconds: float) -> datetime:
    # Out-of-range, infinite and NaN seconds raise OverflowError, OSError or ValueError.
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{seconds!r} is not a time in range") from None


def _check_text(field: Field, value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("must be a string")
    value = value.strip()
    if "\x00" in value:
        # PostgreSQL cannot store NUL in text; refusing it keeps both stores alike.
        raise ValueError("must not contain NUL characters")
    if len(value) > field.max_len:
        raise ValueError(f"is longer than {field.max_len} characters")
    return value


def _check_url(field: Field, value: object) -> str:
    text = _check_text(field, value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{text!r} is not an http or https URL")
    return text


def check_url(value: object) -> str:
    """``value`` as an http or https URL; ValueError saying why not."""
    return _check_url(FIELDS_BY_NAME["url"], value)


def _check_email(field: Field, value: object) -> str:
    text = _check_text(field, value)
    if not _EMAIL.match(text):
        raise ValueError(f"{text!r} is not an email address")
    return text


def check_email(value: object) -> str:
    """``value`` as an email address; ValueError saying why not."""
    return _check_email(FIELDS_BY_NAME["email"], value)


def _check_phone(field: Field, value: object) -> str:
    text = _check_text(field, value).translate(_PHONE_SEPARATORS)
    if not _PHONE.match(text):
        raise ValueError(f"{value!r} is not a phone number")
    return text


# What JSON can carry and every rendering can write: orjson (webhooks, JSON lines) stops at
# 64-bit integers and refuses lone surrogates; PostgreSQL's JSON refuses NaN and Infinity.
MIN_DATA_INT = -(2**63)
MAX_DATA_INT = 2**64 - 1
_FLAT = (str, int, bool, type(None))


def _plain_text(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where(path: tuple[str, ...]) -> str:
    shown = ".".join(path[:6]) + (".…" if len(path) > 6 else "")
    return f" (at {shown[:80]})" if path else ""


def _data_problem(value: dict[str, Any]) -> str | None:
    """Why ``value`` cannot be stored and rendered everywhere, or None; walked without recursion."""
    pending: list[tuple[object, tuple[str, ...]]] = [(value, ())]
    while pending:
        item, path = pending.pop()
        if isinstance(item, dict):
            if len(path) >= MAX_DATA_DEPTH:
                return f"nests deeper than {MAX_DATA_DEPTH} levels"
            for key, child in item.items():
                if type(key) is not str or not _plain_text(key):
                    return f"has a key that is not a text{_where(path)}"
                pending.append((child, (*path, key)))
        elif isinstance(item, list):
            if len(path) >= MAX_DATA_DEPTH:
                return f"nests deeper than {MAX_DATA_DEPTH} levels"
            pending.extend((child, (*path, str(index))) for index, child in enumerate(item))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not MIN_DATA_INT <= item <= MAX_DATA_INT:
                return f"holds an integer beyond 64 bits{_where(path)}"
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return f"must not contain NaN or Infinity{_where(path)}"
        elif isinstance(item, str):
            if not _plain_text(item):
                return f"holds text that is not valid Unicode (a lone surrogate){_where(path)}"
        else:
            return f"holds a value that is not JSON ({type(item).__name__}){_where(path)}"
    return None


def _check_object(field: Field, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    # The common case, a flat object of short texts and numbers, is measured without encoding it.
    size = 0
    for key, item in value.items():
        kind = type(item)
        if (type(key) is not str or kind not in _FLAT or not key.isascii()
                or (kind is str and not item.isascii())
                or (kind is int and not MIN_DATA_INT <= item <= MAX_DATA_INT)):
            break
        size += len(key) + (len(item) if kind is str else 8) + 6
    else:
        if size * 6 <= MAX_DATA_BYTES:  # even if every character needed a \uXXXX escape
            return value
    reason = _data_problem(value)
    if reason is not None:
        raise ValueError(reason)
    size = len(orjson.dumps(value))
    if size > MAX_DATA_BYTES:
        raise ValueError(f"is larger than {MAX_DATA_BYTES} bytes")
    return value


def _check_time(field: Field, value: object) -> datetime:
    return parse_time(value)


_CHECKS: dict[str, Callable[[Field, object], Any]] = {
    "text": _check_text,
    "time": _check_time,
    "url": _check_url,
    "email": _check_email,
    "phone": _check_phone,
    "object": _check_object,
}
_VALIDATORS: dict[str, tuple[Field, Callable[[Field, object], Any]]] = {
    field.name: (field, _CHECKS[field.kind]) for field in FIELDS if field.name != "type"
}


def validate(raw: object, record: int | str) -> tuple[Event | None, list[Problem]]:
    """Validate one raw event; return the normalised event, or None and every problem found.

    Keys that are not fields of the model are kept in ``data``.
    """
    if not isinstance(raw, Mapping):
        return None, [Problem(record, None, "must be a JSON object")]
    problems: list[Problem] = []
    event: Event = {}
    extra: dict[str, Any] = {}
    etype: str | None = None
    try:
        etype = event["type"] = normalize_type(raw.get("type"))
    except ValueError as exc:
        problems.append(Problem(record, "type", str(exc) if raw.get("type") is not None else "is required"))
    for key, value in raw.items():
        spec = _VALIDATORS.get(key)
        if spec is None:
            if key != "type":
                extra[key] = value
            continue
        if value is None or value == "":
            continue
        field, check = spec
        if field.types is not None and etype is not None and etype not in field.types:
            extra[key] = value
            continue
        # Fast paths for the common shapes (plain text, ISO time with a zone); anything
        # else goes through the full check, which also words the error.
        if check is _check_text and type(value) is str:
            value = value.strip()
            if len(value) <= field.max_len and "\x00" not in value:
                event[key] = value
                continue
        elif check is _check_time and type(value) is str:
            try:
                parsed = _fromisoformat(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                try:
                    event[key] = parsed.astimezone(timezone.utc)
                    continue
                except OverflowError:
                    pass
        try:
            event[key] = check(field, value)
        except ValueError as exc:
            problems.append(Problem(record, key, str(exc)))
    if extra and not any(p.field == "data" for p in problems):
        try:
            event["data"] = _check_object(FIELDS_BY_NAME["data"], {**extra, **event.get("data", {})})
        except ValueError as exc:
            problems.append(Problem(record, "data", str(exc)))
    if "id" not in event or "occurred_at" not in event:
        problems.extend(Problem(record, name, "is required") for name in ("id", "occurred_at")
                        if name not in event and not any(p.field == name for p in problems))
    if etype is not None:
        missing = _missing_for_type(event, etype)
        if missing:
            problems.extend(Problem(record, name, f"is required for {etype}") for name in missing
                            if not any(p.field == name for p in problems))
    return (None, problems) if problems else (event, [])


def _missing_for_type(event: Event, etype: str) -> tuple[str, ...]:
    """The fields this type needs that the event lacks: the recipient (email, or phone for
    SMS types; none for campaign-level types) and CLICK's url."""
    needed = _REQUIRED_BY_TYPE[etype]
    return tuple(name for name in needed if name not in event) if needed else ()


_REQUIRED_BY_TYPE: dict[str, tuple[str, ...]] = {
    etype: (() if etype in CAMPAIGN_TYPES else ("phone",) if etype in SMS_TYPES else ("email",))
    + (("url",) if etype == "CLICK" else ())
    for etype in ALL_TYPES
}


def validate_all(raws: Iterable[Mapping[str, Any]], max_problems: int = 100) -> list[Event]:
    """Validate a whole request: every event or none; raises ValidationError listing the problems."""
    events: list[Event] = []
    problems: list[Problem] = []
    for index, raw in enumerate(raws):
        event, found = validate(raw, index)
        if found:
            problems.extend(found)
        elif event is not None:
            events.append(event)
    if problems:
        raise ValidationError(problems[:max_problems])
    return events
