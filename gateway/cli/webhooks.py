"""The `gateway webhook` commands: what /api/v1/webhooks does, on the store this command opens."""
from __future__ import annotations

import json
from typing import Any

import click

from gateway.accounts import account_by_name
from gateway.cli.control import control_commands, parse_time
from gateway.cli.root import main, open_store
from gateway.destinations import control, outbound, webhooks
from gateway.runtime import Runtime
from gateway.store.models import utcnow
from sinks.http import FORMATS

_ACCOUNT = click.option("--account", "account_name", required=True, help="The account the webhook belongs to.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON, as the REST API answers.")


def _account_id(runtime: Runtime, name: str) -> int:
    with runtime.read_sessions() as session:
        return account_by_name(session, name).id


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _line(shown: dict[str, Any]) -> str:
    state = "active" if shown["active"] else f"deactivated {shown['deactivated_at']}"
    failing = f", failing since {shown['failing_since']}" if shown["failing_since"] and shown["active"] else ""
    app = f" app={shown['app']}" if shown["app"] else ""
    return f"#{shown['id']} {shown['url']}  [{','.join(shown['events'])}] {shown['format']}{app} ({state}{failing})"


@main.group()
def webhook() -> None:
    """Manage webhooks: create, change, replay a window, activate, deactivate, retry now, attempt log."""


control_commands(webhook, control.WEBHOOKS)


def _settings(url: str | None, events: str | None, fmt: str | None, app: str | None, secret: str | None,
              headers: tuple[str, ...], max_events: int | None, rate_limit: float | None) -> dict[str, Any]:
    """The JSON a REST request would send for these options (those given)."""
    payload: dict[str, Any] = {"url": url, "events": events.split(",") if events else None, "format": fmt,
                               "app": app, "secret": secret, "batch_max_events": max_events, "rate_limit": rate_limit}
    if headers:
        pairs = [header.partition(":") for header in headers]
        if any(not sep for _, sep, _ in pairs):
            raise click.UsageError("--header takes NAME:VALUE")
        payload["headers"] = {name.strip(): value.strip() for name, _, value in pairs}
    return {key: value for key, value in payload.items() if value is not None}


_SETTINGS = [
    click.option("--format", "fmt", type=click.Choice(FORMATS), help="How batches are posted (default json)."),
    click.option("--app", help="The application the webhook belongs to (lists filter by it)."),
    click.option("--secret", help="A whsec_ secret to sign with (default: one is generated and printed)."),
    click.option("--header", "headers", multiple=True, help="A header sent with every post, NAME:VALUE (repeat)."),
    click.option("--max-events", type=int, help="Events per post at most (default 500)."),
    click.option("--rate-limit", type=float, help="Events per second at most."),
]


def _with_settings(command: Any) -> Any:
    for option in reversed(_SETTINGS):
        command = option(command)
    return command


@webhook.command("create")
@_ACCOUNT
@click.option("--url", required=True, help="Where batches are posted.")
@click.option("--events", required=True, help="Event types sent to it, comma-separated, e.g. OPEN,CLICK.")
@_with_settings
@click.option("--verify", is_flag=True, help="Send a test event first; create the webhook only if it answers 2xx.")
@_JSON
@click.pass_context
def webhook_create(ctx: click.Context, account_name: str, url: str, events: str, fmt: str | None, app: str | None,
                   secret: str | None, headers: tuple[str, ...], max_events: int | None, rate_limit: float | None,
                   verify: bool, as_json: bool) -> None:
    """Create a webhook; it gets the events ingested from now on (replay a window for earlier ones)."""
    runtime = open_store(ctx)
    payload = _settings(url, events, fmt, app, secret, headers, max_events, rate_limit)
    shown = webhooks.create_verified(runtime.sessions, _account_id(runtime, account_name), payload, runtime.settings,
                                     verify)
    if as_json:
        _echo_json(shown)
        return
    click.echo(f"webhook #{shown['id']} created for {', '.join(shown['events'])}; its signing secret (shown once): "
               f"{shown['secret']}")


@webhook.command("list")
@_ACCOUNT
@click.option("--app", help="Only the webhooks of this application.")
@click.option("--event", help="Only the webhooks that get this event type.")
@_JSON
@click.pass_context
def webhook_list(ctx: click.Context, account_name: str, app: str | None, event: str | None, as_json: bool) -> None:
    """The account's webhooks."""
    runtime = open_store(ctx)
    with runtime.read_sessions() as session:
        found = webhooks.list_webhooks(session, account_by_name(session, account_name).id, app, event)
        shown = [webhooks.view(session, destination) for destination in found]
    if as_json:
        _echo_json({"webhooks": shown})
        return
    for item in shown:
        click.echo(_line(item))


@webhook.command("show")
@_ACCOUNT
@click.argument("webhook_id", type=int)
@_JSON
@click.pass_context
def webhook_show(ctx: click.Context, account_name: str, webhook_id: int, as_json: bool) -> None:
    """One webhook, and what waits for it."""
    runtime = open_store(ctx)
    with runtime.read_sessions() as session:
        shown = webhooks.view(session, webhooks.get(session, account_by_name(session, account_name).id, webhook_id))
    if as_json:
        _echo_json(shown)
        return
    click.echo(_line(shown))


@webhook.command("update")
@_ACCOUNT
@click.argument("webhook_id", type=int)
@click.option("--url", help="A new URL.")
@click.option("--events", help="The event types it gets from now on, comma-separated.")
@_with_settings
@click.pass_context
def webhook_update(ctx: click.Context, account_name: str, webhook_id: int, url: str | None, events: str | None,
                   fmt: str | None, app: str | None, secret: str | None, headers: tuple[str, ...],
                   max_events: int | None, rate_limit: float | None) -> None:
    """Change a webhook without deactivating it (a new secret signs beside the previous one until the next change)."""
    runtime = open_store(ctx)
    payload = _settings(url, events, fmt, app, secret, headers, max_events, rate_limit)
    if not payload:
        raise click.UsageError("give at least one setting to change")
    account_id = _account_id(runtime, account_name)
    outbound.check_change(payload, runtime.settings)
    with runtime.sessions.begin() as session:
        click.echo(_line(webhooks.view(session, webhooks.update_webhook(session, account_id, webhook_id, payload))))


@webhook.command("delete")
@_ACCOUNT
@click.argument("webhook_id", type=int)
@click.pass_context
def webhook_delete(ctx: click.Context, account_name: str, webhook_id: int) -> None:
    """Delete a webhook; its event types go back to the pull queue if nothing else gets them."""
    with open_store(ctx).sessions.begin() as session:
        webhooks.delete_webhook(session, account_by_name(session, account_name).id, webhook_id)
    click.echo(f"webhook #{webhook_id} deleted")


@webhook.command("replay")
@_ACCOUNT
@click.argument("webhook_id", type=int)
@click.option("--since", required=True, help="From this time on (ISO 8601 with a zone, or Unix seconds).")
@click.option("--until", help="Up to, not including, this time (default: now).")
@click.pass_context
def webhook_replay(ctx: click.Context, account_name: str, webhook_id: int, since: str, until: str | None) -> None:
    """Deliver again every stored event of the webhook's types that occurred in [since, until): a new webhook
    gets only the events ingested after it was created, and a replay backfills the earlier ones."""
    start, end = parse_time(since, "--since"), parse_time(until, "--until") if until else utcnow()
    with open_store(ctx).sessions.begin() as session:
        queued = webhooks.replay(session, account_by_name(session, account_name).id, webhook_id, start, end)
    click.echo(f"webhook #{webhook_id}: {queued} events queued")


@webhook.command("attempts")
@_ACCOUNT
@click.argument("webhook_id", type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@_JSON
@click.pass_context
def webhook_attempts(ctx: click.Context, account_name: str, webhook_id: int, limit: int, as_json: bool) -> None:
    """The webhook's recent delivery attempts, newest first."""
    with open_store(ctx).read_sessions() as session:
        found = webhooks.attempts(session, account_by_name(session, account_name).id, webhook_id, limit)
    if as_json:
        _echo_json({"attempts": found})
        return
    for attempt in found:
        status = attempt["status"] if attempt["status"] is not None else "-"
        click.echo(f"{attempt['started_at']} {attempt['outcome']:<11} {status} {attempt['events']} events "
                   f"{attempt['duration_ms']} ms  {attempt['detail'] or ''}".rstrip())
