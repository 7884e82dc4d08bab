"""File destinations: each closed period's events become one log file, uploaded atomically to FTP, FTPS or SFTP.

A queue row of a file destination waits unassigned until the period it arrived in (its
``due_at``) has closed; then the exporter *cuts* the period: every unassigned row that
arrived before the period's end is given the period's lease id (``file:<destination>:<start>``).
From then on the period's file is exactly the rows with that lease id, so a retry, a
crashed exporter's successor and ``gateway export --date`` all upload the same file, no
event is in two files, and none is left out. A period is cut once; rows that arrive late
(their transaction committed after the cut) go into the next period cut.

Events stream from the store into a temporary file line by line, so memory does not grow
with the size of a period. Failures, retries with backoff and deactivation are the
delivery outcomes' (``outcomes.settle_failure``).
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
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO
from urllib.parse import urlencode

import orjson
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.delivery.outcomes import OnDeactivate, settle_failure, settle_success
from gateway.destinations.checks import problem
from gateway.destinations.files import FilePlan, Period
from gateway.destinations.kinds import FILE_KINDS, file_settings
from gateway.errors import Conflict, DeliveryError, NotFound
from gateway.events import formats, model
from gateway.runtime import Runtime
from gateway.store import queue
from gateway.store.models import Attempt, Destination, QueueItem, utcnow
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


def lease_id(destination_id: int, period: Period) -> str:
    """The lease id that names a destination's period: ``file:<destination>:<start, UTC>``."""
    return f"{LEASE_PREFIX}{destination_id}:{period.start:%Y-%m-%dT%H:%MZ}"


def _lease_range(destination_id: int) -> tuple[str, str]:
    prefix = f"{LEASE_PREFIX}{destination_id}:"
    return prefix, prefix[:-1] + ";"  # ';' follows ':', so [prefix, end) is every lease id of the destination


def _period_start(lease: str) -> datetime:
    return datetime.strptime(lease.split(":", 2)[2], "%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)


# --- the lines of a file


def _form_line(event: model.Event) -> bytes:
    return urlencode(formats.to_form(event)).encode("ascii") + b"\n"  # percent-encoded: plain ASCII


def _json_line(event: model.Event) -> bytes:
    return orjson.dumps(formats.to_json(event), option=orjson.OPT_APPEND_NEWLINE)


_LINES: dict[str, Callable[[model.Event], bytes]] = {"form": _form_line, "jsonl": _json_line}


def write_lines(events: Iterable[model.Event], out: IO[bytes], line_format: str) -> int:
    """Write one UTF-8 line per event (CSV: a header first); returns how many events were written."""
    count = 0
    if line_format == "csv":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(formats.CSV_COLUMNS)
        for event in events:
            writer.writerow(formats.to_csv_row(event))
            count += 1
        text.detach()  # flushes, and leaves ``out`` to its owner
        return count
    render = _LINES[line_format]
    for event in events:
        out.write(render(event))
        count += 1
    return count


@contextmanager
def _open_file(path: Path, compress: bool) -> Iterator[IO[bytes]]:
    with open(path, "wb", buffering=1 << 20) as raw:
        if not compress:
            yield raw
            return
        # No name and no time in the gzip header: the same rows give the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL) as packed:
            yield packed  # type: ignore[misc]


def write_file(events: Iterable[model.Event], path: Path, plan: FilePlan) -> int:
    """Write a period's file (gzip-compressed if the plan says so); returns how many events it holds."""
    with _open_file(path, plan.gzip) as out:
        return write_lines(events, out, plan.line_format)


def period_events(runtime: Runtime, destination_id: int, lease: str) -> Generator[model.Event, None, None]:
    """The events of a cut period in arrival order, streamed (a server-side cursor on PostgreSQL).

    Read-only, so on SQLite it reads a snapshot and never holds ingest or delivery up.
    """
    query = events_behind(_held_by(destination_id, lease))
    with runtime.read_sessions() as session:
        for row in session.execute(query, execution_options={"yield_per": READ_CHUNK}):
            yield to_event(row)


# --- cutting periods and taking their rows


def _last_cut(session: Session, destination_id: int) -> datetime | None:
    """The start of the destination's latest period that was ever cut (its rows or its attempts say so)."""
    low, high = _lease_range(destination_id)
    queued = session.scalar(select(QueueItem.lease_id).where(QueueItem.lease_id >= low, QueueItem.lease_id < high)
                            .order_by(QueueItem.lease_id.desc()).limit(1))
    tried = session.scalar(select(func.max(Attempt.message_id)).where(
        Attempt.destination_id == destination_id, Attempt.message_id >= low, Attempt.message_id < high))
    latest = max((lease for lease in (queued, tried) if lease), default=None)
    return _period_start(latest) if latest else None


def _lease_rows(session: Session, destination_id: int, condition: ColumnElement[bool], lease: str,
                now: datetime | None) -> None:
    """Give the pending rows that match ``condition`` the period's lease id; with ``now``, also lease them from now."""
    until = now + timedelta(seconds=EXPORT_LEASE_SECONDS) if now is not None else None
    queue.assign_period(session, destination_id, condition, lease, until)


def _cut_next(session: Session, destination_id: int, plan: FilePlan, closed_until: datetime,
              now: datetime | None) -> str | None:
    """Cut the oldest closed period (ending by ``closed_until``) that has unassigned rows; returns its lease id.

    Rows that arrived in a period already cut go into the first period after it. With
    ``now`` the rows are leased from then on (the caller uploads them); without, they stay
    due for the exporter.
    """
    unassigned = (QueueItem.destination_id == destination_id, PENDING, QueueItem.lease_id.is_(None))
    first = session.scalar(select(QueueItem.due_at).where(*unassigned, QueueItem.due_at < closed_until)
                           .order_by(QueueItem.due_at).limit(1))
    if first is None:
        return None
    period = plan.period_of(first)
    last = _last_cut(session, destination_id)
    if last is not None and period.start <= last:
        period = plan.period_of(plan.period_of(last).end)
    if period.end > closed_until:
        return None
    lease = lease_id(destination_id, period)
    _lease_rows(session, destination_id, QueueItem.lease_id.is_(None) & (QueueItem.due_at < period.end), lease, now)
    return lease


def _held_by(destination_id: int, lease: str) -> ColumnElement[bool]:
    """The destination's rows of a cut period (naming the destination lets the lease index find them)."""
    return and_(QueueItem.destination_id == destination_id, QueueItem.lease_id == lease)


def _attempts_of(session: Session, destination_id: int, lease: str) -> int:
    """Tries made before this one, as the engine's backoff counts them."""
    taken = queue.leased_attempts(session, destination_id, lease)
    return max(int(taken or 1) - 1, 0)


def _take_next(session: Session, destination: Destination, plan: FilePlan, now: datetime) -> str | None:
    """Lease the destination's oldest due period: one to retry, else the next closed one to cut."""
    retry = session.scalar(
        select(QueueItem.lease_id)
        .where(QueueItem.destination_id == destination.id, PENDING, QueueItem.lease_id.is_not(None),
               QueueItem.due_at <= now)
        .order_by(QueueItem.lease_id).limit(1)
    )
    if retry is not None:
        _lease_rows(session, destination.id, (QueueItem.lease_id == retry) & (QueueItem.due_at <= now), retry, now)
        return retry
    return _cut_next(session, destination.id, plan, _closed_until(plan, now), now)


def _closed_until(plan: FilePlan, now: datetime) -> datetime:
    """The end of the latest period that may be cut at ``now``."""
    return plan.period_of(now - timedelta(seconds=CUT_GRACE_SECONDS)).start


# --- uploading a period


def _upload(runtime: Runtime, destination_id: int, plan: FilePlan, target: FileTarget, lease: str, attempts: int,
            on_deactivate: OnDeactivate | None) -> Receipt:
    """Write the period's file from the store, upload it, and settle its rows; DeliveryError after a failure."""
    period = plan.period_of(_period_start(lease))
    name = plan.remote_name(period)
    started, clock = utcnow(), time.monotonic()
    count = 0
    try:
        spool = runtime.settings.data_home / "exports"
        spool.mkdir(parents=True, exist_ok=True)
        # Spooled under the data directory, not /tmp, which is often memory (tmpfs).
        with tempfile.TemporaryDirectory(prefix="export-", dir=spool) as directory:
            path = Path(directory) / name
            with closing(period_events(runtime, destination_id, lease)) as events:  # ends its read at once on an error
                count = write_file(events, path, plan)
            receipt = uploader_for(target).upload(path, name)
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
    detail = f"{count} events of {period}: {receipt.detail}"
    with runtime.sessions.begin() as session:
        held = Lease(destination_id, lease, [], attempts, event_count=count)
        settle_success(session, held, started, seconds, receipt.status, detail)
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
                    lease = _take_next(session, destination, plan, now)
                    if lease is None:
                        return uploaded
                    attempts = _attempts_of(session, destination_id, lease)
                    target = file_settings(destination).target()
                try:
                    _upload(self.runtime, destination_id, plan, target, lease, attempts, self._on_deactivate)
                except DeliveryError:
                    with self.runtime.read_sessions() as session:
                        retry_at = session.scalar(select(func.min(QueueItem.due_at)).where(
                            _held_by(destination_id, lease), PENDING))
                    if retry_at is not None:
                        recheck = min(recheck, retry_at)
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


def export_period(runtime: Runtime, destination_id: int, day: date, hour: int | None = None, *,
                  account_id: int | None = None, on_deactivate: OnDeactivate | None = None,
                  now: datetime | None = None) -> Receipt:
    """Regenerate one closed period's file from the store and upload it again (``gateway export --date``).

    The file holds every row the period was cut with, delivered or not, so it is the same
    file the scheduled export uploaded. A period not cut yet is cut first. Raises NotFound
    when the store holds no events of the period (none arrived, or they were purged), so
    a good file on the server is never replaced by an empty one.
    """
    now = now or utcnow()
    with runtime.sessions.begin() as session:
        found = _file_destination(session, destination_id, lock=True)
        if found is None or (account_id is not None and found[0].account_id != account_id):
            raise NotFound("file destination", destination_id)
        destination, plan = found
        period = plan.period_starting(day, hour)
        if period.end > now:
            raise problem("date", f"the period {period} has not ended yet")
        lease = lease_id(destination_id, period)
        if session.scalar(select(QueueItem.id).where(QueueItem.lease_id == lease).limit(1)) is not None:
            if queue.is_held(session, destination_id, lease, now):
                raise Conflict(f"the file of {period} is being uploaded right now; try again when that is done")
            _lease_rows(session, destination_id, QueueItem.lease_id == lease, lease, now)
        else:
            cut = _cut_next(session, destination_id, plan, period.end, None)
            while cut is not None and cut != lease:  # older uncut periods are cut first, left to the exporter
                cut = _cut_next(session, destination_id, plan, period.end, None)
            if cut is None:
                raise NotFound(f"events of the period {period} for destination", destination_id)
            _lease_rows(session, destination_id, QueueItem.lease_id == lease, lease, now)
        attempts = _attempts_of(session, destination_id, lease)
        target = file_settings(destination).target()
    return _upload(runtime, destination_id, plan, target, lease, attempts, on_deactivate)
