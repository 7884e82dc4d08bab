"""The console's pages: overview, destinations (list, create, one destination and its actions), pull batches
and events. Each page reads through ``queries`` and the management core, and each action calls the same
function the REST API calls, then shows what happened on the page it came from."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from gateway import pull
from gateway.api.context import current_runtime
from gateway.console import chart, forms, queries
from gateway.console.login import NotSignedIn, check_csrf, secure_headers, signed_in_account
from gateway.destinations import control, routing, webhooks
from gateway.destinations import management as admin
from gateway.destinations.email import EmailSettings
from gateway.destinations.http import HttpSettings
from gateway.destinations.kinds import FILE_KINDS
from gateway.destinations.pull import PullSettings
from gateway.errors import GatewayError, NotFound, ValidationError
from gateway.events import formats, model
from gateway.store import queue
from gateway.store.models import Account, Destination, utcnow
from sinks.http import FORMATS

blueprint = Blueprint("console", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/console/static")
T = TypeVar("T")
# The kinds of destination the console creates and manages (a pull queue comes with the account).
MANAGED = (HttpSettings.kind, EmailSettings.kind, *FILE_KINDS)
_ZONED = re.compile(r"(Z|[+-]\d\d:?\d\d)$")


@blueprint.before_request
def _signed_in() -> BaseResponse | None:
    """Send a request without a live session to the login page; check the CSRF token of every form."""
    try:
        g.account_id = signed_in_account()
    except NotSignedIn:
        return redirect(url_for("console_login.login", next=request.full_path.rstrip("?")))
    if request.method == "POST":
        check_csrf(request)
    rt = current_runtime()
    with rt.read_sessions() as session:
        g.account_name = session.scalar(select(Account.name).where(Account.id == g.account_id))
    return None


blueprint.after_request(secure_headers)


@blueprint.errorhandler(GatewayError)
def _refused(error: GatewayError) -> tuple[str, int]:
    """A console page that cannot be shown (another account's destination, say): a page saying why."""
    status = 404 if isinstance(error, NotFound) else 400
    return render_template("console/error.html", message=str(error)), status


def _read(work: Callable[[Session], T]) -> T:
    with current_runtime().read_sessions() as session:
        return work(session)


def _write(work: Callable[[Session], T]) -> T:
    with current_runtime().sessions.begin() as session:
        return work(session)


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{p.field}: {p.message}" if p.field else p.message for p in error.problems)


def _age(now: datetime, oldest: datetime | None) -> str:
    """How long ago ``oldest`` was, for people: "-" when nothing waits."""
    if oldest is None:
        return "-"
    seconds = max(0.0, (now - oldest).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


@blueprint.app_template_filter("when")
def _when(value: datetime | str | None) -> str:
    """A time as the console shows it: UTC, to the second."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value.replace("T", " ")[:19] + " UTC"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def mask(recipient: str | None) -> str:
    """A recipient shown without revealing it: the first character of an address and its domain, or the last
    two digits of a phone number."""
    if not recipient:
        return ""
    if "@" in recipient:
        local, _, domain = recipient.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return "*" * max(0, len(recipient) - 2) + recipient[-2:]


def _health(session: Session, found: list[Destination]) -> list[dict[str, Any]]:
    """Each of these destinations with how many events wait for it, since when, and how many are parked."""
    waiting = queue.waiting(session, [d.id for d in found])
    parked = queue.count_parked(session, [d.id for d in found])
    now = utcnow()
    health = []
    for destination in found:
        count, oldest = waiting.get(destination.id, (0, None))
        health.append({"destination": destination, "pending": count, "parked": parked.get(destination.id, 0),
                       "age": _age(now, oldest)})
    return health


@blueprint.get("/")
def overview() -> str:
    """Events per type over the last day and week, and what waits for each destination."""
    account_id, now = g.account_id, utcnow()

    def read(session: Session) -> dict[str, Any]:
        charts = [(span, chart.layout(queries.events_over_time(session, account_id, span, now),
                                      span.start(now), span.step, span.buckets))
                  for span in (queries.DAY, queries.WEEK)]
        return {"charts": charts, "health": _health(session, queries.destinations(session, account_id))}
    return render_template("console/overview.html", **_read(read))


@blueprint.get("/destinations")
def destinations() -> str:
    """The account's destinations, the routes of each event type, and the forms that create destinations."""
    account_id = g.account_id

    def read(session: Session) -> dict[str, Any]:
        return {"health": _health(session, queries.destinations(session, account_id)),
                "routes": routing.routes_table(session, account_id)}
    return render_template("console/destinations.html", types=model.ALL_TYPES,
                           formats=FORMATS, **_read(read))


@blueprint.post("/destinations/new/<kind>")
def create(kind: str) -> BaseResponse:
    """Create a destination of ``kind`` from its form, as the API would (a webhook may be verified first)."""
    if kind not in MANAGED:
        raise NotFound("kind of destination", kind)
    rt, body = current_runtime(), forms.payload(kind, request.form)
    try:
        if kind == HttpSettings.kind:
            made = webhooks.create_verified(rt.sessions, g.account_id, body, rt.settings, "verify" in request.form)
        else:
            made = admin.create_tested(rt, g.account_id, body, "test" in request.form)
    except ValidationError as exc:
        flash(f"Not created: {_problems(exc)}", "error")
        return redirect(url_for(".destinations") + f"#new-{kind}")
    flash(f"Created {'webhook' if kind == HttpSettings.kind else kind + ' destination'} #{made['id']}.", "ok")
    return redirect(url_for(".destination", destination_id=made["id"], secret=1 if "secret" in made else None))


def _own(session: Session, destination_id: int) -> Destination:
    return admin.find(session, g.account_id, destination_id, MANAGED, "destination")


@blueprint.get("/destinations/<id:destination_id>")
def destination(destination_id: int) -> str:
    """One destination: its settings (a webhook's signing secret only when asked for, as just after it was
    created), attempts, parked events and the actions on it."""
    def read(session: Session) -> dict[str, Any]:
        found = _own(session, destination_id)
        view = (webhooks.view(session, found, with_secret=request.args.get("secret") == "1")
                if found.kind == HttpSettings.kind else admin.view(session, found))
        parked = queue.parked_rows(session, [found.id], queries.PAGE_ROWS)
        return {"d": found, "view": view, "attempts": admin.attempts(session, found.id, queries.PAGE_ROWS),
                "parked": parked, "waiting": _health(session, [found])[0]}
    context = _read(read)
    now = utcnow()
    return render_template("console/destination.html", types=model.ALL_TYPES, now=now,
                           default_since=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
                           default_until=now.strftime("%Y-%m-%dT%H:%M"), **context)


def _act(destination_id: int, work: Callable[[Session, Destination], str]) -> BaseResponse:
    """Run an action on one of the account's destinations in a transaction, and show its outcome."""
    try:
        message = _write(lambda session: work(session, _own(session, destination_id)))
        flash(message, "ok")
    except NotFound:
        raise
    except GatewayError as exc:
        flash(_problems(exc) if isinstance(exc, ValidationError) else str(exc), "error")
    return redirect(url_for(".destination", destination_id=destination_id))


@blueprint.post("/destinations/<id:destination_id>/test")
def test(destination_id: int) -> BaseResponse:
    """Send a test event (or file) now and show what the destination answered."""
    rt = current_runtime()
    kind = _read(lambda session: _own(session, destination_id).kind)
    outcome = (webhooks.verify(rt.read_sessions, g.account_id, destination_id, rt.settings)
               if kind == HttpSettings.kind else admin.check_now(rt, g.account_id, destination_id))
    if outcome["ok"]:
        flash(f"Test passed (status {outcome['status'] or 'ok'}).", "ok")
    else:
        flash(f"Test failed: {outcome['error']}", "error")
    return redirect(url_for(".destination", destination_id=destination_id))


@blueprint.post("/destinations/<id:destination_id>/activate")
def activate(destination_id: int) -> BaseResponse:
    """Activate, replaying what accumulated meanwhile when asked (else it is dropped)."""
    replay = request.form.get("replay") == "1"

    def work(session: Session, found: Destination) -> str:
        done = admin.activate(session, found, replay)
        return (f"Activated; {done['queued']} events queued" + (f", {done['dropped']} dropped" if done["dropped"]
                                                                 else "") + ".")
    return _act(destination_id, work)


@blueprint.post("/destinations/<id:destination_id>/deactivate")
def deactivate(destination_id: int) -> BaseResponse:
    """Deactivate: nothing is delivered until activated again; events keep accumulating for a replay."""
    def work(session: Session, found: Destination) -> str:
        changed = control.deactivate(session, g.account_id, found.id)
        return "Deactivated." if changed else "It was deactivated already."
    return _act(destination_id, work)


@blueprint.post("/destinations/<id:destination_id>/retry")
def retry(destination_id: int) -> BaseResponse:
    """Make the destination's waiting retries due now."""
    return _act(destination_id, lambda session, found: (
        f"{control.retry_now(session, g.account_id, found.id)} waiting events are due now."))


@blueprint.post("/destinations/<id:destination_id>/redrive")
def redrive(destination_id: int) -> BaseResponse:
    """Queue the destination's parked events again."""
    return _act(destination_id, lambda session, found: (
        f"{control.redrive(session, g.account_id, destination_id=found.id)} parked events queued again."))


def _time(value: str, name: str) -> datetime:
    """A time typed into a form: a browser's date and time (taken as UTC) or ISO 8601 with a zone."""
    value = value.strip()
    if not value:
        raise ValidationError("is required", name)
    try:
        return model.parse_time(value if _ZONED.search(value[10:]) else value + "Z")
    except ValueError as exc:
        raise ValidationError(str(exc), name) from None


@blueprint.post("/destinations/<id:destination_id>/replay")
def replay(destination_id: int) -> BaseResponse:
    """Queue again every event of the webhook's types that occurred in a window."""
    def work(session: Session, found: Destination) -> str:
        since, until = _time(request.form.get("since", ""), "since"), _time(request.form.get("until", ""), "until")
        return f"{webhooks.replay(session, g.account_id, found.id, since, until)} events queued again."
    return _act(destination_id, work)


@blueprint.post("/destinations/<id:destination_id>/events")
def route(destination_id: int) -> BaseResponse:
    """Route exactly the ticked event types to the destination."""
    def work(session: Session, found: Destination) -> str:
        change = {"events": request.form.getlist("events")}
        if found.kind == HttpSettings.kind:
            webhooks.update_webhook(session, g.account_id, found.id, change)
        else:
            admin.change(session, g.account_id, found.id, change)
        return "Event types saved."
    return _act(destination_id, work)


@blueprint.post("/destinations/<id:destination_id>/delete")
def delete(destination_id: int) -> BaseResponse:
    """Delete the destination; its types go back to the pull queue if nothing else receives them."""
    _write(lambda session: admin.remove(session, _own(session, destination_id)))
    flash(f"Deleted destination #{destination_id}.", "ok")
    return redirect(url_for(".destinations"))


@blueprint.get("/pull")
def pulls() -> str:
    """The pull queue: what waits, open leases and the batches that can be fetched again."""
    rt, now = current_runtime(), utcnow()
    recovery = timedelta(days=rt.settings.recovery_days)

    def read(session: Session) -> dict[str, Any]:
        pull_id = routing.pull_destination(session, g.account_id)
        count, oldest = queue.waiting(session, [pull_id]).get(pull_id, (0, None))
        return {"batches": queries.pull_batches(session, g.account_id, now - recovery), "waiting": count,
                "age": _age(now, oldest)}
    return render_template("console/pull.html", now=now, lease=timedelta(seconds=rt.settings.pull_lease_seconds),
                           recovery_days=rt.settings.recovery_days, kind=PullSettings.kind,
                           default_since=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"), **_read(read))


@blueprint.get("/pull/batches/<batch_id>.json")
def batch(batch_id: str) -> Response:
    """Fetch a batch again (within the recovery window), as the REST API's JSON events."""
    rt = current_runtime()
    found = pull.batch_again(rt.read_sessions, g.account_id, batch_id, timedelta(days=rt.settings.recovery_days))
    body = json.dumps({"id": found.id, "events": [formats.to_json(e) for e in found.events]}, indent=1)
    answer = Response(body, mimetype="application/json")
    answer.headers["Content-Disposition"] = f'attachment; filename="{batch_id}.json"'
    return answer


@blueprint.post("/pull/requeue")
def requeue() -> BaseResponse:
    """Put what the pull client collected since a time back into the pull queue."""
    rt = current_runtime()
    try:
        since = _time(request.form.get("since", ""), "since")
        count = pull.requeue_collected(rt.sessions, g.account_id, since, None, [],
                                       timedelta(days=rt.settings.recovery_days))
        flash(f"{count} collected events put back in the pull queue.", "ok")
    except ValidationError as exc:
        flash(_problems(exc), "error")
    return redirect(url_for(".pulls"))


@blueprint.get("/events")
def events() -> str:
    """Find events by producer id, recipient, type and time; recipients are masked unless asked for."""
    args = request.args
    error = None
    try:
        query = queries.EventQuery(
            uid=args.get("id", "").strip(), recipient=args.get("recipient", "").strip(),
            event_type=model.normalize_type(args["type"]) if args.get("type") else "",
            since=_time(args["since"], "since") if args.get("since") else None,
            until=_time(args["until"], "until") if args.get("until") else None)
    except ValidationError as exc:
        error, query = _problems(exc), queries.EventQuery()
    except ValueError as exc:
        error, query = f"type: {exc}", queries.EventQuery()
    found = _read(lambda session: queries.find_events(session, g.account_id, query)) if error is None else []
    return render_template("console/events.html", found=found, types=model.ALL_TYPES, args=args, error=error,
                           reveal=args.get("reveal") == "1", mask=mask)
