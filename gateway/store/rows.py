"""Reading stored events back as event-model dicts (the inverse of ingest's row mapping)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Row

from gateway import events as model
from gateway.store.models import Event

# The stored columns that make up an event, in the model's field order; the producer's
# id is stored as ``uid`` because ``id`` is the store's own key.
EVENT_COLUMNS: Sequence[Column[Any]] = tuple(
    Event.__table__.c["uid" if name == "id" else name] for name in model.FIELD_NAMES  # type: ignore[attr-defined]
)


def to_event(row: Row[Any] | Sequence[Any]) -> model.Event:
    """An event dict from a row selected with EVENT_COLUMNS first (absent fields left out)."""
    return {name: value for name, value in zip(model.FIELD_NAMES, row, strict=False) if value is not None}
