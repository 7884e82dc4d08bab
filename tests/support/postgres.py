"""The address of the tests' PostgreSQL server, and connections to it."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class PostgresServer:
    """Address of the running test server; ``user`` is a trusted superuser."""

    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        """An autocommit connection, e.g. for CREATE/DROP DATABASE."""
        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               dbname=database, autocommit=True, connect_timeout=2)
