"""The root of the `gateway` command: its group, its top-level options and the store a command opens."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import click

from gateway.config import Settings, load_settings
from gateway.errors import GatewayError, ValidationError
from gateway.runtime import Runtime, open_runtime


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


def open_store(ctx: click.Context, *, create: bool = False, settings: Settings | None = None) -> Runtime:
    """The store of this command, closed with it. Only commands that set a store up ``create`` one: the others
    stop with a message naming the store they looked for when it does not exist."""
    invocation: _Invocation = ctx.find_root().obj
    settings = settings or invocation.settings
    if invocation.verbose:
        click.echo(f"store: {settings.store}", err=True)
    runtime = open_runtime(settings, create=create)
    ctx.call_on_close(runtime.close)
    return runtime

