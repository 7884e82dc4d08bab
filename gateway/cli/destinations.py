"""The `gateway destination` commands and `gateway export` of a file destination's period."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import click

from gateway.accounts import account_by_name
from gateway.cli.control import control_commands
from gateway.cli.root import main, open_store
from gateway.destinations import control
from gateway.destinations import management as admin
from gateway.destinations.files import (
    DEFAULT_AT,
    DEFAULT_FILE_NAMES,
    DEFAULT_LINE_FORMAT,
    DEFAULT_PERIOD,
    FTP_PROTOCOLS,
    LINE_FORMATS,
    PERIODS,
    TRIGGERS,
)
from gateway.destinations.kinds import FILE_KINDS, file_settings
from gateway.runtime import Runtime
from gateway.store.models import Destination


@main.command("export")
@click.option("--destination", "destination_id", type=int, required=True, help="The file destination's id.")
@click.option("--start", type=click.DateTime(["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]),
              help="The period's start in UTC, e.g. 2026-11-27T20:23 (as its file's attempt log shows it).")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]),
              help="The period's day, e.g. 2026-11-20, when one period starts that day (a daily period starts "
                   "at the destination's cut time).")
@click.option("--hour", type=click.IntRange(0, 23), help="With --date: the hour of an hourly destination's period.")
@click.pass_context
def export_command(ctx: click.Context, destination_id: int, start: datetime | None, day: datetime | None,
                   hour: int | None) -> None:
    """Regenerate one closed period's file from the store and upload it again (a period without events
    says so)."""
    from gateway.delivery.export import export_period

    if (start is None) == (day is None):
        raise click.UsageError("give the period's --start, or its --date")
    receipt = export_period(open_store(ctx), destination_id, day.date() if day else None, hour,
                            start=start.replace(tzinfo=timezone.utc) if start else None)
    click.echo(receipt.detail)


@main.group()
def destination() -> None:
    """Manage email and file (FTP, FTPS, SFTP) destinations."""


control_commands(destination, control.MANAGED)


def _read(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8") if path is not None else None


def _public_key(path: Path | None) -> str | None:
    """An OpenPGP public key file's contents: armored text as it is, a binary key as base64."""
    if path is None:
        return None
    data = path.read_bytes()
    return data.decode("ascii") if data.lstrip().startswith(b"-----BEGIN") else base64.b64encode(data).decode()


def _announce_test(runtime: Runtime, destination: Destination) -> None:
    """Say (on standard error) which server a test of ``destination`` talks to, and whose settings name it."""
    if destination.kind in FILE_KINDS:
        target = file_settings(destination).target()
        port = f":{target.port}" if target.port else ""
        click.echo(f"testing an upload to {target.protocol}://{target.username}@{target.host}{port}/"
                   f"{target.remote_dir} (the destination's own settings)", err=True)
        return
    settings = runtime.settings
    origins = ", ".join(f"{name} from {settings.origin(name)}" for name in ("smtp_host", "smtp_port", "smtp_security"))
    click.echo(f"testing by email through {settings.smtp_host}:{settings.smtp_port} (security {settings.smtp_security};"
               f" {origins}): this command's SMTP settings, a running gateway sends with its own", err=True)


@destination.command("create")
@click.option("--account", "account_name", required=True, help="The account the destination belongs to.")
@click.option("--kind", type=click.Choice(admin.MANAGED_KINDS), required=True)
@click.option("--events", required=True, help="Event types routed to it, comma-separated, e.g. OPEN,CLICK.")
@click.option("--recipient", "recipients", multiple=True, help="email: a recipient (repeat for several).")
@click.option("--subject", help="email: subject template with {count} and {account}.")
@click.option("--interval", type=int, help="email: send at most one round of messages per this many seconds.")
@click.option("--max-events", type=int, help="email: events per message at most.")
@click.option("--protocol", type=click.Choice(FTP_PROTOCOLS), help="ftp: plain FTP or FTPS (explicit TLS).")
@click.option("--host", help="ftp/sftp: the server's host name or address.")
@click.option("--port", type=int, help="ftp/sftp: the server's port (default 21 or 22).")
@click.option("--username", help="ftp/sftp: the login name.")
@click.option("--password", envvar="EVENTGW_DESTINATION_PASSWORD",
              help="ftp/sftp: the login password (default: $EVENTGW_DESTINATION_PASSWORD).")
@click.option("--private-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="sftp: a private key file (OpenSSH or PEM).")
@click.option("--passphrase", help="sftp: the private key's passphrase.")
@click.option("--known-hosts-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="sftp: known_hosts lines of the server (ssh-keyscan -p PORT HOST prints them).")
@click.option("--remote-dir", help="ftp/sftp: the directory files go into.")
@click.option("--file-name", help="ftp/sftp: file name template, fields {account} {destination} {type} {start:%Y%m%d} "
              f"{{end:...}} {{sequence}} {{ext}} (default {DEFAULT_FILE_NAMES[DEFAULT_PERIOD]}).")
@click.option("--period", type=click.Choice(PERIODS), help="ftp/sftp: one file per day or hour.")
@click.option("--at", "cut_at",
              help=f"ftp/sftp: the UTC time of day a daily file is cut, HH:MM (default {DEFAULT_AT}).")
@click.option("--line-format", type=click.Choice(LINE_FORMATS), help=f"ftp/sftp: default {DEFAULT_LINE_FORMAT}.")
@click.option("--gzip/--no-gzip", "compress", default=None, help="ftp/sftp: gzip the files (.gz is appended).")
@click.option("--zip/--no-zip", "zipped", default=None, help="ftp/sftp: one zip archive per file (.zip is appended).")
@click.option("--empty-files/--no-empty-files", default=None,
              help="ftp/sftp: upload an empty file for a period without events (default: daily yes, hourly no).")
@click.option("--trigger", type=click.Choice(TRIGGERS),
              help="ftp/sftp: after each file, upload <name>.done or <name>.manifest.json.")
@click.option("--pgp-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="ftp/sftp: encrypt files to this OpenPGP public key (armored or binary); .gpg is appended.")
@click.option("--ca-file", help="ftps: a PEM file of CA certificates to trust.")
@click.option("--no-verify-tls", is_flag=True, help="ftps: do not verify the server's certificate.")
@click.option("--test", is_flag=True, help="Test the destination first; do not create it if the test fails.")
@click.pass_context
def destination_create(ctx: click.Context, account_name: str, kind: str, events: str, recipients: tuple[str, ...],
                       subject: str | None, interval: int | None, max_events: int | None, protocol: str | None,
                       host: str | None, port: int | None, username: str | None, password: str | None,
                       private_key_file: Path | None, passphrase: str | None, known_hosts_file: Path | None,
                       remote_dir: str | None, file_name: str | None, period: str | None, cut_at: str | None,
                       line_format: str | None, compress: bool | None, zipped: bool | None,
                       empty_files: bool | None, trigger: str | None, pgp_key_file: Path | None,
                       ca_file: str | None, no_verify_tls: bool, test: bool) -> None:
    """Create an email or file destination and route event types to it."""
    given = {
        "recipients": list(recipients) or None, "subject": subject, "interval_seconds": interval,
        "batch_max_events": max_events, "protocol": protocol, "host": host, "port": port, "username": username,
        "password": password, "private_key": _read(private_key_file), "private_key_passphrase": passphrase,
        "known_hosts": _read(known_hosts_file), "remote_dir": remote_dir, "file_name": file_name,
        "period": period, "at": cut_at, "line_format": line_format, "gzip": compress, "zip": zipped,
        "empty_files": empty_files, "trigger": trigger, "pgp_public_key": _public_key(pgp_key_file),
        "ca_file": ca_file,
        "verify_tls": False if no_verify_tls else None,
    }
    payload = {"kind": kind, "events": events.split(","), **{k: v for k, v in given.items() if v is not None}}
    runtime = open_store(ctx)
    with runtime.read_sessions() as session:
        account_id = account_by_name(session, account_name).id
    if test:
        _announce_test(runtime, admin.prepare(account_id, payload))
    shown = admin.create_tested(runtime, account_id, payload, test)
    click.echo(f"destination #{shown['id']} ({kind} {shown['name']}) created for {', '.join(shown['events'])}")


@destination.command("list")
@click.option("--account", "account_name", required=True, help="The account whose destinations to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/v1/destinations does.")
@click.pass_context
def destination_list(ctx: click.Context, account_name: str, as_json: bool) -> None:
    """The account's email and file destinations (secrets are never shown)."""
    with open_store(ctx).read_sessions() as session:
        account_id = account_by_name(session, account_name).id
        shown = [admin.view(session, d) for d in admin.list_destinations(session, account_id)]
    if as_json:
        click.echo(json.dumps({"destinations": shown}, indent=2))
        return
    for item in shown:
        state = "" if item["active"] else " (deactivated)"
        click.echo(f"#{item['id']} {item['kind']:<6}{item['name']}  [{','.join(item['events'])}]{state}")


@destination.command("test")
@click.option("--account", "account_name", required=True, help="The account the destination belongs to.")
@click.argument("destination_id", type=int)
@click.pass_context
def destination_test(ctx: click.Context, account_name: str, destination_id: int) -> None:
    """Send a test email, or upload and remove a test file; exits 1 when that fails."""
    runtime = open_store(ctx)
    with runtime.read_sessions() as session:
        account_id = account_by_name(session, account_name).id
        _announce_test(runtime, admin.get(session, account_id, destination_id))
    outcome = admin.check_now(runtime, account_id, destination_id)
    if not outcome["ok"]:
        raise click.ClickException(f"test failed: {outcome['error']}")
    click.echo(f"test passed: {outcome['detail']}")


@destination.command("flush")
@click.option("--account", "account_name", required=True, help="The account the destination belongs to.")
@click.argument("destination_id", type=int)
@click.pass_context
def destination_flush(ctx: click.Context, account_name: str, destination_id: int) -> None:
    """Send now: close a file destination's current period and upload it, or send an email destination's
    waiting events at once; exits 1 when that fails."""
    from gateway.delivery.flush import flush

    runtime = open_store(ctx)
    with runtime.read_sessions() as session:
        account_id = account_by_name(session, account_name).id
    click.echo(flush(runtime, account_id, destination_id)["detail"])


@destination.command("delete")
@click.option("--account", "account_name", required=True, help="The account the destination belongs to.")
@click.argument("destination_id", type=int)
@click.pass_context
def destination_delete(ctx: click.Context, account_name: str, destination_id: int) -> None:
    """Delete a destination; its event types go back to the pull queue if nothing else receives them."""
    with open_store(ctx).sessions.begin() as session:
        admin.remove(session, admin.get(session, account_by_name(session, account_name).id, destination_id))
    click.echo(f"destination #{destination_id} deleted")
