"""Raw events as a producer sends them, valid unless a test overrides a field, and storing them."""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gateway.events import model
from gateway.ingest import ingest_request
from gateway.runtime import Runtime

OCCURRED_AT = datetime(2026, 11, 24, 10, 15, tzinfo=timezone.utc)
"""When the built events happened (the first of a series)."""


def raw_event(uid: str, etype: str = "OPEN", **fields: Any) -> dict[str, Any]:
    """A valid raw event with producer id ``uid`` and the recipient its type needs; ``fields`` override or add.

    Email types get ``<uid>@example.com``, SMS types a phone number, campaign types no
    recipient, and a click its URL. An unknown ``etype`` is kept as given (and gets an email),
    for tests of its refusal.
    """
    event: dict[str, Any] = {"id": uid, "type": etype, "occurred_at": _iso(OCCURRED_AT)}
    try:
        canonical = model.normalize_type(etype)
    except ValueError:
        canonical = etype
    if canonical in model.SMS_TYPES:
        event["phone"] = "+447700900123"
    elif canonical not in model.CAMPAIGN_TYPES:
        event["email"] = f"{uid}@example.com"
    if canonical == "CLICK":
        event["url"] = "https://example.com/offer"
    return {**event, **fields}


def raw_events(count: int, types: Sequence[str] = ("OPEN",), prefix: str = "e", **fields: Any
               ) -> list[dict[str, Any]]:
    """``count`` raw events ``<prefix>-0``, ``<prefix>-1``, ..., cycling through ``types``, a second apart."""
    return [raw_event(f"{prefix}-{i}", types[i % len(types)], occurred_at=_iso(OCCURRED_AT + timedelta(seconds=i)),
                      **fields) for i in range(count)]


def ingest(runtime: Runtime, account_id: int, raws: list[dict[str, Any]]) -> None:
    """Store ``raws`` for the account, all of them accepted."""
    assert ingest_request(runtime.sessions, account_id, raws).accepted == len(raws)


def write_jsonl(path: Path, records: list[Any]) -> Path:
    """Write ``records`` as JSON Lines (a string is written as the line it is, e.g. a broken one); return ``path``."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
