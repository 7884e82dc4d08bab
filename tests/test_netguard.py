"""The test suite's network guard: connections to non-loopback addresses fail, loopback and Unix sockets work."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tests.support.netguard import BlockedConnection, Guard


@pytest.mark.parametrize("address", [("192.0.2.1", 80), ("10.0.0.1", 443), ("0.0.0.0", 80)])
def test_ipv4_connects_beyond_loopback_are_refused_and_recorded(network_guard: Guard,
                                                                 address: tuple[str, int]) -> None:
    with socket.socket() as sock, pytest.raises(BlockedConnection, match="non-loopback"):
        sock.connect(address)
    assert network_guard.take() == [address]


@pytest.mark.parametrize("host", ["2001:db8::1", "::ffff:10.0.0.1", "fe80::1"])
def test_ipv6_connects_beyond_loopback_are_refused(network_guard: Guard, host: str) -> None:
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(BlockedConnection):
        sock.connect_ex((host, 80, 0, 0))
    assert network_guard.take() == [(host, 80, 0, 0)]


def test_create_connection_and_tls_go_through_the_guard(network_guard: Guard) -> None:
    with pytest.raises(BlockedConnection):
        socket.create_connection(("198.51.100.7", 443), timeout=1)
    assert network_guard.take() == [("198.51.100.7", 443)]


def test_loopback_and_unix_sockets_connect(tmp_path: Path, network_guard: Guard) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        for host in ("127.0.0.1", "localhost"):
            with socket.create_connection((host, port), timeout=2):
                server.accept()[0].close()
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
    assert network_guard.take() == []


def test_attempts_from_other_threads_are_recorded(network_guard: Guard) -> None:
    def attempt() -> None:
        with socket.socket() as sock:
            try:
                sock.connect(("203.0.113.9", 25))
            except OSError:
                pass

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    assert network_guard.take() == [("203.0.113.9", 25)]


def test_a_test_that_connects_beyond_loopback_fails_even_if_it_swallows_the_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import loopback_only, network_guard  # noqa: F401\n")
    pytester.makepyfile(test_leaky="""
        import socket

        def test_leaks():
            try:
                socket.create_connection(("192.0.2.10", 80), timeout=1)
            except OSError:
                pass
        """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*tried to connect to non-loopback addresses: [[]('192.0.2.10', 80)[]]*"])
