"""All configuration in one place: defaults, an optional TOML file, EVENTGW_* environment variables, and the store
they name."""
from __future__ import annotations

import dataclasses
import functools
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, from PyPI
    import tomli as tomllib

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from gateway.errors import ConfigError
from gateway.limits import MAX_BATCH_EVENTS
from sinks.outbound import OutboundPolicy

STORE_FILE = "eventgw.db"
"""The SQLite file of the default store, in the data directory."""
DATABASES = ("sqlite", "postgresql")
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
STORE_HINT = "--database-url, EVENTGW_DATABASE_URL or EVENTGW_HOME"
# Settings that had another name, so that a set-up written for the old one fails plainly.
RENAMED = {"data_dir": "home", "login_lockout_seconds": "login_backoff_max_seconds"}
"""How an operator names another store, for messages."""


@functools.cache
def _host_name() -> str:
    # A DNS lookup: asked once, not on every WSDL request.
    return socket.getfqdn()


def default_home() -> Path:
    """The data directory when none is configured: ``$XDG_DATA_HOME/eventgw``, else ``~/.local/share/eventgw``.

    It depends on the user, never on the current directory, so every command finds the same store.
    """
    base = os.environ.get("XDG_DATA_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".local" / "share") / "eventgw"


@dataclass(frozen=True)
class Settings:
    """Every setting of the gateway with its default; see docs/configuration.md.

    ``origins`` is no setting: it records where each given setting came from (an option, a
    variable, the file), so that messages can name it.
    """

    database_url: str = ""
    # The data directory: the default store and the spool of file exports ("": default_home()).
    home: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    # Ingest: one request carries at most this many events (the pull batch size, too).
    max_batch: int = MAX_BATCH_EVENTS
    max_body_bytes: int = 32 * 1024 * 1024
    # Bytes of large request bodies (over 1 MiB) one web process handles at once; a parsed
    # body takes several times its size in memory. Others wait their turn (see limits.py).
    body_budget_bytes: int = 32 * 1024 * 1024
    # Pull: how long an unacknowledged batch stays hidden, how long a marked-as-read
    # batch can be fetched again, and when collected events are purged.
    pull_lease_seconds: int = 300
    recovery_days: float = 5.0
    retention_days: float = 5.0
    session_idle_seconds: int = 1200
    # Login throttling, per (account, client address): after this many failures in a row each
    # further try waits, doubling up to the maximum; an account is never locked for everyone.
    login_failure_limit: int = 5
    login_backoff_max_seconds: int = 300
    # Secrets at rest (destination passwords, keys, webhook secrets): Fernet keys, comma-separated,
    # newest first; older ones still decrypt. "": a key generated into the data directory.
    secret_key: str = ""
    # A bearer token that /metrics requires ("": /metrics is not served).
    metrics_token: str = ""
    # Outbound address policy: CIDRs that account-supplied targets (webhook URLs, FTP and SFTP
    # hosts) may reach although they are loopback, private, link-local or reserved.
    outbound_allow_networks: str = ""
    # Dispatcher
    dispatch_interval_seconds: float = 0.5
    dispatch_lease_seconds: int = 120
    # Deliveries in flight at once (at most one per destination). Waiting on a slow
    # endpoint costs a thread, not a core: keep this above the number of push destinations
    # that may hang at once, or they delay the healthy ones by up to their timeout.
    dispatch_concurrency: int = 64
    # Deliveries in flight at once for one account, so one account's slow endpoints never
    # hold the whole dispatcher.
    account_concurrency: int = 4
    # Timeout of each connect and read; and the deadline of one whole delivery attempt
    # (connect, send and the whole answer), for every destination kind.
    http_timeout_seconds: float = 10.0
    delivery_deadline_seconds: float = 30.0
    # On SIGTERM a worker stops leasing and gives what it holds this long to finish.
    shutdown_grace_seconds: float = 30.0
    # Housekeeping deletes at most this many rows per transaction.
    purge_batch_rows: int = 5000
    # Delays before each retry; the first attempt is immediate (about a day in all).
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    deactivate_after_seconds: int = 86_400
    deactivate_after_failures: int = 0
    max_retry_after_seconds: int = 3600
    # SMTP for the email sink and operational notices
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: str = "none"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_sender: str = "eventgw@localhost"
    smtp_verify_tls: bool = True
    # A PEM file of CA certificates to trust for the SMTP server (default: the system's).
    smtp_ca_file: str = ""
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False,
                                       metadata={"setting": False})

    @property
    def data_home(self) -> Path:
        """The data directory, as an absolute path."""
        return Path(self.home).absolute() if self.home else default_home()

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to an SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_home / STORE_FILE}"

    @property
    def store(self) -> str:
        """The store for messages: its URL (password hidden) and where it was configured."""
        if self.database_url:
            origin = f"from {self.origin('database_url')}"
        elif self.home:
            origin = f"in the data directory from {self.origin('home')}"
        else:
            origin = "in the default data directory"
        return f"{_shown(make_url(self.effective_database_url))} ({origin})"

    @property
    def effective_public_url(self) -> str:
        """The URL clients reach this gateway at (used in WSDL addresses).

        Without ``public_url`` it is the listening address, or the machine's host name when
        the gateway listens on every address: a WSDL naming 0.0.0.0 sends no client anywhere.
        """
        if self.public_url:
            return self.public_url.rstrip("/")
        host = _host_name() if self.host in WILDCARD_HOSTS else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def origin(self, name: str) -> str:
        """Where setting ``name`` came from: an option (``--port``), a variable, the file, or ``the default``."""
        return self.origins.get(name, "the default")

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


SETTINGS = tuple(f for f in fields(Settings) if f.metadata.get("setting", True))
"""The fields of Settings that are settings."""


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _convert(name: str, kind: Any, value: Any) -> Any:
    kind = str(kind)
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return lowered in ("1", "true", "yes", "on")
        if kind.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else value
            return tuple(float(item) for item in items)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a valid {kind}") from None


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, the file named by EVENTGW_CONFIG, EVENTGW_* variables and overrides
    (command-line options, named as such in messages).

    Raises ConfigError naming the setting when a value is invalid or unknown, or the file unreadable.
    """
    environ = os.environ if environ is None else environ
    known = {f.name: f for f in SETTINGS}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    config_file = environ.get("EVENTGW_CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as handle:
                loaded = tomllib.load(handle)
        except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
            raise ConfigError(f"cannot read configuration file {config_file}: {exc} (named by EVENTGW_CONFIG: "
                              "fix the file, or unset the variable)") from None
        for key, value in loaded.items():
            if key in RENAMED:
                raise ConfigError(f"{config_file}: the setting {key!r} was renamed {RENAMED[key]!r}")
            if key not in known:
                raise ConfigError(f"{config_file}: unknown setting {key!r}")
            values[key] = _convert(key, known[key].type, value)
            origins[key] = f"{key} in {config_file}"
    for key, value in environ.items():
        if key.startswith("EVENTGW_") and key != "EVENTGW_CONFIG":
            name = key[len("EVENTGW_"):].lower()
            if name in RENAMED:
                raise ConfigError(f"{key} was renamed EVENTGW_{RENAMED[name].upper()}; set that instead")
            if name in known:
                values[name] = _convert(key, known[name].type, value)
                origins[name] = key
    for key, value in overrides.items():
        if value is not None:
            values[key] = _convert(key, known[key].type, value)
            origins[key] = "--" + key.replace("_", "-")
    settings = Settings(**values, origins=origins)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if not 1 <= settings.max_batch <= MAX_BATCH_EVENTS:
        raise ConfigError(f"max_batch must be between 1 and {MAX_BATCH_EVENTS}")
    for name in ("port", "smtp_port"):
        if not 1 <= getattr(settings, name) <= 65535:
            raise ConfigError(f"{name} must be between 1 and 65535 (it is {getattr(settings, name)}, "
                              f"from {settings.origin(name)})")
    if settings.smtp_security not in ("none", "starttls", "tls"):
        raise ConfigError("smtp_security must be none, starttls or tls")
    if not 0 < settings.http_timeout_seconds <= settings.delivery_deadline_seconds:
        raise ConfigError("http_timeout_seconds must be positive and at most delivery_deadline_seconds")
    if settings.dispatch_lease_seconds <= settings.delivery_deadline_seconds:
        raise ConfigError("dispatch_lease_seconds must be longer than delivery_deadline_seconds")
    for name in ("account_concurrency", "dispatch_concurrency", "purge_batch_rows"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1 (it is {getattr(settings, name)}, "
                              f"from {settings.origin(name)})")
    if not settings.retry_schedule:
        raise ConfigError("retry_schedule needs at least one delay")
    try:
        OutboundPolicy.parse(settings.outbound_allow_networks)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {settings.origin('outbound_allow_networks')})") from None
    _check_database_url(settings)


def _check_database_url(settings: Settings) -> None:
    if not settings.database_url:
        return
    where = f"database_url {settings.database_url!r} (from {settings.origin('database_url')})"
    example = "give sqlite:////PATH/eventgw.db or postgresql+psycopg://USER@HOST/DATABASE"
    try:
        backend = make_url(settings.database_url).get_backend_name()
    except ArgumentError:
        raise ConfigError(f"{where} is not a database URL; {example}") from None
    if backend not in DATABASES:
        raise ConfigError(f"{where}: unknown database {backend!r} (the gateway runs on {' or '.join(DATABASES)}); "
                          f"{example}")
