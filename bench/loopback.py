"""Loopback addresses for the benchmarks' servers."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on now (for a server to start on, or for a dead endpoint)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
