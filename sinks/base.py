"""What every sink shares: the Sink protocol, the Receipt it returns, and how transport failures read."""
from __future__ import annotations

import errno
import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import DeliveryError
from gateway.events.model import Event

# What of a peer's answer is kept and shown: enough to recognise an error page, too little
# to read a document through the gateway from a host it can reach.
EXCERPT_LIMIT = 200
_SPACE = re.compile(r"\s+")
# Errors of connecting that say only that the peer could not be reached.
_UNREACHABLE = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                          errno.ENETDOWN, errno.EADDRNOTAVAIL})


@dataclass(frozen=True)
class Receipt:
    """Proof of one delivery: the peer's status code (if the transport has one), its answer, and what was done."""

    status: int | None
    excerpt: str
    detail: str


class Sink(Protocol):
    """A transport that delivers one batch of events."""

    def deliver(self, message_id: str, events: Sequence[Event]) -> Receipt:
        """Deliver ``events`` or raise DeliveryError.

        ``message_id`` is the same on every retry of the same batch, so receivers can drop repeats.
        """
        ...


def excerpt(data: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """At most ``limit`` printable characters of a peer's answer, safe to log and show: runs of white
    space become one space, control and other invisible characters are removed."""
    text = data[: limit * 4].decode("utf-8", errors="replace") if isinstance(data, bytes) else data[: limit * 4]
    text = _SPACE.sub(" ", text)
    return "".join(c for c in text if c.isprintable()).strip()[:limit]


def unreachable(peer: str) -> DeliveryError:
    """The one retryable error for a target that could not be connected to, refused, unreachable or silent
    alike: telling these apart would let an account map the networks the gateway can reach."""
    return DeliveryError(f"could not connect to {peer}", retryable=True)


def network_error(exc: OSError, peer: str, timeout: float, during: str = "", *, trusted: bool = False
                  ) -> DeliveryError:
    """A retryable DeliveryError that says in plain words what went wrong talking to ``peer`` (``host:port``).

    For a target an account supplied, a failure to connect reads alike whatever its cause (see
    ``unreachable``); a ``trusted`` peer (the operator's SMTP relay) gets the precise reason.
    """
    if not trusted and (isinstance(exc, ConnectionRefusedError) or exc.errno in _UNREACHABLE):
        message = unreachable(peer).args[0]
    elif isinstance(exc, ConnectionRefusedError):
        message = f"connection refused by {peer}"
    elif isinstance(exc, TimeoutError):
        message = f"no answer from {peer} within {timeout:g} s"
    elif isinstance(exc, ConnectionResetError):
        message = f"connection reset by {peer}"
    elif isinstance(exc, (ConnectionAbortedError, BrokenPipeError)):
        message = f"connection to {peer} closed unexpectedly"
    elif isinstance(exc, socket.gaierror):
        message = f"cannot resolve the host name of {peer}: {exc.strerror}"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        message = f"TLS certificate of {peer} not accepted: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError):
        message = f"TLS with {peer} failed: {exc.reason or exc}"
    else:
        message = f"network error with {peer}: {exc.strerror or exc}"
    return DeliveryError(f"{message} during {during}" if during else message, retryable=True)


def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """A client TLS context that trusts the system CAs (or ``ca_file``); ``verify`` False accepts any certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
