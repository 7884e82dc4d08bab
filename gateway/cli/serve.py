"""Running the gateway: serve, worker and the database schema."""
from __future__ import annotations

import functools

import click

from gateway.cli.root import main, open_store
from gateway.config import load_settings


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
    runtime = open_store(ctx, create=True, settings=settings)
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

    runtime = open_store(ctx, create=True)
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

    runtime = open_store(ctx, create=True)
    click.echo(f"database at revision {current_revision(runtime.engine)}")

