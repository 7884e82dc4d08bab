"""The one model of an event: types, fields, validation and every rendering (JSON, CSV, form, legacy CSV).

Everything else (ingest, the store, pull, SOAP types, sinks) reads its field list and
type names from here, so a field added here appears everywhere at once.
"""
from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.errors import Problem, ValidationError


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
            parsed = datetime.fromisoformat(text)
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


_FLAT = (str, int, bool, type(None))


def _check_object(field: Field, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    # The common case, a flat object of strings and numbers, is measured without encoding it.
    size = 0
    for key, item in value.items():
        if type(key) is not str or type(item) not in _FLAT:
            break
        size += len(key) + (len(item) if type(item) is str else 8) + 6
    else:
        if size * 6 <= MAX_DATA_BYTES:  # even if every character needed a \uXXXX escape
            return value
    try:
        # PostgreSQL's JSON refuses NaN and Infinity, which Python's json reads and writes.
        size = len(json.dumps(value, default=str, allow_nan=False))
    except ValueError:
        raise ValueError("must not contain NaN or Infinity") from None
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


def validate(raw: Mapping[str, Any], record: int | str) -> tuple[Event | None, list[Problem]]:
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
                parsed = datetime.fromisoformat(value)
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


def unix(value: datetime | None) -> str:
    """Unix seconds as text, as the legacy formats write times ('' for none)."""
    return "" if value is None else str(int(value.timestamp()))


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, or None."""
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:  # stored times already are; skip the conversion then
        value = value.astimezone(timezone.utc)
    return value.isoformat()[:-6] + "Z"


def to_json(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as it appears on the JSON APIs (times as ISO 8601, absent fields left out)."""
    out: dict[str, Any] = {}
    for name in FIELD_NAMES:
        value = event.get(name)
        if value is None or value == {}:
            continue
        out[name] = iso(value) if name in TIME_FIELDS else value
    return out


CSV_COLUMNS: tuple[str, ...] = FIELD_NAMES
"""Columns of the generic CSV (file export, email attachment, `gateway pull --out`)."""


def to_csv_row(event: Mapping[str, Any]) -> list[str]:
    """The event as one row of the generic CSV, in CSV_COLUMNS order."""
    row: list[str] = []
    for name in CSV_COLUMNS:
        value = event.get(name)
        if value is None:
            row.append("")
        elif name in TIME_FIELDS:
            row.append(iso(value) or "")
        elif name == "data":
            row.append(json.dumps(value, separators=(",", ":"), sort_keys=True) if value else "")
        else:
            row.append(str(value))
    return row


def from_csv_record(record: Mapping[str, str]) -> dict[str, Any]:
    """Turn one CSV record (header names as keys) into a raw event.

    A `data` column may hold a JSON object; `data.x` columns go into data."""
    raw: dict[str, Any] = {}
    data: dict[str, Any] = {}
    for key, value in record.items():
        if key is None or value is None or value == "":
            continue
        if key == "data":
            try:
                # orjson, as for JSON bodies and JSON Lines: the store writes data with orjson,
                # so integers beyond 64 bits must arrive as floats here too, not as ints.
                loaded = orjson.loads(value)
            except ValueError:
                loaded = value
            if isinstance(loaded, dict):
                data.update(loaded)
            else:
                raw["data"] = loaded
        elif key.startswith("data."):
            data[key[5:]] = value
        else:
            raw[key] = value
    if data and "data" not in raw:  # a `data` column that is not an object stays, to be refused
        raw["data"] = data
    return raw


# The getters of legacy CSV columns return the cell's text: a 10,000-event pull calls them
# some 60,000 times, so each does its whole job in one call.


def _data(key: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda event: str((event.get("data") or {}).get(key, ""))


def _field(name: str) -> Callable[[Mapping[str, Any]], str]:
    if name in TIME_FIELDS:
        return lambda event: unix(event.get(name))
    return lambda event: event.get(name) or ""  # text fields of a valid event are str


def _recipient(event: Mapping[str, Any]) -> str:
    return event.get("email") or event.get("phone") or ""


def _message_type(event: Mapping[str, Any]) -> str:
    return str((event.get("data") or {}).get("message_type") or ("SMS" if event.get("phone") else "EMAIL"))


_Column = tuple[str, Callable[[Mapping[str, Any]], str]]
_TYPE = ("type", _field("type"))
_DELIVERY_COLUMNS: list[_Column] = [
    _TYPE,
    ("profile", _data("profile")),
    ("messageType", _message_type),
    ("messageName", _field("message_name")),
    ("deliveryId", _field("message_id")),
    ("listNames", _field("list_id")),
    ("deliveryScheduledDate", _data("scheduled_at")),
    ("deliveryStartDate", _field("delivered_at")),
]
_BOUNCE_COLUMNS: list[_Column] = [
    _TYPE, ("email", _field("email")), ("messageName", _field("message_name")),
    ("deliveryDate", _field("delivered_at")), ("eventDate", _field("occurred_at")),
    ("reason", _field("reason")), ("category", _field("category")),
]
_OPT_COLUMNS: list[_Column] = [
    _TYPE, ("email", _field("email")), ("mobile", _field("phone")), ("eventDate", _field("occurred_at")),
    ("listName", _field("list_id")), ("source", _field("source")),
]
_SMS_COLUMNS: list[_Column] = [
    _TYPE, ("mobile", _field("phone")), ("messageName", _field("message_name")),
    ("deliveryDate", _field("delivered_at")), ("eventDate", _field("occurred_at")),
]

# Per-type columns of the legacy pull CSV. OPEN's and CLICK's header strings are the
# documented ones, verbatim (spacing and casing included); the rest follow the field
# names the legacy platform uses in its HTTP and FTP payloads. Times are Unix seconds.
LEGACY_COLUMNS: dict[str, tuple[str, list[_Column]]] = {
    "DELIVERYSTART": (",".join(c[0] for c in _DELIVERY_COLUMNS), _DELIVERY_COLUMNS),
    "DELIVERY": (
        ",".join(c[0] for c in _DELIVERY_COLUMNS) + ",deliveryCompleteDate,emailsSent",
        _DELIVERY_COLUMNS + [("deliveryCompleteDate", _field("occurred_at")), ("emailsSent", _data("emails_sent"))],
    ),
    "OPEN": (
        "type, email, messageName, deliveryDate",
        [_TYPE, ("email", _recipient), ("messageName", _field("message_name")),
         ("deliveryDate", _field("delivered_at"))],
    ),
    "CLICK": (
        "type,email,Message Name,Delivery Date,Click Url,Click Date",
        [
            _TYPE, ("email", _recipient), ("Message Name", _field("message_name")),
            ("Delivery Date", _field("delivered_at")), ("Click Url", _field("url")),
            ("Click Date", _field("occurred_at")),
        ],
    ),
    "BOUNCE": (",".join(c[0] for c in _BOUNCE_COLUMNS), _BOUNCE_COLUMNS),
    "SOFTBOUNCE": (",".join(c[0] for c in _BOUNCE_COLUMNS), _BOUNCE_COLUMNS),
    "BLOCKED": (",".join(c[0] for c in _BOUNCE_COLUMNS), _BOUNCE_COLUMNS),
    "OPTIN": (",".join(c[0] for c in _OPT_COLUMNS), _OPT_COLUMNS),
    "OPTOUT": (",".join(c[0] for c in _OPT_COLUMNS), _OPT_COLUMNS),
    "SMSOPTOUT": (",".join(c[0] for c in _SMS_COLUMNS), _SMS_COLUMNS),
    "SMSFAILED": (",".join(c[0] for c in _SMS_COLUMNS) + ",error", _SMS_COLUMNS + [("error", _field("error"))]),
    "COMPLAINT": (
        "type,email,messageName,deliveryDate,eventDate",
        [_TYPE, ("email", _field("email")), ("messageName", _field("message_name")),
         ("deliveryDate", _field("delivered_at")), ("eventDate", _field("occurred_at"))],
    ),
}


def legacy_header(etype: str) -> str:
    """The legacy pull CSV header string (the `eventMeta` value) of a type."""
    return LEGACY_COLUMNS[etype][0]


def to_legacy_row(event: Mapping[str, Any]) -> list[str]:
    """The event as one row of the legacy pull CSV; its first column is the type."""
    return [cell(event) for _, cell in LEGACY_COLUMNS[event["type"]][1]]


# Form field names of the legacy HTTP POST ("POST data array"), with their inconsistent
# casing as documented; fields without a documented name use the model's name.
_FORM_NAMES: dict[str, str] = {
    "type": "type",
    "occurred_at": "Event_date",
    "email": "email",
    "phone": "mobile",
    "message_name": "messageName",
    "delivered_at": "deliveryDate",
    "message_id": "Delivery_ID",
    "list_id": "List_ID",
    "url": "clickUrl",
    "category": "category",
    "reason": "reason",
    "error": "error",
    "source": "source",
    "id": "eventId",
}


def to_form(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The event as legacy form fields (a list of pairs, in a stable order; data keys last)."""
    fields: list[tuple[str, str]] = []
    for name in FIELD_NAMES:
        if name == "data":
            continue
        value = event.get(name)
        if value is None:
            continue
        fields.append((_FORM_NAMES[name], unix(value) if name in TIME_FIELDS else str(value)))
    for key, value in sorted((event.get("data") or {}).items()):
        if isinstance(value, list):
            fields.extend((f"{key}[]", str(item)) for item in value)
        else:
            fields.append((key, value if isinstance(value, str) else json.dumps(value)))
    return fields
