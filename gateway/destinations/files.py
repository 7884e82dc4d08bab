"""The file kinds, ``ftp`` (FTP or FTPS) and ``sftp``: their settings, defaults and checks, their public view,
the target their files are uploaded to, and the plan by which their periods are cut and their files named."""
from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from typing import Any, ClassVar, TypeVar

import paramiko

from gateway.destinations import file_names, openpgp
from gateway.destinations.checks import check_flag, check_keys, check_number, check_text, check_whole, problem
from gateway.destinations.file_names import NameFields
from gateway.events import formats
from sinks.ftp import DEFAULT_PORTS, FileTarget, known_host_entries, load_private_key

PERIODS = ("daily", "hourly")
LINE_FORMATS = ("form", "csv", "jsonl")
DEFAULT_PERIOD = "daily"
DEFAULT_AT = "00:00"
DEFAULT_LINE_FORMAT = "form"
DEFAULT_FILE_NAMES = {"daily": "events-{start:%Y%m%d}.{ext}", "hourly": "events-{start:%Y%m%d-%H}.{ext}"}
# A completeness signal written after the data file: an empty ``<name>.done``, or ``<name>.manifest.json``.
TRIGGERS = ("done_file", "manifest")
DEFAULT_TIMEOUT = 30.0
# What the ftp kind speaks; SFTP is a kind of its own (other settings: a key, known hosts).
FTP_PROTOCOLS = ("ftp", "ftps")
_HH_MM = re.compile(r"\d\d:\d\d")


def _time_of_day(value: object) -> clock_time:
    if isinstance(value, str) and _HH_MM.fullmatch(value):
        try:
            return clock_time.fromisoformat(value)
        except ValueError:
            pass
    raise problem("at", f"{value!r} is not a UTC time of day as HH:MM")


@dataclass(frozen=True)
class Period:
    """A half-open span of time [start, end) whose arrivals make up one file."""

    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{formats.iso(self.start)}..{formats.iso(self.end)}"


@dataclass(frozen=True)
class FilePlan:
    """How a file destination cuts its periods and writes, names, packs and signals its files."""

    period: str
    at: clock_time
    file_name: str
    line_format: str
    gzip: bool
    zip: bool = False
    empty_files: bool = False
    trigger: str | None = None
    pgp_public_key: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> FilePlan:
        """The plan a destination's settings describe; ValidationError naming the field when one is invalid."""
        period = settings.get("period", DEFAULT_PERIOD)
        if period not in PERIODS:
            raise problem("period", f"{period!r} is not one of {', '.join(PERIODS)}")
        if "at" in settings and period != "daily":
            raise problem("at", "applies to daily periods only")
        _time_of_day(settings.get("at", DEFAULT_AT))
        line_format = settings.get("line_format", DEFAULT_LINE_FORMAT)
        if line_format not in LINE_FORMATS:
            raise problem("line_format", f"{line_format!r} is not one of {', '.join(LINE_FORMATS)}")
        for flag in ("gzip", "zip", "empty_files"):
            if not isinstance(settings.get(flag, False), bool):
                raise problem(flag, "must be true or false")
        if settings.get("gzip") and settings.get("zip"):
            raise problem("zip", "a file is either gzip- or zip-compressed, not both")
        if settings.get("trigger") not in (None, *TRIGGERS):
            raise problem("trigger", f"{settings['trigger']!r} is not one of {', '.join(TRIGGERS)}")
        plan = cls.from_stored(settings)
        plan._check_file_name()
        return plan

    @classmethod
    def from_stored(cls, settings: Mapping[str, Any]) -> FilePlan:
        """The plan of settings checked when they were stored (by ``from_settings``), defaults filled in."""
        period = settings.get("period", DEFAULT_PERIOD)
        return cls(period, clock_time.fromisoformat(settings.get("at", DEFAULT_AT)),
                   file_names.normalized(settings.get("file_name") or DEFAULT_FILE_NAMES[period]),
                   settings.get("line_format", DEFAULT_LINE_FORMAT), settings.get("gzip", False),
                   settings.get("zip", False), settings.get("empty_files", period == "daily"),
                   settings.get("trigger"), settings.get("pgp_public_key"))

    def _check_file_name(self) -> None:
        if not isinstance(self.file_name, str) or len(self.file_name) > 200:
            raise problem("file_name", "must be a file name template of at most 200 characters")
        file_names.fields_of(self.file_name)
        # Two consecutive periods within one month and day: only a name with the period's own
        # part of the start (the day for daily, the hour for hourly) tells them apart.
        first = self.period_of(datetime(2026, 1, 1, 5, 30, tzinfo=timezone.utc))
        odd = self.period_from(first.start + timedelta(minutes=7))
        try:
            names = [self.remote_name(first), self.remote_name(self.period_of(first.end)), self.remote_name(odd)]
        except (ValueError, TypeError) as exc:
            raise problem("file_name", f"{self.file_name!r} does not fit its fields: {exc}") from None
        for name in names:
            file_names.check_plain(name, self.file_name)
        if names[0] == names[1]:
            token = "{start:%Y%m%d-%H}" if self.period == "hourly" else "{start:%Y%m%d}"
            raise problem("file_name", f"{self.file_name!r} names every {self.period} file alike; add {token}")

    def period_of(self, moment: datetime) -> Period:
        """The period ``moment`` falls in."""
        moment = moment.astimezone(timezone.utc)
        if self.period == "hourly":
            start = moment.replace(minute=0, second=0, microsecond=0)
            return Period(start, start + timedelta(hours=1))
        start = moment.replace(hour=self.at.hour, minute=self.at.minute, second=0, microsecond=0)
        if moment < start:
            start -= timedelta(days=1)
        return Period(start, start + timedelta(days=1))

    def period_starting(self, day: date, hour: int | None = None) -> Period:
        """The period of ``day`` (daily: from the cut time that day; hourly: the given hour of it)."""
        if self.period == "hourly":
            if hour is None or not 0 <= hour <= 23:
                raise problem("hour", "an hour from 0 to 23 is required for an hourly destination")
            return self.period_of(datetime.combine(day, clock_time(hour), timezone.utc))
        if hour is not None:
            raise problem("hour", "applies to hourly destinations only")
        return self.period_of(datetime.combine(day, self.at, timezone.utc))

    def period_from(self, start: datetime) -> Period:
        """The period that starts at ``start`` (where the one before it ended) and ends at the next cut."""
        return Period(start, self.period_of(start).end)

    def is_regular(self, period: Period) -> bool:
        """Whether ``period`` is a whole period of this plan (not one shortened by a flush or a change of ``at``)."""
        return self.period_of(period.start) == period

    @property
    def extension(self) -> str:
        """The extension the line format gives (``log``, ``csv``, ``jsonl``), before any packing."""
        return file_names.LINE_EXTENSIONS[self.line_format]

    @property
    def suffixes(self) -> str:
        """What packing adds to the extension: ``.gz`` or ``.zip``, then ``.gpg`` when encrypted."""
        packed = ".gz" if self.gzip else ".zip" if self.zip else ""
        return packed + (".gpg" if self.pgp_public_key else "")

    def remote_name(self, period: Period, fields: NameFields | None = None) -> str:
        """The file's name on the server: the template filled from the period and ``fields``."""
        return file_names.period_name(self.file_name, period.start, period.end, fields or NameFields(),
                                      self.extension, self.suffixes, self.is_regular(period))


def _public_key(payload: Mapping[str, Any]) -> dict[str, str | None]:
    """The consumer's OpenPGP public key a request gives (None: files go unencrypted), checked, with its fingerprint."""
    text = check_text(payload, "pgp_public_key", limit=100_000)
    if text is None:
        return {"pgp_public_key": None, "pgp_fingerprint": None}
    try:
        key = openpgp.check_public_key(text)
    except openpgp.KeyRefused as exc:
        raise problem("pgp_public_key", str(exc)) from None
    return {"pgp_public_key": key.armored, "pgp_fingerprint": key.fingerprint}


_F = TypeVar("_F", bound="FileSettings")
# Settings given as text, in the order a request's are checked; each kind has some of them.
_TEXTS = ("remote_dir", "file_name", "password", "private_key", "private_key_passphrase", "known_hosts", "ca_file")
_FLAGS = ("gzip", "zip", "empty_files", "verify_tls")


@dataclass(frozen=True, kw_only=True)
class FileSettings(ABC):
    """What the file kinds share: the server, the login, and the plan of their files. A setting left as
    None was never given: its default applies."""

    kind: ClassVar[str]
    # The settings a request may give, as the error for any other lists them.
    KEYS: ClassVar[tuple[str, ...]] = ("host", "port", "username", "password", "remote_dir", "timeout_seconds",
                                       "period", "at", "file_name", "line_format", "gzip", "zip", "empty_files",
                                       "trigger", "pgp_public_key")

    host: str
    username: str
    port: int | None = None
    password: str | None = None
    remote_dir: str | None = None
    timeout_seconds: float | None = None
    period: str | None = None
    at: str | None = None
    file_name: str | None = None
    line_format: str | None = None
    gzip: bool | None = None
    zip: bool | None = None
    empty_files: bool | None = None
    trigger: str | None = None
    pgp_public_key: str | None = None
    pgp_fingerprint: str | None = None

    @classmethod
    def parse(cls: type[_F], payload: Mapping[str, Any], current: _F | None) -> _F:
        """The settings a create (``current`` None) or change request gives, over the current ones (secrets
        not given are kept); ValidationError naming the first bad field, or a key that is not a setting."""
        check_keys(payload, cls.KEYS, cls.kind)
        changes: dict[str, Any] = {}
        for key in ("host", "username"):
            if key in payload or current is None:
                changes[key] = check_text(payload, key, required=True, limit=255)
        host = changes.get("host", current.host if current else "")
        if any(c.isspace() or c in "/@" for c in host):
            raise problem("host", f"{host!r} is not a host name or address")
        changes.update(cls._own_changes(payload))
        for key in _TEXTS:
            if key in payload and key in cls.KEYS:
                changes[key] = check_text(payload, key, limit=20_000)
        if "port" in payload:
            changes["port"] = None if payload["port"] is None else check_whole(payload, "port", 1, 65_535)
        if "timeout_seconds" in payload:
            changes["timeout_seconds"] = check_number(payload, "timeout_seconds", 1, 300)
        for key in ("period", "at", "line_format", "trigger"):
            if key in payload:
                changes[key] = payload[key]  # checked with the whole plan, below
        if changes.get("file_name"):
            changes["file_name"] = file_names.normalized(changes["file_name"])
        if "pgp_public_key" in payload:
            changes.update(_public_key(payload))
        for key in _FLAGS:
            if key in payload and key in cls.KEYS:
                changes[key] = check_flag(payload, key)
        settings = replace(current, **changes) if current else cls(**changes)
        settings._check()
        return settings

    @classmethod
    def _own_changes(cls, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The request's settings of this kind alone that ``parse`` does not check, checked."""
        return {}

    def _check(self) -> None:
        """Checks of the settings as a whole, once merged."""
        FilePlan.from_settings(self.stored())

    @classmethod
    def from_stored(cls: type[_F], stored: Mapping[str, Any]) -> _F:
        """The settings as the store holds them (checked when they were stored, so not again)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in stored.items() if key in names})

    def stored(self) -> dict[str, Any]:
        """The settings as the store keeps them (JSON): the settings given, none of the defaults."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}

    def view(self) -> dict[str, Any]:
        """The settings as the API shows them, defaults filled in, never a password or key."""
        target, plan = self.target(), self.plan
        shown: dict[str, Any] = {
            "protocol": target.protocol, "host": target.host, "port": target.port or DEFAULT_PORTS[target.protocol],
            "username": target.username, "remote_dir": target.remote_dir, "period": plan.period,
            "file_name": plan.file_name, "line_format": plan.line_format, "gzip": plan.gzip, "zip": plan.zip,
            "empty_files": plan.empty_files, "trigger": plan.trigger, "pgp_fingerprint": self.pgp_fingerprint,
            "timeout_seconds": target.timeout, "has_password": bool(target.password),
        }
        if plan.period == "daily":
            shown["at"] = plan.at.strftime("%H:%M")
        return shown

    @property
    def name(self) -> str:
        """How lists name the destination: where its files go."""
        return self.target().url(self.plan.file_name)[:200]

    @property
    def plan(self) -> FilePlan:
        """How the destination's periods are cut and its files named."""
        return FilePlan.from_stored(self.stored())

    @abstractmethod
    def target(self) -> FileTarget:
        """Where the destination's files are uploaded."""

    def _target(self, **own: Any) -> FileTarget:
        """The target with the settings every file kind has, and ``own``."""
        return FileTarget(host=self.host, port=self.port, username=self.username, password=self.password,
                          remote_dir=self.remote_dir or ".", timeout=float(self.timeout_seconds or DEFAULT_TIMEOUT),
                          **own)


@dataclass(frozen=True, kw_only=True)
class FtpSettings(FileSettings):
    """An FTP or FTPS server that receives the files."""

    kind: ClassVar[str] = "ftp"
    KEYS: ClassVar[tuple[str, ...]] = (*FileSettings.KEYS, "protocol", "verify_tls", "ca_file")

    protocol: str | None = None
    verify_tls: bool | None = None
    ca_file: str | None = None

    @classmethod
    def _own_changes(cls, payload: Mapping[str, Any]) -> dict[str, Any]:
        if "protocol" not in payload:
            return {}
        if payload["protocol"] not in FTP_PROTOCOLS:
            hint = " (SFTP destinations have kind sftp)" if payload["protocol"] == "sftp" else ""
            raise problem("protocol", f"{payload['protocol']!r} is not one of {', '.join(FTP_PROTOCOLS)}{hint}")
        return {"protocol": payload["protocol"]}

    def _check(self) -> None:
        super()._check()
        if self.ca_file and not os.path.isfile(self.ca_file):
            raise problem("ca_file", f"{self.ca_file!r} is not a file on the gateway")

    def view(self) -> dict[str, Any]:
        """The settings as the API shows them, defaults filled in, never the password."""
        return {**super().view(), "verify_tls": self.verify_tls is not False, "ca_file": self.ca_file}

    def target(self) -> FileTarget:
        """The FTP or FTPS server the files go to."""
        return self._target(protocol=self.protocol or "ftp", verify_tls=self.verify_tls is not False,
                            ca_file=self.ca_file)


@dataclass(frozen=True, kw_only=True)
class SftpSettings(FileSettings):
    """An SFTP server that receives the files, known by its host key."""

    kind: ClassVar[str] = "sftp"
    KEYS: ClassVar[tuple[str, ...]] = (*FileSettings.KEYS, "private_key", "private_key_passphrase", "known_hosts")

    private_key: str | None = None
    private_key_passphrase: str | None = None
    known_hosts: str | None = None

    def _check(self) -> None:
        super()._check()
        if not self.password and not self.private_key:
            raise problem("password", "an SFTP destination needs a password or a private_key")
        if self.private_key:
            try:
                load_private_key(self.private_key, self.private_key_passphrase)
            except ValueError as exc:
                raise problem("private_key", str(exc)) from None
        if not self.known_hosts:
            raise problem("known_hosts", "is required: the server's known_hosts line (ssh-keyscan prints it)")
        try:
            entries = known_host_entries(self.known_hosts)
        except ValueError as exc:
            raise problem("known_hosts", str(exc)) from None
        keys = paramiko.HostKeys()
        for hostname, key in entries:
            keys.add(hostname, key.get_name(), key)
        port = self.port or DEFAULT_PORTS["sftp"]
        name = self.host if port == DEFAULT_PORTS["sftp"] else f"[{self.host}]:{port}"
        if keys.lookup(name) is None:
            raise problem("known_hosts", f"has no key for {name}")

    def view(self) -> dict[str, Any]:
        """The settings as the API shows them, defaults filled in, never the password or the key."""
        return {**super().view(), "known_hosts": self.known_hosts or "", "has_private_key": bool(self.private_key)}

    def target(self) -> FileTarget:
        """The SFTP server the files go to."""
        return self._target(protocol="sftp", private_key=self.private_key,
                            private_key_passphrase=self.private_key_passphrase, known_hosts=self.known_hosts or "")
