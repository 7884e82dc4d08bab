"""The `gateway secrets` commands: a new key, and every stored secret sealed again under the newest key."""
from __future__ import annotations

import click

from gateway.cli.root import main, open_store
from gateway.vault import new_key, reseal_destinations, vault_of


@main.group()
def secrets() -> None:
    """Manage the key that seals stored secrets (destination passwords, private keys, webhook secrets)."""


@secrets.command("new-key")
def secrets_new_key() -> None:
    """Print a new random key, for secret_key (EVENTGW_SECRET_KEY)."""
    click.echo(new_key())


@secrets.command("rotate")
@click.pass_context
def secrets_rotate(ctx: click.Context) -> None:
    """Seal every stored secret again under the newest key of secret_key, in one transaction.

    Rotation: put the new key first in secret_key with the old one after it, everywhere the
    gateway runs; run this; then remove the old key.
    """
    runtime = open_store(ctx)
    keys = vault_of(runtime.engine.dialect)
    with runtime.engine.begin() as connection:
        resealed = reseal_destinations(connection, keys.reseal_settings)
    click.echo(f"{resealed.secrets} secrets of {resealed.destinations} destinations sealed under the newest key "
               f"of {keys.source}")
