"""Reading stored events back as event-model dicts (the inverse of ingest's row mapping)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Row, String, type_coerce

from gateway.events import model
from gateway.store.models import Event

# The stored columns that make up an event, in the model's field order (the producer's id
# is stored as ``uid`` because ``id`` is the store's own key). Times and data are selected
# as they come from the driver and converted by to_event: SQLAlchemy's per-value type
# processing costs more than the read itself on the pull, delivery and export paths.
EVENT_COLUMNS: Sequence[ColumnElement[Any]] = tuple(
    type_coerce(Event.__table__.c[name], String) if name in model.TIME_FIELDS or name == "data"
    else Event.__table__.c["uid" if name == "id" else name]
    for name in model.FIELD_NAMES
)
_TIME_NAMES = tuple(name for name in model.FIELD_NAMES if name in model.TIME_FIELDS)
_fromisoformat = datetime.fromisoformat


def to_event(row: Row[Any] | Sequence[Any]) -> model.Event:
    """An event dict from a row selected with EVENT_COLUMNS.

    Fields come in the model's order, and absent ones (an empty ``data`` too) are left
    out, as ``events.to_json`` shows them: a serializer that writes datetimes as ISO 8601
    with a Z gives the JSON form straight from it.
    """
    # EVENT_COLUMNS is built from FIELD_NAMES, so the lengths match without zip's
    # (measurable) strict check.
    event = {name: value for name, value in zip(model.FIELD_NAMES, row) if value is not None}  # noqa: B905
    for name in _TIME_NAMES:
        value = event.get(name)
        if type(value) is str:
            # SQLite holds UTC as fixed-width ISO text: naming the offset in the text costs
            # less than replacing the tzinfo afterwards.
            event[name] = _fromisoformat(value + "+00:00")
        elif value is not None:  # PostgreSQL's driver gives aware datetimes
            event[name] = value.astimezone(timezone.utc)
    data = event.get("data")
    if data is not None:
        if isinstance(data, (str, bytes)):  # psycopg decodes JSON itself; SQLite hands back text
            data = orjson.loads(data)
        if data:
            event["data"] = data
        else:
            del event["data"]
    return event
