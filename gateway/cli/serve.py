"""Running the gateway: serve, worker and the database schema.

Both long-running commands stop cleanly on SIGTERM (and Ctrl-C): a web process stops
accepting connections and finishes the requests in flight; the delivery engine leases
nothing more and lets what it holds finish, giving back whatever is still in flight after
``shutdown_grace_seconds``; then the process exits 0.
"""
from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

import click

from gateway.cli.root import main, open_store
from gateway.config import load_settings
from gateway.runtime import Role, Runtime


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

    from gateway.delivery.engine import Dispatcher
    from gateway.notices import notify_deactivated
    from gateway.server import make_server, run_until_stopped

    settings = load_settings(**ctx.find_root().obj.options, host=host, port=port)
    runtime = open_store(ctx, create=True, settings=settings)
    runtime.role = Role.WEB_AND_DISPATCHER if dispatcher else Role.WEB
    server = make_server(runtime, settings.host, settings.port, threads)
    grace = settings.shutdown_grace_seconds
    stops: list[Callable[[], object]] = []
    if dispatcher:
        engine = Dispatcher(runtime, on_deactivate=functools.partial(notify_deactivated, runtime))
        threading.Thread(target=engine.run_forever, name="dispatcher", daemon=True).start()
        stops.append(functools.partial(engine.shutdown, grace))
    stopper = _stop_on_signals(runtime, stops)
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    click.echo(f"eventgw listening on http://{shown_host}:{settings.port}, store {settings.store}")
    # What exists now (modules, the app, the engine) lives as long as the process: frozen,
    # it is left out of every garbage collection, which a 10,000-event pull sets off.
    gc.freeze()
    run_until_stopped(server, runtime.stopping, grace)
    runtime.stopping.set()
    stopper.join()
    click.echo("eventgw stopped")
    _leave_stragglers(runtime)


@main.command()
@click.option("--health-port", type=int, help="Answer GET /healthz (readiness, role) on this port of "
              "--health-host; without it the worker listens on no port.")
@click.option("--health-host", default="127.0.0.1", show_default=True, help="Address of the health listener.")
@click.pass_context
def worker(ctx: click.Context, health_port: int | None, health_host: str) -> None:
    """Run the delivery engine alone (any number of workers can run side by side on PostgreSQL)."""
    from gateway.delivery.engine import Dispatcher
    from gateway.health import HealthServer
    from gateway.notices import notify_deactivated

    runtime = open_store(ctx, create=True)
    runtime.role = Role.WORKER
    engine = Dispatcher(runtime, on_deactivate=functools.partial(notify_deactivated, runtime))
    if health_port is not None:
        try:
            ctx.call_on_close(HealthServer(runtime, health_host, health_port).close)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {health_host}:{health_port} for health checks: "
                                       f"{exc.strerror or exc}") from None
    stopper = _stop_on_signals(runtime, [functools.partial(engine.shutdown, runtime.settings.shutdown_grace_seconds)])
    click.echo("eventgw worker started")
    engine.run_forever()
    runtime.stopping.set()
    stopper.join()
    click.echo("eventgw worker stopped")
    _leave_stragglers(runtime)


def _stop_on_signals(runtime: Runtime, stops: list[Callable[[], object]]) -> threading.Thread:
    """Make SIGTERM and SIGINT mark the runtime stopping; once it is, run ``stops`` side by side on
    threads of their own (a signal handler must not block). Returns the thread that runs them: set
    ``runtime.stopping`` and join it once the process's main loop has returned."""
    def run_stops() -> None:
        runtime.stopping.wait()
        running = [threading.Thread(target=stop, name="shutdown", daemon=True) for stop in stops]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()

    stopper = threading.Thread(target=run_stops, name="shutdown", daemon=True)
    stopper.start()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: runtime.stopping.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: runtime.stopping.set())
    return stopper


def _leave_stragglers(runtime: Runtime) -> None:
    """Exit 0 at once if deliveries are still running after the grace: their batches were given back,
    and the interpreter would otherwise wait for its worker threads, overrunning the grace."""
    if not any(thread.is_alive() and not thread.daemon
               for thread in threading.enumerate() if thread is not threading.main_thread()):
        return
    runtime.close()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create the store if needed and apply every pending schema migration (processes that start at
    once on one database take turns)."""
    from gateway.store.db import current_revision

    runtime = open_store(ctx, create=True)
    click.echo(f"database at revision {current_revision(runtime.engine)}")
