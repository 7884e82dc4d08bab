"""The test suite's network guard: any connection attempt to an address other than loopback fails.

Tests talk only to servers they start on 127.0.0.1 or ::1. A bug in the outbound address
policy, or a test that names a real host, must fail a test instead of sending traffic
anywhere: the guard refuses the connection before it is made (as an OSError, so the code
under test behaves as on a network failure) and records it, and the suite's autouse fixture
fails the test that made it. Unix sockets and connections made by subprocesses or by C
libraries (libpq) are not Python socket calls and are out of its scope.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any

_LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")


class BlockedConnection(OSError):
    """A connection attempt to a non-loopback address, refused by the test suite's guard."""

    def __init__(self, address: object) -> None:
        super().__init__(errno.EPERM, f"test network guard: connection to non-loopback address {address!r} refused")
        self.address = address


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a numeric address as a socket address carries it) is a loopback address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return address in _LOOPBACK_V4
    return address == ipaddress.IPv6Address("::1")


def _numeric(host: str, family: int) -> list[str]:
    """The numeric addresses a connect to ``host`` may reach: itself, or what the name resolves to."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return [host]
    except ValueError:
        pass
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)] or [host]
    except OSError:
        return [host]


class Guard:
    """Refuses and records connections of Python sockets to non-loopback addresses while installed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocked: list[object] = []
        self._originals: dict[str, Callable[..., Any]] = {}

    def install(self) -> None:
        """Patch ``socket.socket.connect`` and ``connect_ex`` (``create_connection`` and TLS use them)."""
        guard = self
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
        self._originals = {"connect": connect, "connect_ex": connect_ex}

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            guard.check(sock, address)
            connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            guard.check(sock, address)
            return connect_ex(sock, address)

        socket.socket.connect = guarded_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]

    def uninstall(self) -> None:
        """Put the original socket methods back."""
        for name, original in self._originals.items():
            setattr(socket.socket, name, original)
        self._originals = {}

    def check(self, sock: socket.socket, address: Any) -> None:
        """Raise BlockedConnection (and record it) if ``address`` of an IP socket is not loopback."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        host = address[0] if isinstance(address, tuple) and address else address
        if isinstance(host, str) and all(is_loopback(a) for a in _numeric(host, sock.family)):
            return
        with self._lock:
            self._blocked.append(address)
        raise BlockedConnection(address)

    def take(self) -> list[object]:
        """The addresses refused since the last call, forgotten once taken."""
        with self._lock:
            blocked, self._blocked = self._blocked, []
        return blocked
