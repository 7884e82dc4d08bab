"""File-export benchmark: a day of stored events written and uploaded to FTP and SFTP, against a hand-written baseline.

Run: `.venv/bin/python -m bench.export [--events 1000000]` (root, or a user that may run
sshd, for the SFTP server). It stores the events in a fresh SQLite store, starts a local
FTP server (pyftpdlib) and a local sshd (the tests' servers, tests/support/), and for each line
format and server runs, each in a fresh child process:

- the real export path: ``Exporter.export_due`` (cut the period, lease its rows, stream
  them from the store to a file, upload it atomically, mark the rows done);
- a baseline by hand: plain ``sqlite3`` reading the same rows, formatting the same lines
  in a loop into a local file, and uploading it with ``ftplib.storbinary`` / paramiko ``put``.

It checks that both uploaded files are byte for byte the same, and prints rows/s, the
ratio to the baseline and each child's peak RSS (VmHWM).

A last row (``--pgp``, on by default) exports the CSV file encrypted to an OpenPGP key over
FTP, against a baseline that writes the same lines and runs ``gpg --encrypt`` on them by hand;
encryption is randomised, so the two files are checked by decrypting both with the private key.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import ftplib
import hashlib
import io
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

CHUNK = 5000
FORMATS = ("form", "csv", "jsonl")
ARRIVED = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)


def _peak_mb() -> float:
    """This process's high-water RSS in MB (VmHWM; ru_maxrss of a child would include its parent)."""
    with open("/proc/self/status") as status:
        return int(status.read().split("VmHWM:")[1].split()[0]) / 1024


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


# --- what runs in the child processes


def child_real(job: dict[str, Any]) -> dict[str, Any]:
    """The real export path of one destination's period, as the dispatcher runs it."""
    from gateway.config import load_settings
    from gateway.delivery.export import Exporter
    from gateway.destinations.management import attempts
    from gateway.runtime import open_runtime

    runtime = open_runtime(load_settings(environ={}, database_url=job["url"], home=job["data_dir"],
                                         outbound_allow_networks="127.0.0.0/8"), migrate=False)
    before = _rss_mb()
    started = time.perf_counter()
    uploaded = Exporter(runtime).export_due(job["destination"])
    seconds = time.perf_counter() - started
    if uploaded != 1:
        with runtime.read_sessions() as session:
            log = attempts(session, job["destination"])
        raise SystemExit(f"the export uploaded {uploaded} files, not 1: {log[:1]}")
    runtime.close()
    return {"seconds": seconds, "peak_mb": _peak_mb(), "rss_before_mb": before}


_BASELINE_QUERY = (
    "SELECT e.uid, e.type, e.occurred_at, e.email, e.phone, e.message_id, e.message_name, e.list_id, "
    "e.delivered_at, e.url, e.category, e.reason, e.error, e.source, e.data "
    "FROM queue q JOIN events e ON e.id = q.event_id WHERE q.destination_id = ? ORDER BY q.id"
)


def child_baseline(job: dict[str, Any]) -> dict[str, Any]:
    """sqlite3, a loop formatting the same lines into a local file, and a plain upload."""
    import orjson

    from gateway.events import formats, model

    names = model.FIELD_NAMES
    times = [i for i, n in enumerate(names) if n in model.TIME_FIELDS]
    data_at = names.index("data")
    started = time.perf_counter()
    connection = sqlite3.connect(job["db"])
    path = Path(job["data_dir"]) / "baseline.log"
    with open(path, "wb") as out, io.TextIOWrapper(out, encoding="utf-8", newline="") as text:
        writer = csv.writer(text)
        if job["format"] == "csv":
            writer.writerow(formats.CSV_COLUMNS)
        for row in connection.execute(_BASELINE_QUERY, (job["destination"],)):
            values = list(row)
            for i in times:
                if values[i] is not None:
                    values[i] = datetime.fromisoformat(values[i]).replace(tzinfo=timezone.utc)
            if values[data_at] is not None:
                values[data_at] = json.loads(values[data_at])
            event = {n: v for n, v in zip(names, values, strict=True) if v is not None}
            if job["format"] == "form":
                out.write(urlencode(formats.to_form(event)).encode() + b"\n")
            elif job["format"] == "csv":
                writer.writerow(formats.to_csv_row(event))
            else:
                out.write(orjson.dumps(formats.to_json(event)) + b"\n")
    connection.close()
    if job.get("recipient"):
        encrypted = path.with_suffix(".gpg")
        subprocess.run(["gpg", "--homedir", job["gnupg_home"], "--batch", "--yes", "--no-tty", "--trust-model",
                        "always", "--recipient", job["recipient"], "--output", str(encrypted), "--encrypt",
                        str(path)], check=True, capture_output=True)
        path.unlink()
        path = encrypted
    if job["server"] == "ftp":
        ftp = ftplib.FTP()
        ftp.connect(job["host"], job["port"])
        ftp.login(job["username"], job["password"])
        with open(path, "rb") as source:
            ftp.storbinary(f"STOR {job['remote']}", source)
        ftp.quit()
    else:
        import paramiko
        from paramiko.hostkeys import HostKeyEntry

        entry = HostKeyEntry.from_line(job["known_hosts"])
        assert entry is not None
        client = paramiko.SSHClient()
        client.get_host_keys().add(entry.hostnames[0], entry.key.get_name(), entry.key)
        client.connect(job["host"], job["port"], username=job["username"], allow_agent=False, look_for_keys=False,
                       pkey=paramiko.Ed25519Key.from_private_key_file(job["key_file"]))
        client.open_sftp().put(str(path), f"{job['remote_dir']}/{job['remote']}")
        client.close()
    seconds = time.perf_counter() - started
    path.unlink()
    return {"seconds": seconds, "peak_mb": _peak_mb()}


def run_child(kind: str, job: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.export", "--child", kind, json.dumps(job)],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{kind} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --- the servers


@contextlib.contextmanager
def ftp_server(home: Path) -> Iterator[Any]:
    """pyftpdlib on 127.0.0.1, the tests' server."""
    from tests.support.ftp import serve_ftp

    # A handler of its own keeps pyftpdlib from installing its chatty stderr one.
    logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    with serve_ftp(home) as server:
        yield server


@contextlib.contextmanager
def sshd_server() -> Iterator[Any]:
    """OpenSSH's sshd on 127.0.0.1 with a throwaway configuration, the tests' server."""
    from tests.support.sshd import serve_sshd

    with serve_sshd() as server:
        yield server


# --- the benchmark


def store(directory: Path, count: int, ftpd: Any, sshd: Any, sftp_dir: Path) -> tuple[str, dict[str, int]]:
    """A fresh SQLite store with ``count`` events that arrived yesterday, routed to an FTP and an SFTP destination."""
    from sqlalchemy import update

    from bench.eventgen import generate
    from gateway.accounts import create_account
    from gateway.config import load_settings
    from gateway.destinations import management
    from gateway.events import model
    from gateway.ingest import store_events
    from gateway.runtime import open_runtime
    from gateway.store.models import QueueItem

    url = f"sqlite:///{directory / 'eventgw.db'}"
    runtime = open_runtime(load_settings(environ={}, database_url=url, home=str(directory),
                                         outbound_allow_networks="127.0.0.0/8"))
    with runtime.sessions.begin() as session:
        account = create_account(session, "bench", "bench-password").id
        common = {"events": list(model.ALL_TYPES), "host": "127.0.0.1"}
        destinations = {
            "ftp": management.create(session, account, {
                **common, "kind": "ftp", "port": ftpd.port, "username": ftpd.user, "password": ftpd.password}).id,
            "sftp": management.create(session, account, {
                **common, "kind": "sftp", "port": sshd.port, "username": sshd.username,
                "private_key": sshd.private_key, "known_hosts": sshd.known_hosts, "remote_dir": str(sftp_dir)}).id,
        }
    chunk: list[dict[str, Any]] = []
    for raw in generate(count, start=ARRIVED - timedelta(hours=6)):
        chunk.append(raw)
        if len(chunk) == CHUNK:
            with runtime.sessions.begin() as session:
                store_events(session, account, model.validate_all(chunk))
            chunk = []
    if chunk:
        with runtime.sessions.begin() as session:
            store_events(session, account, model.validate_all(chunk))
    with runtime.sessions.begin() as session:
        session.execute(update(QueueItem).values(due_at=ARRIVED))
    runtime.close()
    return url, destinations


def prepare(url: str, destination: int, line_format: str, **settings_changed: Any) -> None:
    """Make the destination's period unexported again, in the given line format (and other settings)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE queue SET state = 'ready', lease_id = NULL, attempts = 0, done_at = NULL, "
                                "due_at = :due WHERE destination_id = :d"),
                           {"due": ARRIVED.isoformat(sep=" ", timespec="microseconds")[:26], "d": destination})
        connection.execute(text("DELETE FROM attempts WHERE destination_id = :d"), {"d": destination})
        connection.execute(text("DELETE FROM file_periods WHERE destination_id = :d"), {"d": destination})
        settings = json.loads(connection.execute(text("SELECT settings FROM destinations WHERE id = :d"),
                                                 {"d": destination}).scalar_one())
        connection.execute(text("UPDATE destinations SET settings = :s WHERE id = :d"),
                           {"s": json.dumps({**settings, "line_format": line_format, **settings_changed}),
                            "d": destination})
    engine.dispose()


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def main() -> None:
    """Store the events, run every format on both servers, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--servers", default="ftp,sftp")
    parser.add_argument("--pgp", action=argparse.BooleanOptionalAction, default=True,
                        help="add the row of an OpenPGP-encrypted CSV upload over FTP")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, job = args.child
        print(json.dumps((child_real if kind == "real" else child_baseline)(json.loads(job))))
        return
    # Not under /tmp, which is often memory; readable by the SFTP user, which reads the key file.
    base = Path(tempfile.mkdtemp(prefix="eventgw-bench-export-", dir=os.environ.get("TMPDIR", "/var/tmp")))
    base.chmod(0o755)
    ftp_home = base / "ftp"
    ftp_home.mkdir()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        ftpd = cleanup.enter_context(ftp_server(ftp_home))
        sshd = cleanup.enter_context(sshd_server())
        run(args, base, ftp_home, ftpd, sshd)


def run(args: argparse.Namespace, base: Path, ftp_home: Path, ftpd: Any, sshd: Any) -> None:
    """Store the events and compare the export with the baseline for each server and format."""
    sftp_dir = sshd.fresh_dir("upload")
    started = time.perf_counter()
    url, destinations = store(base, args.events, ftpd, sshd, sftp_dir)
    print(f"stored {args.events:,} events in {time.perf_counter() - started:.0f} s "
          f"({(base / 'eventgw.db').stat().st_size / 1e6:.0f} MB store)")
    key_file = base / "client_key"
    key_file.write_text(sshd.private_key)
    print(f"{'server':<6} {'format':<7}{'export rows/s':>14} {'baseline rows/s':>16} {'ratio':>6} "
          f"{'export peak RSS':>16} {'baseline peak RSS':>18} {'file':>9}")
    for server in args.servers.split(","):
        home = ftp_home if server == "ftp" else sftp_dir
        for line_format in args.formats.split(","):
            prepare(url, destinations[server], line_format)
            real = run_child("real", {"url": url, "data_dir": str(base), "destination": destinations[server]})
            job = {"db": str(base / "eventgw.db"), "data_dir": str(base), "destination": destinations[server],
                   "format": line_format, "server": server, "host": "127.0.0.1", "remote": "baseline.log",
                   "port": ftpd.port if server == "ftp" else sshd.port,
                   "username": ftpd.user if server == "ftp" else sshd.username, "password": ftpd.password,
                   "key_file": str(key_file), "known_hosts": sshd.known_hosts, "remote_dir": str(sftp_dir)}
            baseline = run_child("baseline", job)
            compare(f"{server} {line_format}", args.events, real, baseline, home, "baseline.log", digest)
    if args.pgp:
        real = pgp_row(args, base, ftp_home, ftpd, url, destinations["ftp"])
    print(f"(export child RSS before the export started: {real['rss_before_mb']:.0f} MB)")


def compare(row: str, events: int, real: dict[str, Any], baseline: dict[str, Any], home: Path, baseline_name: str,
            content: Callable[[Path], str]) -> None:
    """Check that the exported file and the baseline's hold the same (``content`` digests them), remove both,
    and print the row of figures."""
    (exported,) = [p for p in home.iterdir() if p.name.startswith("events-")]
    if content(exported) != content(home / baseline_name):
        raise SystemExit(f"{row}: the exported file differs from the baseline's")
    size = exported.stat().st_size
    exported.unlink()
    (home / baseline_name).unlink()
    server, label = row.split(" ", 1)
    print(f"{server:<6} {label:<7}{events / real['seconds']:>14,.0f} {events / baseline['seconds']:>16,.0f} "
          f"{baseline['seconds'] / real['seconds']:>6.0%} {real['peak_mb']:>13.0f} MB "
          f"{baseline['peak_mb']:>15.0f} MB {size / 1e6:>6.0f} MB", flush=True)


def _decrypted_digest(home: Path, path: Path) -> str:
    plain = path.with_name(path.name + ".plain")
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty", "--output", str(plain),
                    "--decrypt", str(path)], check=True, capture_output=True)
    found = digest(plain)
    plain.unlink()
    return found


def pgp_row(args: argparse.Namespace, base: Path, ftp_home: Path, ftpd: Any, url: str,
            destination: int) -> dict[str, Any]:
    """The CSV file encrypted to a consumer's key, uploaded over FTP, against gpg run by hand."""
    from gateway.destinations import openpgp
    from tests.support.openpgp import key_pair

    home = base / "gnupg"
    gpg, fingerprint = key_pair(home)
    key = openpgp.check_public_key(gpg.export_keys(fingerprint))
    prepare(url, destination, "csv", pgp_public_key=key.armored, pgp_fingerprint=key.fingerprint)
    real = run_child("real", {"url": url, "data_dir": str(base), "destination": destination})
    job = {"db": str(base / "eventgw.db"), "data_dir": str(base), "destination": destination, "format": "csv",
           "server": "ftp", "host": "127.0.0.1", "remote": "baseline.log.gpg", "port": ftpd.port,
           "username": ftpd.user, "password": ftpd.password, "gnupg_home": str(home),
           "recipient": fingerprint}
    baseline = run_child("baseline", job)
    compare("ftp csv+pgp", args.events, real, baseline, ftp_home, "baseline.log.gpg",
            lambda path: _decrypted_digest(home, path))
    return real


if __name__ == "__main__":
    main()
