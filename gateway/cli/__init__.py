"""The `gateway` command: serve, database, accounts, ingest, stats, pull, export and destinations.

Each module of this package adds one group of commands to the root group, ``main``.
"""
from gateway.cli import accounts, destinations, events, serve
from gateway.cli.root import main

__all__ = ["main", "accounts", "destinations", "events", "serve"]
