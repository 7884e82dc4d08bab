"""File destinations: each period's events become one file, uploaded atomically to FTP, FTPS or SFTP.

A destination's periods follow each other without overlap: each starts where the last one
ended (``file_periods`` records them; without ``empty_files``, periods without events are
skipped) and ends at the next cut time of its plan, or earlier when the destination is
flushed. A queue row of a file destination waits unassigned until the period it arrived in
(its ``due_at``) has closed; then the exporter *cuts* the period: every unassigned row that
arrived before the period's end is given the period's lease id
(``file:<destination>:<start>``). From then on the period's file is exactly the rows with
that lease id, so a retry, a crashed exporter's successor and ``gateway export`` all upload
the same file, no event is in two files, and none is left out. A period is cut once; rows
that arrive late (their transaction committed after the cut) go into the next period cut. A
daily destination (by default) also cuts and uploads periods without events, as empty files.

Every period has a name of its own (``gateway.destinations.file_names``), recorded when it is
uploaded; an upload that would replace another period's file is refused. Events stream from
the store into a temporary file line by line, so memory does not grow with the size of a
period. Failures, retries with backoff and deactivation are the delivery outcomes'
(``outcomes.settle_failure``).
"""
from __future__ import annotations

import csv
import gzip
import io
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO
from urllib.parse import urlencode

import orjson
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.delivery import packing
from gateway.delivery.outcomes import OnDeactivate, park_unrenderable, settle_failure, settle_success
from gateway.destinations import outbound, routing
from gateway.destinations.checks import problem
from gateway.destinations.file_names import NameFields
from gateway.destinations.files import FilePlan, Period
from gateway.destinations.kinds import FILE_KINDS, file_settings
from gateway.errors import Conflict, DeliveryError, NotFound
from gateway.events import formats, model
from gateway.runtime import Runtime
from gateway.store import queue
from gateway.store.models import Account, Attempt, Destination, FilePeriod, QueueItem, utcnow
from gateway.store.queue import PENDING, Lease, events_behind
from gateway.store.rows import to_event
from sinks.base import Receipt
from sinks.ftp import FileTarget, uploader_for

log = logging.getLogger(__name__)

LEASE_PREFIX = "file:"
# A period's rows stay leased this long while its file is written and uploaded. A day of a
# busy account takes minutes, and a lease that ran out mid-upload would only make a second
# exporter upload the same file again (harmless: same rows, atomic rename), so be generous.
EXPORT_LEASE_SECONDS = 3600
READ_CHUNK = 5000
# How often a destination with nothing due is looked at anyway: picks up periods that
# another process failed or abandoned, which this one has not seen.
RECHECK_SECONDS = 300.0
# A period is cut this long after it ends, so that rows of its last moments whose
# transactions are still committing make it into its file rather than the next one.
CUT_GRACE_SECONDS = 5.0
GZIP_LEVEL = 6
# Lease ids name a period by its start: to the minute, or to the second for one a flush began.
_MINUTE, _SECOND = "%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M:%SZ"


def lease_id(destination_id: int, period: Period) -> str:
    """The lease id that names a destination's period: ``file:<destination>:<start, UTC>``."""
    return f"{LEASE_PREFIX}{destination_id}:{period.start.strftime(_SECOND if period.start.second else _MINUTE)}"


def _lease_range(destination_id: int) -> tuple[str, str]:
    prefix = f"{LEASE_PREFIX}{destination_id}:"
    return prefix, prefix[:-1] + ";"  # ';' follows ':', so [prefix, end) is every lease id of the destination


def _period_start(lease: str) -> datetime:
    stamp = lease.split(":", 2)[2]
    return datetime.strptime(stamp, _SECOND if stamp.count(":") == 2 else _MINUTE).replace(tzinfo=timezone.utc)


# --- the lines of a file


def _form_line(event: model.Event) -> bytes:
    return urlencode(formats.to_form(event)).encode("ascii") + b"\n"  # percent-encoded: plain ASCII


def _json_line(event: model.Event) -> bytes:
    return orjson.dumps(formats.to_json(event), option=orjson.OPT_APPEND_NEWLINE)


_LINES: dict[str, Callable[[model.Event], bytes]] = {"form": _form_line, "jsonl": _json_line}


def write_lines(events: Iterable[model.Event], out: IO[bytes], line_format: str,
                unrenderable: list[tuple[str, str]] | None = None) -> int:
    """Write one UTF-8 line per event (CSV: a header first); returns how many events were written.

    With ``unrenderable``, an event no line can be made of is left out and listed there as
    (producer id, why), to be parked alone; without, its error ends the file.
    """
    count = 0
    if line_format == "csv":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(formats.CSV_COLUMNS)
        for event in events:
            try:
                writer.writerow(formats.to_csv_row(event))  # a row is encoded whole before any of it is written
            except Exception as exc:
                _left_out(event, exc, unrenderable)
                continue
            count += 1
        text.detach()  # flushes, and leaves ``out`` to its owner
        return count
    render = _LINES[line_format]
    for event in events:
        try:
            line = render(event)
        except Exception as exc:
            _left_out(event, exc, unrenderable)
            continue
        out.write(line)
        count += 1
    return count


def _left_out(event: model.Event, error: Exception, unrenderable: list[tuple[str, str]] | None) -> None:
    if unrenderable is None:
        raise error
    unrenderable.append((str(event.get("id")), f"cannot be written as a line: {type(error).__name__}: {error}"[:500]))


@contextmanager
def _open_file(path: Path, compress: bool) -> Iterator[IO[bytes]]:
    with open(path, "wb", buffering=1 << 20) as raw:
        if not compress:
            yield raw
            return
        # No name and no time in the gzip header: the same rows give the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL) as packed:
            yield packed  # type: ignore[misc]


def write_file(events: Iterable[model.Event], path: Path, plan: FilePlan,
               unrenderable: list[tuple[str, str]] | None = None) -> int:
    """Write a period's file (gzip-compressed if the plan says so); returns how many events it holds."""
    with _open_file(path, plan.gzip) as out:
        return write_lines(events, out, plan.line_format, unrenderable)


def period_events(runtime: Runtime, destination_id: int, lease: str) -> Generator[model.Event, None, None]:
    """The events of a cut period in arrival order, streamed (a server-side cursor on PostgreSQL).

    Read-only, so on SQLite it reads a snapshot and never holds ingest or delivery up.
    """
    query = events_behind(_held_by(destination_id, lease))
    with runtime.read_sessions() as session:
        for row in session.execute(query, execution_options={"yield_per": READ_CHUNK}):
            yield to_event(row)


# --- the record of periods


@dataclass(frozen=True)
class PeriodRecord:
    """A cut period as its upload needs it (read in one transaction, used outside it)."""

    id: int
    lease: str
    period: Period
    sequence: int
    event_count: int
    name: str | None

    @classmethod
    def of(cls, row: FilePeriod) -> PeriodRecord:
        """The record of a stored period."""
        period = Period(row.starts_at, row.ends_at)
        return cls(row.id, lease_id(row.destination_id, period), period, row.sequence, row.event_count, row.name)


def _last_cut(session: Session, destination_id: int) -> datetime | None:
    """The start of the destination's latest period cut before periods were recorded (its rows or attempts say so)."""
    low, high = _lease_range(destination_id)
    queued = session.scalar(select(QueueItem.lease_id).where(QueueItem.lease_id >= low, QueueItem.lease_id < high)
                            .order_by(QueueItem.lease_id.desc()).limit(1))
    tried = session.scalar(select(func.max(Attempt.message_id)).where(
        Attempt.destination_id == destination_id, Attempt.message_id >= low, Attempt.message_id < high))
    latest = max((lease for lease in (queued, tried) if lease), default=None)
    return _period_start(latest) if latest else None


def _next_start(session: Session, destination_id: int, plan: FilePlan) -> datetime | None:
    """Where the destination's next period starts: where the last recorded one ended (else after the last
    period cut before they were recorded); None when none was ever cut."""
    end = session.scalar(select(func.max(FilePeriod.ends_at)).where(FilePeriod.destination_id == destination_id))
    if end is not None:
        return end
    legacy = _last_cut(session, destination_id)
    return plan.period_of(legacy).end if legacy is not None else None


def _record(session: Session, destination_id: int, period: Period, lease: str) -> PeriodRecord:
    """Record a period just cut (its rows carry ``lease``), numbered among those starting on its UTC day."""
    day = period.start.replace(hour=0, minute=0, second=0, microsecond=0)
    earlier = session.scalar(select(func.count()).select_from(FilePeriod).where(
        FilePeriod.destination_id == destination_id, FilePeriod.starts_at >= day,
        FilePeriod.starts_at < period.start)) or 0
    count = session.scalar(select(func.count()).select_from(QueueItem).where(_held_by(destination_id, lease))) or 0
    row = FilePeriod(destination_id=destination_id, starts_at=period.start, ends_at=period.end,
                     sequence=earlier + 1, event_count=count)
    session.add(row)
    session.flush()
    return PeriodRecord.of(row)


def _recorded(session: Session, destination_id: int, plan: FilePlan, lease: str) -> PeriodRecord:
    """The record of the period whose rows carry ``lease``; recorded now for one cut before periods were."""
    start = _period_start(lease)
    row = session.scalar(select(FilePeriod).where(FilePeriod.destination_id == destination_id,
                                                  FilePeriod.starts_at == start))
    return PeriodRecord.of(row) if row is not None else _record(session, destination_id, plan.period_from(start),
                                                                lease)


# --- cutting periods and taking their rows


def _lease_rows(session: Session, destination_id: int, condition: ColumnElement[bool], lease: str,
                now: datetime | None) -> None:
    """Give the pending rows that match ``condition`` the period's lease id; with ``now``, also lease them from now."""
    until = now + timedelta(seconds=EXPORT_LEASE_SECONDS) if now is not None else None
    queue.assign_period(session, destination_id, condition, lease, until)


def _cut(session: Session, destination_id: int, period: Period, now: datetime | None) -> PeriodRecord:
    """Cut ``period``: its rows (and unassigned ones that arrived before it) get its lease id; record it."""
    lease = lease_id(destination_id, period)
    _lease_rows(session, destination_id, QueueItem.lease_id.is_(None) & (QueueItem.due_at < period.end), lease, now)
    return _record(session, destination_id, period, lease)


def _cut_next(session: Session, destination: Destination, plan: FilePlan, closed_until: datetime,
              now: datetime | None) -> PeriodRecord | None:
    """Cut the destination's next period if it has closed (ends by ``closed_until``); returns its record.

    The next period starts where the last one ended. Without ``empty_files`` a period without
    events is skipped: the next one cut is that of the oldest unassigned row. With ``now`` the
    rows are leased from then on (the caller uploads them); without, they stay due for the exporter.
    """
    unassigned = (QueueItem.destination_id == destination.id, PENDING, QueueItem.lease_id.is_(None))
    first = session.scalar(select(QueueItem.due_at).where(*unassigned, QueueItem.due_at < closed_until)
                           .order_by(QueueItem.due_at).limit(1))
    start = _next_start(session, destination.id, plan)
    if start is None:
        if first is None and not plan.empty_files:
            return None
        start = plan.period_of(first or destination.created_at).start
    elif not plan.empty_files:
        if first is None:
            return None
        start = max(start, plan.period_of(first).start)
    period = plan.period_from(start)
    if period.end > closed_until:
        return None
    return _cut(session, destination.id, period, now)


def _held_by(destination_id: int, lease: str) -> ColumnElement[bool]:
    """The destination's rows of a cut period (naming the destination lets the lease index find them)."""
    return and_(QueueItem.destination_id == destination_id, QueueItem.lease_id == lease)


def _attempts_of(session: Session, destination_id: int, lease: str) -> int:
    """Tries made before this one, as the engine's backoff counts them."""
    taken = queue.leased_attempts(session, destination_id, lease)
    return max(int(taken or 1) - 1, 0)


def _take_next(session: Session, destination: Destination, plan: FilePlan, now: datetime) -> PeriodRecord | None:
    """Lease the destination's oldest due period: one to retry (with events, or an empty one once the
    destination's pause is over), else the next closed one to cut."""
    retry = session.scalar(
        select(QueueItem.lease_id)
        .where(QueueItem.destination_id == destination.id, PENDING, QueueItem.lease_id.is_not(None),
               QueueItem.due_at <= now)
        .order_by(QueueItem.lease_id).limit(1)
    )
    if retry is not None:
        _lease_rows(session, destination.id, (QueueItem.lease_id == retry) & (QueueItem.due_at <= now), retry, now)
        return _recorded(session, destination.id, plan, retry)
    if destination.paused_until is None or destination.paused_until <= now:
        empty = session.scalar(select(FilePeriod).where(
            FilePeriod.destination_id == destination.id, FilePeriod.uploaded_at.is_(None),
            FilePeriod.event_count == 0).order_by(FilePeriod.starts_at).limit(1))
        if empty is not None:
            return PeriodRecord.of(empty)
    return _cut_next(session, destination, plan, _closed_until(plan, now), now)


def _closed_until(plan: FilePlan, now: datetime) -> datetime:
    """The end of the latest period that may be cut at ``now``."""
    return plan.period_of(now - timedelta(seconds=CUT_GRACE_SECONDS)).start


# --- uploading a period


def _name_fields(session: Session, destination_id: int, sequence: int) -> NameFields:
    account = session.scalar(select(Account.name).join(Destination, Destination.account_id == Account.id)
                             .where(Destination.id == destination_id)) or ""
    types = routing.types_of(session, destination_id)
    return NameFields(account=account, destination=destination_id, sequence=sequence,
                      type="-".join(t.lower() for t in model.ALL_TYPES if t in types) or "events")


def _file_name(runtime: Runtime, destination_id: int, plan: FilePlan, record: PeriodRecord) -> str:
    """The period's file name: the one it was uploaded as, else made now; DeliveryError (for good) when
    another period's file already has that name."""
    with runtime.read_sessions() as session:
        name = record.name or plan.remote_name(record.period, _name_fields(session, destination_id, record.sequence))
        other = session.scalar(select(FilePeriod).where(FilePeriod.destination_id == destination_id,
                                                        FilePeriod.name == name, FilePeriod.id != record.id))
    if other is not None:
        raise DeliveryError(
            f"refused to upload the file of {record.period} as {name}: that is the file of the period "
            f"{Period(other.starts_at, other.ends_at)}, which it would replace. Give file_name a field that tells "
            "the periods apart ({start:%H%M} or {sequence})", retryable=False)
    return name


def _upload(runtime: Runtime, destination_id: int, plan: FilePlan, target: FileTarget, record: PeriodRecord,
            attempts: int, on_deactivate: OnDeactivate | None) -> Receipt:
    """Write the period's file from the store, pack it, upload it (then its trigger file), and settle its
    rows; DeliveryError after a failure."""
    lease, period = record.lease, record.period
    started, clock = utcnow(), time.monotonic()
    count = 0
    unrenderable: list[tuple[str, str]] = []
    try:
        name = _file_name(runtime, destination_id, plan, record)
        spool = runtime.settings.data_home / "exports"
        spool.mkdir(parents=True, exist_ok=True)
        # Spooled under the data directory, not /tmp, which is often memory (tmpfs).
        with tempfile.TemporaryDirectory(prefix="export-", dir=spool) as directory:
            lines = Path(directory) / "lines"
            with closing(period_events(runtime, destination_id, lease)) as events:  # ends its read at once on an error
                count = write_file(events, lines, plan, unrenderable)
            if unrenderable:  # parked alone before the upload, so a retry does not meet them again
                with runtime.sessions.begin() as session:
                    park_unrenderable(session, Lease(destination_id, lease, [], attempts), unrenderable)
            packed = packing.pack(lines, name, plan, period)
            uploader = uploader_for(outbound.reach(target, runtime.settings))
            receipt = uploader.upload(packed.path, name)
            signal = packing.trigger(Path(directory), name, packed, count, period, record.sequence, plan)
            if signal is not None:
                uploader.upload(*signal)
    except DeliveryError as error:
        _fail(runtime, destination_id, lease, attempts, count, started, time.monotonic() - clock, error, on_deactivate)
        raise
    except Exception as exc:  # a bug or a local disk problem must not wedge the period: retry it later
        log.exception("export of %s failed", lease)
        failure = DeliveryError(f"internal error: {exc}")
        _fail(runtime, destination_id, lease, attempts, count, started, time.monotonic() - clock, failure,
              on_deactivate)
        raise failure from exc
    seconds = time.monotonic() - clock
    metrics.LATENCY.observe(seconds)
    what = f"{count} events" if count else "no events (an empty file)"
    detail = f"{what} of {period}: {receipt.detail}" + (f", then {signal[1]}" if signal is not None else "")
    with runtime.sessions.begin() as session:
        held = Lease(destination_id, lease, [], attempts, event_count=count)
        settle_success(session, held, started, seconds, receipt.status, detail)
        row = session.get(FilePeriod, record.id)
        if row is not None:
            row.name, row.sha256, row.uploaded_at = name, packed.sha256, utcnow()
    return Receipt(receipt.status, receipt.excerpt, detail)


def _fail(runtime: Runtime, destination_id: int, lease: str, attempts: int, count: int, started: datetime,
          seconds: float, error: DeliveryError, on_deactivate: OnDeactivate | None) -> None:
    with runtime.sessions.begin() as session:
        held = Lease(destination_id, lease, [], attempts, event_count=count)
        deactivated = settle_failure(session, held, started, seconds, error, runtime.settings)
    if deactivated and on_deactivate is not None:
        on_deactivate(destination_id)


def _file_destination(session: Session, destination_id: int, lock: bool) -> tuple[Destination, FilePlan] | None:
    # The row lock serialises cuts of one destination across processes (PostgreSQL); on
    # SQLite the transaction's write lock already does.
    destination = session.get(Destination, destination_id, with_for_update=lock or None)
    if destination is None or destination.kind not in FILE_KINDS:
        return None
    return destination, file_settings(destination).plan


class Exporter:
    """Exports every file destination's closed periods; the dispatcher runs it beside push delivery.

    Remembers per destination when it next needs a look (its current period's end, a
    retry's due time, or a periodic recheck), so that polling it often costs one query.
    """

    def __init__(self, runtime: Runtime, on_deactivate: OnDeactivate | None = None) -> None:
        self.runtime = runtime
        self._on_deactivate = on_deactivate
        self._quiet: dict[int, tuple[datetime, datetime]] = {}
        self._lock = threading.Lock()

    def due_destinations(self, now: datetime | None = None) -> list[int]:
        """Active file destinations that may have a period to upload now."""
        now = now or utcnow()
        with self.runtime.read_sessions() as session:
            found = session.execute(select(Destination.id, Destination.updated_at).where(
                Destination.active.is_(True), Destination.kind.in_(FILE_KINDS)).order_by(Destination.id)).all()
        with self._lock:
            return [ident for ident, updated in found
                    if not ((quiet := self._quiet.get(ident)) and quiet[0] == updated and now < quiet[1])]

    def export_due(self, destination_id: int, now: datetime | None = None) -> int:
        """Upload the destination's due periods, oldest first, until one fails; returns how many went up.

        Never raises: it runs on the dispatcher's threads; an unexpected error is logged and
        the destination looked at again a minute later.
        """
        now = now or utcnow()
        uploaded = 0
        recheck = now + timedelta(seconds=RECHECK_SECONDS)
        try:
            while True:
                with self.runtime.sessions.begin() as session:
                    found = _file_destination(session, destination_id, lock=True)
                    if found is None or not found[0].active:
                        return uploaded
                    destination, plan = found
                    recheck = min(recheck, plan.period_of(_closed_until(plan, now)).end
                                  + timedelta(seconds=CUT_GRACE_SECONDS))
                    record = _take_next(session, destination, plan, now)
                    if record is None:
                        return uploaded
                    attempts = _attempts_of(session, destination_id, record.lease)
                    target = file_settings(destination).target()
                try:
                    _upload(self.runtime, destination_id, plan, target, record, attempts, self._on_deactivate)
                except DeliveryError:
                    with self.runtime.read_sessions() as session:
                        retry_at = session.scalar(select(func.min(QueueItem.due_at)).where(
                            _held_by(destination_id, record.lease), PENDING))
                        paused = session.scalar(select(Destination.paused_until)
                                                .where(Destination.id == destination_id))
                    for moment in (retry_at, paused if not record.event_count else None):
                        if moment is not None:
                            recheck = min(recheck, moment)
                    return uploaded
                uploaded += 1
        except Exception:
            log.exception("export of destination #%s failed", destination_id)
            recheck = min(recheck, now + timedelta(seconds=60))
            return uploaded
        finally:
            self._remember(destination_id, recheck)

    def _remember(self, destination_id: int, recheck: datetime) -> None:
        # Keyed by the destination's updated_at as it is now, after settling (which may touch
        # it): a later change of its settings or its activation makes it due at once.
        try:
            with self.runtime.read_sessions() as session:
                updated = session.scalar(select(Destination.updated_at).where(Destination.id == destination_id))
        except Exception:
            log.exception("could not read destination #%s", destination_id)
            return
        if updated is not None:
            with self._lock:
                self._quiet[destination_id] = (updated, recheck)

    def run_due(self, now: datetime | None = None) -> int:
        """Export every due period of every file destination, one destination after another; returns files uploaded."""
        now = now or utcnow()
        return sum(self.export_due(ident, now) for ident in self.due_destinations(now))


def run_due(runtime: Runtime, on_deactivate: OnDeactivate | None = None) -> int:
    """One pass of a fresh Exporter (for one-shot runs); a long-running loop should keep one Exporter."""
    return Exporter(runtime, on_deactivate).run_due()


# --- exporting a period again, and flushing the current one


def _owned_destination(session: Session, destination_id: int, account_id: int | None) -> tuple[Destination, FilePlan]:
    found = _file_destination(session, destination_id, lock=True)
    if found is None or (account_id is not None and found[0].account_id != account_id):
        raise NotFound("file destination", destination_id)
    return found


def _period_asked(session: Session, destination_id: int, plan: FilePlan, start: datetime | None,
                  day: date | None, hour: int | None) -> Period:
    """The period a request names: by its start, or by its day (and hour) when one period starts then."""
    if start is not None:
        start = start.astimezone(timezone.utc)
        recorded = session.scalar(select(FilePeriod).where(FilePeriod.destination_id == destination_id,
                                                           FilePeriod.starts_at == start))
        if recorded is not None:
            return Period(recorded.starts_at, recorded.ends_at)
        if plan.period_of(start).start != start:
            raise problem("start", f"no period of destination #{destination_id} starts at {formats.iso(start)}")
        return plan.period_of(start)
    if day is None:
        raise problem("start", "give the period's start (or its date)")
    period = plan.period_starting(day, hour)
    first = datetime.combine(day, datetime.min.time(), timezone.utc)
    low, high = (first + timedelta(hours=hour), first + timedelta(hours=hour + 1)) if hour is not None \
        else (first, first + timedelta(days=1))
    starting = session.scalars(select(FilePeriod).where(
        FilePeriod.destination_id == destination_id, FilePeriod.starts_at >= low, FilePeriod.starts_at < high)
        .order_by(FilePeriod.starts_at)).all()
    if len(starting) > 1:
        starts = ", ".join(formats.iso(p.starts_at) or "" for p in starting)
        raise problem("date", f"{len(starting)} periods start that day ({starts}); name one by its start")
    return Period(starting[0].starts_at, starting[0].ends_at) if starting else period


def export_period(runtime: Runtime, destination_id: int, day: date | None = None, hour: int | None = None, *,
                  start: datetime | None = None, account_id: int | None = None,
                  on_deactivate: OnDeactivate | None = None, now: datetime | None = None) -> Receipt:
    """Regenerate one closed period's file from the store and upload it again (``gateway export``), the period
    named by its ``start`` or, when only one period starts then, by its ``day`` (and ``hour``).

    The file holds every row the period was cut with, delivered or not, so it is the same
    file the scheduled export uploaded, under the same name. A period not cut yet is cut
    first. A period without events says so: its empty file is uploaded when the destination
    uploads empty files, else nothing is. NotFound when the period's events were purged, so
    a good file on the server is never replaced by an empty one.
    """
    now = now or utcnow()
    with runtime.sessions.begin() as session:
        destination, plan = _owned_destination(session, destination_id, account_id)
        period = _period_asked(session, destination_id, plan, start, day, hour)
        lease = lease_id(destination_id, period)
        record = session.scalar(select(FilePeriod).where(FilePeriod.destination_id == destination_id,
                                                         FilePeriod.starts_at == period.start))
        if record is None and period.end > now:  # a recorded period was cut, so it is closed
            raise problem("start" if start else "date",
                          f"the period {period} has not ended yet (a flush closes it now)")
        if session.scalar(select(QueueItem.id).where(_held_by(destination_id, lease)).limit(1)) is not None:
            if queue.is_held(session, destination_id, lease, now):
                raise Conflict(f"the file of {period} is being uploaded right now; try again when that is done")
            _lease_rows(session, destination_id, QueueItem.lease_id == lease, lease, now)
            cut = _recorded(session, destination_id, plan, lease)
        elif record is not None and record.event_count:
            raise NotFound(f"events of the period {period} (purged after the retention time, or dropped by an "
                           "activation without replay) for destination", destination_id)
        elif record is not None:
            cut = PeriodRecord.of(record)
        else:
            found = _cut_next(session, destination, plan, period.end, None)
            while found is not None and found.period.start < period.start:  # older ones are left to the exporter
                found = _cut_next(session, destination, plan, period.end, None)
            if found is None or found.period.start != period.start:
                return Receipt(None, "", f"the period {period} holds no events; no file was uploaded")
            _lease_rows(session, destination_id, QueueItem.lease_id == lease, lease, now)
            cut = found
        if not cut.event_count and not plan.empty_files and cut.name is None:
            return Receipt(None, "", f"the period {period} holds no events; no file was uploaded "
                                     "(the destination uploads no empty files)")
        attempts = _attempts_of(session, destination_id, lease)
        target = file_settings(destination).target()
    return _upload(runtime, destination_id, plan, target, cut, attempts, on_deactivate)


def flush_period(runtime: Runtime, destination_id: int, *, account_id: int | None = None,
                 on_deactivate: OnDeactivate | None = None, now: datetime | None = None) -> Receipt:
    """Close the destination's current period now and upload its file (empty if no event arrived); the next
    period starts now. Closed periods not cut yet are cut first, each keeping its own file, and left to
    the exporter."""
    now = now or utcnow()
    if now.microsecond:  # periods end on whole seconds (their lease ids name them so); none that arrived is left out
        now = now.replace(microsecond=0) + timedelta(seconds=1)
    with runtime.sessions.begin() as session:
        destination, plan = _owned_destination(session, destination_id, account_id)
        while _cut_next(session, destination, plan, _closed_until(plan, now), None) is not None:
            pass
        start = _next_start(session, destination_id, plan)
        if start is None:
            first = session.scalar(select(func.min(QueueItem.due_at)).where(
                QueueItem.destination_id == destination_id, PENDING, QueueItem.lease_id.is_(None)))
            start = plan.period_of(min(first or now, now)).start
        if start >= now:
            raise Conflict(f"the current period of destination #{destination_id} began at {formats.iso(start)}; "
                           "nothing to flush yet")
        record = _cut(session, destination_id, Period(start, now), now)
        target = file_settings(destination).target()
    return _upload(runtime, destination_id, plan, target, record, 0, on_deactivate)
