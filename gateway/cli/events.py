"""Events in and out from the command line: ingest a file, stats, pull over SOAP, and put collected events back."""
from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import click

from gateway.accounts import account_by_name
from gateway.cli.root import main, open_store
from gateway.errors import ValidationError
from gateway.limits import MAX_BATCH_EVENTS


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

    runtime = open_store(ctx)
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

    runtime = open_store(ctx)
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



@main.command()
@click.option("--account", "account_name", required=True, help="The account whose pull queue gets the events back.")
@click.option("--since", required=True, help="Collected at or after this time (ISO 8601 with a zone, or Unix seconds).")
@click.option("--until", help="Collected before this time (default: now).")
@click.option("--types", default="", help="Event types, comma-separated (default: every type).")
@click.pass_context
def requeue(ctx: click.Context, account_name: str, since: str, until: str | None, types: str) -> None:
    """Put back into an account's pull queue the events it collected (marked read) in a window.

    For legacy clients, whose getBatch with markAsReadInd=Y answers carry no batch id to fetch
    again: the events come back in arrival order, once. Only the recovery window
    (recovery_days) can be put back.
    """
    from gateway import pull
    from gateway.cli.control import parse_time

    runtime = open_store(ctx)
    try:
        window = parse_time(since, "since"), parse_time(until, "until") if until is not None else None
        wanted = pull.check_types(types, "types")
        with runtime.read_sessions() as session:
            account_id = account_by_name(session, account_name).id
        count = pull.requeue_collected(runtime.sessions, account_id, *window, wanted,
                                       timedelta(days=runtime.settings.recovery_days))
    except ValidationError as exc:
        problem = exc.problems[0]
        raise click.ClickException(f"--{problem.field}: {problem.message}") from None
    click.echo(f"{count} events put back into the pull queue of {account_name}")
