"""A throwaway PostgreSQL server on loopback (for the tests and the benchmarks), its address, and connections to it.

The server binaries are taken from ``$EVENTGW_TEST_PG_BIN`` if set (a directory holding
``initdb``, ``postgres`` and ``pg_ctl``), else the newest ``/usr/lib/postgresql/*/bin``,
else wherever ``initdb`` is on ``PATH``.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support.net import free_port

SUPERUSER = "postgres"
START_TIMEOUT = 30.0
# Durability is worthless for a throwaway server; speed is not.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=100")


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

    def create_database(self, prefix: str = "test") -> str:
        """A new, empty database with a unique name; returns the name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing whatever is still connected to it."""
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def find_bin_dir() -> Path | None:
    """The directory with the PostgreSQL server binaries, or None if there is none."""
    if override := os.environ.get("EVENTGW_TEST_PG_BIN"):
        candidates = [Path(override)]
    else:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                            key=lambda p: [int(n) for n in p.parent.name.split(".")
                                           if n.isdigit()])
        if initdb := shutil.which("initdb"):
            candidates.append(Path(initdb).resolve().parent)
    for bin_dir in candidates:
        if all((bin_dir / name).is_file() for name in ("initdb", "postgres", "pg_ctl")):
            return bin_dir
    return None


def _run_as() -> tuple[list[str], str | None]:
    """Command prefix and OS user to run the server as: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", SUPERUSER], check=True)
    return ["runuser", "-u", SUPERUSER, "--"], SUPERUSER


def _tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_server(bin_dir: Path, settings: Sequence[str] = FAST_SETTINGS) -> Iterator[PostgresServer]:
    """Initialise and start a private PostgreSQL server on 127.0.0.1 (``settings`` as ``-c`` options);
    stop it and remove its files when the block ends."""
    prefix, os_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="eventgw-pg-"))
    data, log = root / "data", root / "server.log"
    if os_user is not None:
        shutil.chown(root, os_user)
    initdb = subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
         "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
        check=False, cwd=root, capture_output=True, text=True)
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
    # Replace initdb's rules: trust, but only over the private socket and loopback.
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n")

    server = PostgresServer("127.0.0.1", free_port(), SUPERUSER)
    options = [arg for setting in settings for arg in ("-c", setting)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-h", server.host,
             "-p", str(server.port), "-k", str(root), *options],
            cwd=root, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                server.connect().close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not start on port {server.port}:\n{_tail(log)}"
                    ) from None
                time.sleep(0.1)
        yield server
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "stop", "-D", str(data),
                        "-m", "immediate", "-w"], check=False, cwd=root, capture_output=True)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
