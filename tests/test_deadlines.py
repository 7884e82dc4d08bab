"""Overall deadlines of a delivery attempt (sinks/deadline.py): a receiver that drips its answer one byte at a
time, too slowly to trip any socket timeout, is cut off at the deadline, over HTTP, FTP and SMTP."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.destinations.http import HttpSettings
from gateway.errors import DeliveryError
from gateway.events import model
from sinks.deadline import _WATCHDOG, Deadline, for_transfer
from sinks.email import EmailSink, SmtpSettings
from sinks.ftp import FileTarget, uploader_for
from sinks.http import HttpSink
from sinks.outbound import OutboundPolicy
from tests.support.drip import serve_drip, serve_slow_drip
from tests.support.events import raw_event
from tests.support.http_receiver import Receiver
from tests.support.runtime import LOOPBACK_NETWORKS

LOOPBACK = OutboundPolicy.parse(LOOPBACK_NETWORKS)
EVENTS = model.validate_all([raw_event("e1"), raw_event("e2")])
# Each byte comes well within the socket timeout (2 s): only an overall deadline ends the exchange.
DRIP_SECONDS = 0.5


def elapsed_failure(action: object) -> tuple[DeliveryError, float]:
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        action()  # type: ignore[operator]
    return caught.value, time.monotonic() - started


def test_an_http_receiver_dripping_its_headers_is_cut_at_the_deadline() -> None:
    with serve_slow_drip(DRIP_SECONDS) as drip:
        sink = HttpSink(drip.url, timeout=2, deadline=3, policy=LOOPBACK)
        error, took = elapsed_failure(lambda: sink.deliver("msg-1", EVENTS))
    assert 2.9 <= took < 6
    assert error.retryable and drip.requests == 1
    assert str(error) == f"no complete answer from {drip.url.split('/')[2]} within the delivery deadline of 3 s"


def test_an_ftp_server_dripping_its_greeting_is_cut_at_the_deadline(tmp_path: Path) -> None:
    data = tmp_path / "events.csv"
    data.write_bytes(b"x\n" * 10)
    with serve_drip(b"220 " + b"w" * 100 + b"\r\n", DRIP_SECONDS) as drip:
        target = FileTarget(protocol="ftp", host="127.0.0.1", port=drip.port, username="u", password="p",
                            timeout=2, deadline=3, policy=LOOPBACK)
        error, took = elapsed_failure(lambda: uploader_for(target).upload(data, "events.csv"))
    assert 2.9 <= took < 6
    assert str(error) == f"127.0.0.1:{drip.port} did not take the file within the delivery deadline of 3 s"


def test_an_sftp_server_dripping_its_banner_is_cut_at_the_deadline(tmp_path: Path) -> None:
    data = tmp_path / "events.csv"
    data.write_bytes(b"x\n")
    with serve_drip(b"SSH-2.0-" + b"w" * 100 + b"\r\n", DRIP_SECONDS) as drip:
        target = FileTarget(protocol="sftp", host="127.0.0.1", port=drip.port, username="u", password="p",
                            known_hosts=f"[127.0.0.1]:{drip.port} ssh-ed25519 "
                                        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                            timeout=10, deadline=3, policy=LOOPBACK)
        error, took = elapsed_failure(lambda: uploader_for(target).upload(data, "events.csv"))
    assert 2.9 <= took < 6
    assert "within the delivery deadline of 3 s" in str(error)


def test_an_smtp_relay_dripping_its_greeting_is_cut_at_the_deadline() -> None:
    with serve_drip(b"220 " + b"w" * 100 + b"\r\n", DRIP_SECONDS) as drip:
        smtp = SmtpSettings(host="127.0.0.1", port=drip.port, security="none", sender="gw@example.com", timeout=2,
                            deadline=3)
        sink = EmailSink(smtp, recipients=["ops@example.com"], account="acme")
        error, took = elapsed_failure(lambda: sink.deliver("msg-1", EVENTS))
    assert 2.9 <= took < 6
    assert str(error) == f"127.0.0.1:{drip.port} did not take the message within the delivery deadline of 3 s"


def test_a_deadline_that_passed_does_not_touch_a_kept_alive_connection(http_receiver: Receiver) -> None:
    sink = HttpSink(http_receiver.url, timeout=1, deadline=1, policy=LOOPBACK)
    sink.deliver("msg-1", EVENTS)
    time.sleep(1.3)  # the first request's deadline passes while its connection waits in the pool
    sink.deliver("msg-2", EVENTS)
    first, second = http_receiver.wait_for(2)
    assert first.client_port == second.client_port
    sink.close()


def test_a_socket_watched_after_the_deadline_is_shut_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        with Deadline(0.05) as limit:
            time.sleep(0.3)
            assert limit.expired
            client = socket.create_connection(server.getsockname(), timeout=1)
            limit.watch(client)
            assert client.recv(1) == b""  # shut down: an end of file, not a wait
        client.close()


def test_a_webhook_deadline_is_the_gateway_s_or_its_own_smaller_timeout() -> None:
    config = load_settings(environ={}, delivery_deadline_seconds=20, http_timeout_seconds=5)
    assert HttpSettings(url="https://example.com/hook").sink(config, "acme").deadline == 20
    assert HttpSettings(url="https://example.com/hook", timeout_seconds=8).sink(config, "acme").deadline == 8
    assert HttpSettings(url="https://example.com/hook", timeout_seconds=60).sink(config, "acme").deadline == 20


def test_a_large_transfer_gets_time_for_its_size() -> None:
    assert for_transfer(30, 0) == 30
    assert for_transfer(30, 256 * 1024 * 100) == 130


def test_attempts_that_end_in_time_leave_nothing_behind() -> None:
    left, right = socket.socketpair()
    with left, right:
        for _ in range(2000):
            with Deadline(30) as limit:
                limit.watch(left)
        assert not limit.expired
        right.sendall(b"still open")
        assert left.recv(10) == b"still open"
    # The watchdog forgets attempts that ended, rather than holding them for 30 s each.
    assert len(_WATCHDOG._heap) < 200
