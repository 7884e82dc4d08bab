"""What a kind of destination is, and the registry of the kinds: pull, http, email, ftp (FTP or FTPS), sftp.

Each kind is one frozen settings class in a module of its own; these protocols say what every
one of them does, and what the delivery engine needs of the kinds it pushes to and of those it
uploads files to.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.config import Settings
from gateway.destinations.email import EmailSettings
from gateway.destinations.files import FilePlan, FtpSettings, SftpSettings
from gateway.destinations.http import HttpSettings
from gateway.destinations.pull import PullSettings
from gateway.store.models import Account, Destination
from sinks.base import Sink
from sinks.ftp import FileTarget

_K = TypeVar("_K", bound="DestinationKind")


class DestinationKind(Protocol):
    """The typed, immutable settings of one kind of destination.

    The store keeps them as JSON (``stored``) in ``Destination.settings``; ``from_stored`` reads
    them back without checking them again, as the delivery engine does for every batch.
    """

    kind: ClassVar[str]
    # The settings a create or change request may give.
    KEYS: ClassVar[tuple[str, ...]]

    @classmethod
    def parse(cls: type[_K], payload: Mapping[str, Any], current: _K | None) -> _K:
        """The settings a create (``current`` None) or change request gives, merged over the current
        ones; ValidationError naming the field, when one is invalid."""
        ...

    @classmethod
    def from_stored(cls: type[_K], stored: Mapping[str, Any]) -> _K:
        """The settings as ``stored`` wrote them."""
        ...

    def stored(self) -> dict[str, Any]:
        """The settings as the store keeps them (JSON): the ones given, so that defaults stay the kind's."""
        ...

    def view(self) -> dict[str, Any]:
        """The settings as the API shows them, defaults filled in, never a secret."""
        ...

    @property
    def name(self) -> str:
        """How lists name the destination (at most 200 characters)."""
        ...


class PushKind(DestinationKind, Protocol):
    """A kind the delivery engine delivers to batch by batch, through a sink."""

    @property
    def batch_limit(self) -> int:
        """Events per delivery at most."""
        ...

    @property
    def interval(self) -> float:
        """Seconds between the starts of two deliveries at least (0: no pause)."""
        ...

    @property
    def batch_wait(self) -> float:
        """Seconds a batch may wait to fill up to ``batch_limit`` (0: it goes at once)."""
        ...

    def sink(self, config: Settings, account: str) -> Sink:
        """The sink that delivers to the destination of ``account`` (its name)."""
        ...


class FileKind(DestinationKind, Protocol):
    """A kind whose events are uploaded as one file per period."""

    @property
    def plan(self) -> FilePlan:
        """How its periods are cut and its files named."""
        ...

    def target(self) -> FileTarget:
        """Where its files are uploaded."""
        ...


_PUSH: dict[str, type[PushKind]] = {HttpSettings.kind: HttpSettings, EmailSettings.kind: EmailSettings}
_FILE: dict[str, type[FileKind]] = {FtpSettings.kind: FtpSettings, SftpSettings.kind: SftpSettings}
_KINDS: dict[str, type[DestinationKind]] = {PullSettings.kind: PullSettings, **_PUSH, **_FILE}
# Pull queues are collected by clients; the delivery engine pushes to these batch by batch,
# and uploads a file per period to those.
PUSH_KINDS = tuple(_PUSH)
FILE_KINDS = tuple(_FILE)


def kind_named(kind: str) -> type[DestinationKind]:
    """The settings class of a kind (KeyError for none)."""
    return _KINDS[kind]


def settings_of(destination: Destination) -> DestinationKind:
    """A stored destination's settings."""
    return _KINDS[destination.kind].from_stored(destination.settings)


def push_settings(destination: Destination) -> PushKind:
    """A push destination's settings; ValueError for a destination of another kind."""
    kind = _PUSH.get(destination.kind)
    if kind is None:
        raise ValueError(f"destination kind {destination.kind!r} is not delivered by the dispatcher")
    return kind.from_stored(destination.settings)


def file_settings(destination: Destination) -> FileKind:
    """A file destination's settings; ValueError for a destination of another kind."""
    kind = _FILE.get(destination.kind)
    if kind is None:
        raise ValueError(f"destination kind {destination.kind!r} does not upload files")
    return kind.from_stored(destination.settings)


def sink_for(destination: Destination, config: Settings, *, account: str | None = None) -> Sink:
    """The sink that delivers to a push destination; ValueError for a destination of another kind.

    An email names the account: ``account``, else the one looked up through the destination's session.
    """
    settings = push_settings(destination)
    if account is None:
        session = Session.object_session(destination)
        account = session.scalar(select(Account.name).where(Account.id == destination.account_id)) \
            if session else None
    return settings.sink(config, account or "")
