"""The account's control of deliveries from the command line: activate, deactivate and retry now (for the
`webhook` and `destination` groups alike), and `gateway failed` (failed deliveries across an account's
destinations, and their re-drive)."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from gateway.accounts import account_by_name
from gateway.cli.root import main, open_store
from gateway.destinations import control, webhooks
from gateway.destinations import management as admin
from gateway.errors import ValidationError
from gateway.events import model
from gateway.store.models import utcnow

_F = TypeVar("_F", bound=Callable[..., Any])


def parse_time(value: str, name: str) -> datetime:
    """An option's time, as events give them (ISO 8601 with a zone, or Unix seconds)."""
    try:
        return model.parse_time(value)
    except ValueError as exc:
        raise ValidationError(str(exc), name) from None


def control_commands(group: click.Group, scope: control.Scope) -> None:
    """Add `activate`, `deactivate` and `retry` to ``group``, for the destinations of ``scope``; a webhook's
    activation can also replay a window (``--replay-since``)."""
    noun = scope.what
    account = click.option("--account", "account_name", required=True, help=f"The account the {noun} belongs to.")
    ident = click.argument("destination_id", type=int)

    def window(command: _F) -> _F:
        if scope is not control.WEBHOOKS:
            return command
        return click.option("--replay-since", help="Also deliver again every event of its types since this time "
                            "(ISO 8601 with a zone, or Unix seconds).")(command)

    @group.command("activate")
    @account
    @ident
    @click.option("--replay/--drop", default=False,
                  help="Deliver what accumulated while it was deactivated (default: drop it).")
    @window
    @click.pass_context
    def activate(ctx: click.Context, account_name: str, destination_id: int, replay: bool,
                 replay_since: str | None = None) -> None:
        """Activate a deactivated one (an active one stays as it is)."""
        since = parse_time(replay_since, "--replay-since") if replay_since else None
        with open_store(ctx).sessions.begin() as session:
            account_id = account_by_name(session, account_name).id
            answer = admin.activate(session, admin.find(session, account_id, destination_id, scope.kinds, noun),
                                    replay)
            replayed = webhooks.replay(session, account_id, destination_id, since, utcnow()) if since else 0
        if not answer["activated"]:
            click.echo(answer["message"])
        else:
            dropped = f", {answer['dropped']} accumulated events dropped" if answer["dropped"] else ""
            click.echo(f"{noun} #{destination_id} activated; {answer['queued']} events to deliver{dropped}")
        if since:
            click.echo(f"{replayed} events since {replay_since} queued again")

    @group.command("deactivate")
    @account
    @ident
    @click.pass_context
    def deactivate(ctx: click.Context, account_name: str, destination_id: int) -> None:
        """Stop delivering until it is activated again; its events are kept for a replay."""
        with open_store(ctx).sessions.begin() as session:
            changed = control.deactivate(session, account_by_name(session, account_name).id, destination_id, scope)
        click.echo(f"{noun} #{destination_id} " + ("deactivated; its events are kept (activate --replay delivers "
                                                  "them)" if changed else "was deactivated already"))

    @group.command("retry")
    @account
    @ident
    @click.pass_context
    def retry(ctx: click.Context, account_name: str, destination_id: int) -> None:
        """Retry now: send the waiting retries at once rather than after their backoff."""
        with open_store(ctx).sessions.begin() as session:
            due = control.retry_now(session, account_by_name(session, account_name).id, destination_id, scope)
        click.echo(f"{noun} #{destination_id}: {due} waiting events due now (the dispatcher of a running gateway "
                   "sends them)")


@main.group()
def failed() -> None:
    """Failed deliveries across an account's destinations: failed attempts and parked events; re-drive."""


@failed.command("list")
@click.option("--account", "account_name", required=True, help="The account whose failed deliveries to list.")
@click.option("--destination", "destination_id", type=int, help="Only those of this destination.")
@click.option("--limit", type=click.IntRange(1, control.MAX_LIMIT), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/v1/failed answers.")
@click.pass_context
def failed_list(ctx: click.Context, account_name: str, destination_id: int | None, limit: int, as_json: bool) -> None:
    """Failed attempts (what the receiver answered) and parked events (why), newest first."""
    with open_store(ctx).read_sessions() as session:
        found = control.failed_deliveries(session, account_by_name(session, account_name).id, limit=limit,
                                          destination_id=destination_id)
    if as_json:
        click.echo(json.dumps({"failed": found}, indent=2))
        return
    if not found:
        click.echo("no failed deliveries")
    for item in found:
        where = f"{item['kind']} #{item['destination_id']}"
        if item["failure"] == "parked":
            click.echo(f"{item['at']} {where} parked event {item['event']} ({item['type']}, id {item['event_id']}): "
                       f"{item['error']}")
        else:
            click.echo(f"{item['at']} {where} failed, {item['events']} events: {item['error']}")


@failed.command("redrive")
@click.option("--account", "account_name", required=True, help="The account whose parked events to queue again.")
@click.option("--destination", "destination_id", type=int, help="Only those of this destination.")
@click.option("--event", "event_ids", type=int, multiple=True, help="Only this event (its id in the list; repeat).")
@click.pass_context
def failed_redrive(ctx: click.Context, account_name: str, destination_id: int | None,
                   event_ids: tuple[int, ...]) -> None:
    """Queue parked events again, due now (one that still cannot be rendered is parked again)."""
    with open_store(ctx).sessions.begin() as session:
        requeued = control.redrive(session, account_by_name(session, account_name).id,
                                   destination_id=destination_id, event_ids=list(event_ids))
    click.echo(f"{requeued} parked events queued again")
