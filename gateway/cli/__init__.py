"""The `gateway` command: serve, database, accounts, ingest, stats, pull, export, webhooks, destinations, failed
deliveries and secrets.

Each module of this package adds one group of commands to the root group, ``main``.
"""
from gateway.cli import accounts, control, destinations, events, secrets, serve, webhooks
from gateway.cli.root import main

__all__ = ["main", "accounts", "control", "destinations", "events", "secrets", "serve", "webhooks"]
