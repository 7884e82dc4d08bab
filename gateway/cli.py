"""The `gateway` command: serve, database, accounts, ingest, stats, pull, export and destinations."""
from __future__ import annotations

import functools
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gateway import accounts
from gateway.accounts import account_by_name, create_account
from gateway.config import Settings, load_settings
from gateway.destinations import management as admin
from gateway.destinations.files import (
    DEFAULT_AT,
    DEFAULT_FILE_NAMES,
    DEFAULT_LINE_FORMAT,
    DEFAULT_PERIOD,
    FTP_PROTOCOLS,
    LINE_FORMATS,
    PERIODS,
)
from gateway.destinations.kinds import FILE_KINDS, file_settings
from gateway.errors import GatewayError, ValidationError
from gateway.limits import MAX_BATCH_EVENTS
from gateway.runtime import Runtime, open_runtime
from gateway.store.models import Destination


class _Errors(click.Group):
    """A command group that turns gateway errors into a clear message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            lines = [f"  {problem}" for problem in exc.problems]
            raise click.ClickException("invalid input:\n" + "\n".join(lines)) from None
        except GatewayError as exc:
            raise click.ClickException(str(exc)) from None


@dataclass(frozen=True)
class _Invocation:
    """What the top-level options decided: the settings, the options they came from, and -v."""

    options: dict[str, Any]
    settings: Settings
    verbose: bool


@click.group(cls=_Errors)
@click.version_option(package_name="eventgw", prog_name="eventgw", message="%(prog)s %(version)s")
@click.option("--database-url", help="SQLAlchemy URL of the store (default: $EVENTGW_DATABASE_URL, the "
              "EVENTGW_CONFIG file, else eventgw.db in the data directory $EVENTGW_HOME or ~/.local/share/eventgw).")
@click.option("-v", "--verbose", is_flag=True, help="Print the store in use (on standard error).")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, verbose: bool) -> None:
    """eventgw: an event-notification gateway for email and SMS marketing platforms."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # What alembic and Spyne say at INFO (each migration, the service's set-up) is not news to an operator.
    for talkative in ("alembic", "spyne"):
        logging.getLogger(talkative).setLevel(logging.WARNING)
    options: dict[str, Any] = {"database_url": database_url}
    ctx.obj = _Invocation(options, load_settings(**options), verbose)


def _runtime(ctx: click.Context, *, create: bool = False, settings: Settings | None = None) -> Runtime:
    """The store of this command, closed with it. Only commands that set a store up ``create`` one: the others
    stop with a message naming the store they looked for when it does not exist."""
    invocation: _Invocation = ctx.find_root().obj
    settings = settings or invocation.settings
    if invocation.verbose:
        click.echo(f"store: {settings.store}", err=True)
    runtime = open_runtime(settings, create=create)
    ctx.call_on_close(runtime.close)
    return runtime


@main.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--threads", type=int, default=8, show_default=True, help="Web worker threads.")
@click.option("--dispatcher/--no-dispatcher", default=True, show_default=True,
              help="Run the delivery engine in this process (the embedded default).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, threads: int, dispatcher: bool) -> None:
    """Apply migrations and run the web API, the SOAP endpoints and (by default) the dispatcher."""
    import gc
    import threading

    from gateway.delivery.engine import Dispatcher
    from gateway.notices import notify_deactivated
    from gateway.server import make_server

    settings = load_settings(**ctx.find_root().obj.options, host=host, port=port)
    runtime = _runtime(ctx, create=True, settings=settings)
    server = make_server(runtime, settings.host, settings.port, threads)
    if dispatcher:
        engine = Dispatcher(runtime, on_deactivate=functools.partial(notify_deactivated, runtime))
        threading.Thread(target=engine.run_forever, name="dispatcher", daemon=True).start()
        ctx.call_on_close(engine.stop)
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    click.echo(f"eventgw listening on http://{shown_host}:{settings.port}, store {settings.store}")
    # What exists now (modules, the app, the engine) lives as long as the process: frozen,
    # it is left out of every garbage collection, which a 10,000-event pull sets off.
    gc.freeze()
    server.run()


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the delivery engine alone (any number of workers can run side by side on PostgreSQL)."""
    import signal

    from gateway.delivery.engine import Dispatcher
    from gateway.notices import notify_deactivated

    runtime = _runtime(ctx, create=True)
    engine = Dispatcher(runtime, on_deactivate=functools.partial(notify_deactivated, runtime))
    signal.signal(signal.SIGTERM, lambda *_: engine.stop())
    click.echo("eventgw worker started")
    try:
        engine.run_forever()
    except KeyboardInterrupt:
        engine.stop()


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create the store if needed and apply every pending schema migration."""
    from gateway.store.db import current_revision

    runtime = _runtime(ctx, create=True)
    click.echo(f"database at revision {current_revision(runtime.engine)}")


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

    runtime = _runtime(ctx, create=True)
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
    with _runtime(ctx).read_sessions() as session:
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
    runtime = _runtime(ctx)
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
    """Set an account's password; its SOAP sessions end and a lockout is lifted.

    A running gateway that saw the old password in the last minute may still take it until then.
    """
    with _runtime(ctx).sessions.begin() as session:
        accounts.set_password(session, account_by_name(session, name).id, password)
    click.echo(f"password of account {name} changed")


@account.command("rotate-key")
@click.argument("name")
@click.pass_context
def account_rotate_key(ctx: click.Context, name: str) -> None:
    """Revoke every API key of an account and print a new one (shown only this once)."""
    with _runtime(ctx).sessions.begin() as session:
        api_key = accounts.rotate_api_key(session, account_by_name(session, name).id)
    click.echo(f"api key: {api_key}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", "account_name", required=True, help="The account the events belong to.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), help="Default: from the file name.")
@click.option("--skip-invalid", is_flag=True, help="Store the valid lines; write the invalid ones to --rejects.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path),
              help="Where --skip-invalid writes rejected lines (default FILE.rejects.jsonl).")
@click.pass_context
def ingest(ctx: click.Context, file: Path, account_name: str, fmt: str | None, skip_invalid: bool,
           rejects: Path | None) -> None:
    """Import a JSON Lines or CSV file of events (idempotent: re-running is safe)."""
    from tqdm import tqdm

    from gateway.ingest import ingest_file

    runtime = _runtime(ctx)
    with runtime.read_sessions() as session:
        account_id = account_by_name(session, account_name).id
    rejects_path = rejects or file.with_name(file.name + ".rejects.jsonl")
    with tqdm(total=file.stat().st_size, unit="B", unit_scale=True, disable=not sys.stderr.isatty(),
              desc=file.name) as bar:
        rejects_file = open(rejects_path, "w", encoding="utf-8") if skip_invalid else None
        try:
            result = ingest_file(runtime.sessions, account_id, file, fmt=fmt, skip_invalid=skip_invalid,
                                 rejects=rejects_file, progress=bar.update)
        except UnicodeDecodeError:
            raise click.ClickException(f"{file} is not UTF-8 text; convert it (iconv -t UTF-8) and run again") from None
        finally:
            if rejects_file is not None:
                rejects_file.close()
    click.echo(f"{result.lines} lines: {result.stored.accepted} stored, {result.stored.duplicates} duplicates, "
               f"{result.rejected} rejected")
    if skip_invalid and result.rejected:
        click.echo(f"rejected lines and their errors: {rejects_path}")
    elif skip_invalid:
        rejects_path.unlink(missing_ok=True)


@main.command()
@click.option("--account", "account_name", required=True, help="The account to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as GET /api/v1/stats does.")
@click.pass_context
def stats(ctx: click.Context, account_name: str, as_json: bool) -> None:
    """Stored events per type and what waits per destination."""
    from gateway.stats import account_stats

    runtime = _runtime(ctx)
    with runtime.read_sessions() as session:
        figures = account_stats(session, account_by_name(session, account_name).id)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    click.echo(f"events stored for {account_name}: {figures['total']}")
    for etype, count in figures["events"].items():
        click.echo(f"  {etype:<14}{count:>10}")
    click.echo("waiting per destination:")
    for ident, item in figures["pending"].items():
        state = "" if item["active"] else " (deactivated)"
        click.echo(f"  #{ident} {item['kind']:<6}{item['name']:<24}{item['pending']:>10}{state}")


@main.command()
@click.option("--url", required=True, help="The gateway's base URL, e.g. http://127.0.0.1:8080.")
@click.option("--account", "account_name", required=True, help="The account to pull for.")
@click.option("--password", envvar="EVENTGW_PASSWORD", prompt=True, hide_input=True,
              help="The account's password (default: $EVENTGW_PASSWORD, else asked for).")
@click.option("--types", default="", help="Event types, comma-separated (default: every type).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The CSV file; appended to if it exists (the header goes only into a new file).")
@click.option("--max", "limit", type=int, default=MAX_BATCH_EVENTS, show_default=True, help="Events per batch.")
@click.option("--peek", is_flag=True, help="Write one batch and change nothing on the gateway.")
def pull(url: str, account_name: str, password: str, types: str, out: Path, limit: int, peek: bool) -> None:
    """Pull waiting events over the typed SOAP service into a CSV file until none are left.

    Each batch is leased, written and synced to disk, then acknowledged, so a crash loses
    nothing: unacknowledged events come back when their lease runs out.
    """
    from gateway.pull_client import EventsClient, pull_to_csv

    wanted = [name for name in types.split(",") if name.strip()]
    with EventsClient(url) as client:
        summary = pull_to_csv(client, account_name, password, wanted, out, limit=limit, peek=peek)
    click.echo(f"{summary.events} events in {summary.batches} batches written to {out}")


@main.command("export")
@click.option("--destination", "destination_id", type=int, required=True, help="The file destination's id.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="The period's day, e.g. 2026-11-20 (a daily period starts at the destination's cut time).")
@click.option("--hour", type=click.IntRange(0, 23), help="The hour of an hourly destination's period (UTC).")
@click.pass_context
def export_command(ctx: click.Context, destination_id: int, day: Any, hour: int | None) -> None:
    """Regenerate one closed period's file from the store and upload it again."""
    from gateway.delivery.export import export_period

    receipt = export_period(_runtime(ctx), destination_id, day.date(), hour)
    click.echo(receipt.detail)


@main.group()
def destination() -> None:
    """Manage email and file (FTP, FTPS, SFTP) destinations."""


def _read(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8") if path is not None else None


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
@click.option("--file-name", help="ftp/sftp: file name pattern with strftime tokens "
              f"(default {DEFAULT_FILE_NAMES[DEFAULT_PERIOD]}).")
@click.option("--period", type=click.Choice(PERIODS), help="ftp/sftp: one file per day or hour.")
@click.option("--at", "cut_at",
              help=f"ftp/sftp: the UTC time of day a daily file is cut, HH:MM (default {DEFAULT_AT}).")
@click.option("--line-format", type=click.Choice(LINE_FORMATS), help=f"ftp/sftp: default {DEFAULT_LINE_FORMAT}.")
@click.option("--gzip/--no-gzip", "compress", default=None, help="ftp/sftp: gzip the files (.gz is appended).")
@click.option("--ca-file", help="ftps: a PEM file of CA certificates to trust.")
@click.option("--no-verify-tls", is_flag=True, help="ftps: do not verify the server's certificate.")
@click.option("--test", is_flag=True, help="Test the destination first; do not create it if the test fails.")
@click.pass_context
def destination_create(ctx: click.Context, account_name: str, kind: str, events: str, recipients: tuple[str, ...],
                       subject: str | None, interval: int | None, max_events: int | None, protocol: str | None,
                       host: str | None, port: int | None, username: str | None, password: str | None,
                       private_key_file: Path | None, passphrase: str | None, known_hosts_file: Path | None,
                       remote_dir: str | None, file_name: str | None, period: str | None, cut_at: str | None,
                       line_format: str | None, compress: bool | None, ca_file: str | None, no_verify_tls: bool,
                       test: bool) -> None:
    """Create an email or file destination and route event types to it."""
    given = {
        "recipients": list(recipients) or None, "subject": subject, "interval_seconds": interval,
        "batch_max_events": max_events, "protocol": protocol, "host": host, "port": port, "username": username,
        "password": password, "private_key": _read(private_key_file), "private_key_passphrase": passphrase,
        "known_hosts": _read(known_hosts_file), "remote_dir": remote_dir, "file_name": file_name,
        "period": period, "at": cut_at, "line_format": line_format, "gzip": compress, "ca_file": ca_file,
        "verify_tls": False if no_verify_tls else None,
    }
    payload = {"kind": kind, "events": events.split(","), **{k: v for k, v in given.items() if v is not None}}
    runtime = _runtime(ctx)
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
    with _runtime(ctx).read_sessions() as session:
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
    runtime = _runtime(ctx)
    with runtime.read_sessions() as session:
        account_id = account_by_name(session, account_name).id
        _announce_test(runtime, admin.get(session, account_id, destination_id))
    outcome = admin.check_now(runtime, account_id, destination_id)
    if not outcome["ok"]:
        raise click.ClickException(f"test failed: {outcome['error']}")
    click.echo(f"test passed: {outcome['detail']}")


@destination.command("delete")
@click.option("--account", "account_name", required=True, help="The account the destination belongs to.")
@click.argument("destination_id", type=int)
@click.pass_context
def destination_delete(ctx: click.Context, account_name: str, destination_id: int) -> None:
    """Delete a destination; its event types go back to the pull queue if nothing else receives them."""
    with _runtime(ctx).sessions.begin() as session:
        admin.remove(session, admin.get(session, account_by_name(session, account_name).id, destination_id))
    click.echo(f"destination #{destination_id} deleted")
