"""Taking events in: parse and validate requests and files, then store events and their queue rows in bulk."""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import BigInteger, Table, bindparam, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import Problem, ValidationError
from gateway.events import formats, model
from gateway.store import queue
from gateway.store.db import in_transaction
from gateway.store.models import Event as EventRow
from gateway.store.models import sqlite_time, utcnow

MAX_PROBLEMS = 100
FILE_CHUNK = 5000
_EVENTS: Table = EventRow.__table__  # type: ignore[assignment]
_COLUMNS = tuple(name for name in model.FIELD_NAMES if name not in ("id",))


@dataclass(frozen=True)
class IngestResult:
    """How many events were stored and how many were already there (same producer id)."""

    accepted: int
    duplicates: int

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(self.accepted + other.accepted, self.duplicates + other.duplicates)


@dataclass(frozen=True)
class FileResult:
    """The outcome of importing one file."""

    lines: int
    stored: IngestResult
    rejected: int
    problems: list[Problem]


# Ids for the events of one request, taken from the events' sequence in one round trip.
_NEW_IDS = text("SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, :n) ORDER BY 1")


def _store_postgresql(session: Session, account_id: int, events: list[model.Event], now: datetime) -> int:
    """Insert new events and their queue rows; returns how many were new."""
    # Requests that share producer ids would deadlock if each inserted them in its own
    # order (each waits on the other's uncommitted unique-index entry). Rows therefore go
    # in sorted by producer id; their ids, taken first, still follow the request's order,
    # which is the order pull and push hand them on in.
    ids = session.execute(_NEW_IDS, {"n": len(events)}).scalars().all()
    rows = sorted(({**{name: event.get(name) for name in _COLUMNS}, "id": event_id, "uid": event["id"],
                    "account_id": account_id, "received_at": now} for event_id, event in zip(ids, events, strict=True)),
                  key=lambda row: row["uid"])
    # A plain executemany (pipelined by psycopg) rather than INSERT ... RETURNING: psycopg
    # re-parses a multi-row RETURNING statement on every call, which costs more than the
    # insert. The rows this call added are those that carry one of the ids it took.
    session.execute(postgresql.insert(_EVENTS).on_conflict_do_nothing(index_elements=["account_id", "uid"]), rows)
    added = _EVENTS.c.id == func.any(bindparam("taken", list(ids), type_=postgresql.ARRAY(BigInteger)))
    queue.enqueue_arrivals(session, added, now)
    return int(session.scalar(select(func.count()).select_from(_EVENTS).where(added)) or 0)


# SQLite is the embedded default and ingest its hottest path: rows go to the driver as
# plain tuples, converted the same way the column types would convert them, because
# SQLAlchemy's per-row parameter processing costs more than the insert itself.
_SQLITE_EVENT_COLUMNS = ("account_id", "uid", "received_at", *_COLUMNS)
_SQLITE_INSERT_EVENTS = (f"INSERT OR IGNORE INTO events ({', '.join(_SQLITE_EVENT_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(_SQLITE_EVENT_COLUMNS))})")
_TIME_POSITIONS = tuple(i for i, name in enumerate(_COLUMNS) if name in model.TIME_FIELDS)
_DATA_POSITION = _COLUMNS.index("data")


def _sqlite_row(account_id: int, received: str, event: model.Event) -> tuple[Any, ...]:
    values: list[Any] = [event.get(name) for name in _COLUMNS]
    for position in _TIME_POSITIONS:
        if values[position] is not None:
            values[position] = sqlite_time(values[position])
    if values[_DATA_POSITION] is not None:
        values[_DATA_POSITION] = orjson.dumps(values[_DATA_POSITION]).decode()
    return (account_id, event["id"], received, *values)


def _store_sqlite(session: Session, account_id: int, events: list[model.Event], now: datetime) -> int:
    """Insert new events and their queue rows with two statements; returns how many were new."""
    received = sqlite_time(now)
    rows = [_sqlite_row(account_id, received, event) for event in events]
    # Every SQLite transaction holds the write lock from its start (BEGIN IMMEDIATE), so
    # the ids above the highest one seen here are exactly the rows this insert adds.
    before = session.execute(select(func.coalesce(func.max(_EVENTS.c.id), 0))).scalar_one()
    connection = session.connection()
    added = connection.exec_driver_sql(_SQLITE_INSERT_EVENTS, rows).rowcount
    queue.enqueue_arrivals_sqlite(session, received, before)
    return int(added)


def store_events(session: Session, account_id: int, events: Sequence[model.Event]) -> IngestResult:
    """Store validated events and a queue row per routed destination, in the caller's transaction.

    An event whose producer id the account already has is counted as a duplicate and
    not stored again (nor queued again).
    """
    if not events:
        return IngestResult(0, 0)
    now = utcnow()
    seen: set[str] = set()
    unique = []
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            unique.append(event)
    store = _store_postgresql if session.get_bind().dialect.name == "postgresql" else _store_sqlite
    added = store(session, account_id, unique, now)
    return IngestResult(added, len(events) - added)


def ingest_request(
    sessions: sessionmaker[Session], account_id: int, raws: Sequence[Mapping[str, Any]]
) -> IngestResult:
    """Validate a whole request and store it in one transaction: every event or none."""
    return store_request(sessions, account_id, model.validate_all(raws, MAX_PROBLEMS))


def store_request(sessions: sessionmaker[Session], account_id: int, events: Sequence[model.Event]) -> IngestResult:
    """Store a request's validated events in one transaction: every event or none (run again
    when a concurrent request with the same producer ids aborted it)."""
    return in_transaction(sessions, lambda session: store_events(session, account_id, events))


def file_format(path: Path, given: str | None = None) -> str:
    """The format of an import file: ``jsonl`` or ``csv``, from ``given`` or the file name."""
    if given:
        if given not in ("jsonl", "csv"):
            raise ValidationError(f"unknown format {given!r}; use jsonl or csv", "format")
        return given
    suffixes = [s.lower() for s in path.suffixes]
    return "csv" if ".csv" in suffixes else "jsonl"


def read_records(lines: Iterable[str], fmt: str) -> Iterator[tuple[int, Mapping[str, Any] | None, str]]:
    """Yield (line number, raw event or None, error text) for each record of a JSONL or CSV stream."""
    if fmt == "csv":
        reader = csv.DictReader(lines)
        for record in reader:
            yield reader.line_num, formats.from_csv_record(record), ""
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, orjson.loads(line), ""
        except (ValueError, RecursionError) as exc:
            yield number, None, f"invalid JSON: {exc}"


def _validated(
    lines: Iterable[str], fmt: str
) -> Iterator[tuple[int, model.Event | None, list[Problem], Mapping[str, Any] | None]]:
    for number, raw, error in read_records(lines, fmt):
        if raw is None:
            yield number, None, [Problem(f"line {number}", None, error)], None
            continue
        event, problems = model.validate(raw, f"line {number}")
        yield number, event, problems, raw


def ingest_file(
    sessions: sessionmaker[Session],
    account_id: int,
    path: Path,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    rejects: IO[str] | None = None,
    progress: Callable[[int], object] | None = None,
) -> FileResult:
    """Import a JSONL or CSV file of any size in constant memory.

    Without ``skip_invalid`` the file is checked first and nothing is stored if any
    line is invalid (a ValidationError lists them). With it, valid lines are stored
    and each invalid one is written to ``rejects`` as JSON with its errors. Storing is
    committed in chunks; since ingest is idempotent, re-running an interrupted import
    completes it without storing anything twice.
    """
    fmt = file_format(path, fmt)
    if not skip_invalid:
        problems: list[Problem] = []
        with open(path, encoding="utf-8-sig", newline="") as handle:
            for _, _, found, _ in _validated(handle, fmt):
                if found and len(problems) < MAX_PROBLEMS:
                    problems.extend(found[: MAX_PROBLEMS - len(problems)])
        if problems:
            raise ValidationError(problems)
    total = IngestResult(0, 0)
    lines = rejected = 0
    kept: list[Problem] = []
    chunk: list[model.Event] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for number, event, found, raw in _validated(_counting(handle, progress), fmt):
            lines += 1
            if found:
                rejected += 1
                if len(kept) < MAX_PROBLEMS:
                    kept.extend(found)
                if rejects is not None:
                    rejects.write(json.dumps({"line": number, "record": raw,
                                              "errors": [p.as_dict() for p in found]}, default=str) + "\n")
                continue
            chunk.append(event)  # type: ignore[arg-type]
            if len(chunk) >= FILE_CHUNK:
                total += _store_chunk(sessions, account_id, chunk)
                chunk = []
        total += _store_chunk(sessions, account_id, chunk)
    return FileResult(lines, total, rejected, kept)


def _store_chunk(sessions: sessionmaker[Session], account_id: int, chunk: list[model.Event]) -> IngestResult:
    if not chunk:
        return IngestResult(0, 0)
    return in_transaction(sessions, lambda session: store_events(session, account_id, chunk))


def _counting(handle: Iterable[str], progress: Callable[[int], object] | None) -> Iterator[str]:
    """The lines of ``handle``, reporting the bytes of each to ``progress``."""
    for line in handle:
        if progress is not None:
            progress(len(line.encode("utf-8")))
        yield line
