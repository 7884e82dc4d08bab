"""The `gateway account` commands."""
from __future__ import annotations

import json

import click

from gateway import accounts
from gateway.accounts import account_by_name, create_account
from gateway.cli.root import main, open_store


@main.group()
def account() -> None:
    """Manage accounts."""


@account.command("create")
@click.argument("name")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The account's password (asked for when not given).")
@click.option("--email", help="Where operational notices (a destination deactivated, say) are mailed.")
@click.pass_context
def account_create(ctx: click.Context, name: str, password: str, email: str | None) -> None:
    """Create an account; prints its id and an API key (shown only this once)."""
    from gateway.notices import set_notice_address

    runtime = open_store(ctx, create=True)
    with runtime.sessions.begin() as session:
        created = create_account(session, name, password)
        if email is not None:
            set_notice_address(session, created.id, email)
    click.echo(f"account {created.name} created with id {created.id}")
    click.echo(f"api key: {created.api_key}")


@account.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, each account as GET /api/v1/account shows it.")
@click.pass_context
def account_list(ctx: click.Context, as_json: bool) -> None:
    """The accounts, with the prefixes of their API keys."""
    with open_store(ctx).read_sessions() as session:
        shown = [accounts.view(session, item) for item in accounts.list_accounts(session)]
    if as_json:
        click.echo(json.dumps({"accounts": shown}, indent=2))
        return
    for item in shown:
        keys = ", ".join(key["prefix"] + "..." for key in item["api_keys"]) or "none"
        click.echo(f"#{item['id']} {item['name']:<24} created {item['created_at'][:10]}  api keys: {keys}")
    if not shown:
        click.echo("no accounts")


@account.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def account_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete an account with all its events, destinations and keys (asks first, unless --yes)."""
    runtime = open_store(ctx)
    with runtime.read_sessions() as session:
        account_by_name(session, name)
    if not yes:
        click.confirm(f"Delete account {name} with all its events, destinations and keys?", abort=True)
    with runtime.sessions.begin() as session:
        accounts.delete_account(session, name)
    click.echo(f"account {name} deleted")


@account.command("password")
@click.argument("name")
@click.option("--password", prompt="New password", hide_input=True, confirmation_prompt=True,
              help="The new password (asked for when not given).")
@click.pass_context
def account_password(ctx: click.Context, name: str, password: str) -> None:
    """Set an account's password; its SOAP sessions end and every wait after failed logins is lifted.

    A running gateway that saw the old password in the last minute may still take it until then.
    """
    with open_store(ctx).sessions.begin() as session:
        accounts.set_password(session, account_by_name(session, name).id, password)
    click.echo(f"password of account {name} changed")


@account.command("rotate-key")
@click.argument("name")
@click.pass_context
def account_rotate_key(ctx: click.Context, name: str) -> None:
    """Revoke every API key of an account and print a new one (shown only this once)."""
    with open_store(ctx).sessions.begin() as session:
        api_key = accounts.rotate_api_key(session, account_by_name(session, name).id)
    click.echo(f"api key: {api_key}")

