"""Loopback addresses: a free port, and a URL that nothing listens on."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a server to start on, or a dead endpoint)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused_url() -> str:
    """An HTTP URL on 127.0.0.1 whose connections are refused."""
    return f"http://127.0.0.1:{free_port()}/hook"
