"""What every sink shares: the Sink protocol, the Receipt it returns, and how transport failures read."""
from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import DeliveryError
from gateway.events.model import Event

EXCERPT_LIMIT = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


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
    """At most ``limit`` characters of a peer's answer, safe to log and show (control characters removed)."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return _CONTROL.sub("", text[: limit * 2])[:limit]


def network_error(exc: OSError, peer: str, timeout: float, during: str = "") -> DeliveryError:
    """A retryable DeliveryError that says in plain words what went wrong talking to ``peer`` (``host:port``)."""
    if isinstance(exc, ConnectionRefusedError):
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
