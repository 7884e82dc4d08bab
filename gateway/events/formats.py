"""Every rendering of an event: JSON, the generic CSV (both ways), legacy pull CSV and legacy form fields."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.events.model import FIELD_NAMES, TIME_FIELDS


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


def _csv_line(event: Mapping[str, Any]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(to_csv_row(event))
    return out.getvalue().encode("utf-8")


# Every rendering, named, as bytes: what the sinks and file exports write.
_RENDERINGS: tuple[tuple[str, Callable[[Mapping[str, Any]], object]], ...] = (
    ("JSON", lambda event: orjson.dumps(to_json(event))),
    ("CSV", _csv_line),
    ("legacy CSV", lambda event: ",".join(to_legacy_row(event)).encode("utf-8")),
    ("form fields", lambda event: urlencode(to_form(event)).encode("ascii")),
)


def render_problem(event: Mapping[str, Any]) -> str | None:
    """Why some rendering above cannot write ``event``, or None when every one can.

    Ingest refuses such events; this finds one that reached the store another way (an
    older version, a direct write), so that the delivery engine can park it alone.
    """
    for name, render in _RENDERINGS:
        try:
            render(event)
        except Exception as exc:  # whatever the rendering raises names the problem
            return f"cannot be rendered as {name}: {type(exc).__name__}: {exc}"[:500]
    return None
