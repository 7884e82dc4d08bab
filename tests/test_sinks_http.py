"""Webhook delivery against a real HTTP server: formats, signatures, and how failures read."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest

from gateway.errors import DeliveryError
from gateway.events import formats
from gateway.events import model as ev
from sinks.http import HttpSink, check_headers, generate_secret, parse_secret
from sinks.outbound import OutboundPolicy
from tests.support.http_receiver import Receiver, Reply
from tests.support.runtime import LOOPBACK_NETWORKS

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdefghijklmnopqrstuv").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another secret of thirty-two by").decode()

EVENTS = ev.validate_all(
    [
        {"id": "e1", "type": "OPEN", "occurred_at": "2024-05-01T10:00:00Z", "email": "a@example.com",
         "message_name": "May news"},
        {"id": "e2", "type": "CLICK", "occurred_at": "2024-05-01T10:05:00Z", "email": "b@example.com",
         "url": "https://example.com/ä?x=1&y=2", "data": {"tags": ["x", "y"]}},
        {"id": "e3", "type": "BOUNCE", "occurred_at": "2024-05-01T11:00:00Z", "email": "c@example.com",
         "reason": "mailbox full", "category": "soft"},
    ]
)


def signature_ok(headers: object, body: bytes, secret: str) -> bool:
    """Check a Standard Webhooks signature from first principles."""
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return expected in headers["webhook-signature"].split(" ")


def loopback_sink(url: str, **options: Any) -> HttpSink:
    """A sink whose policy lets it reach the receivers the tests start on loopback."""
    return HttpSink(url, policy=OutboundPolicy.parse(LOOPBACK_NETWORKS), **options)


def failure(sink: HttpSink) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        sink.deliver("msg-1", EVENTS)
    return caught.value


def test_json_posts_the_batch_as_one_signed_array(http_receiver: Receiver) -> None:
    receipt = loopback_sink(http_receiver.url, secrets=[SECRET]).deliver("msg-1", EVENTS)

    (request,) = http_receiver.wait_for(1)
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == [formats.to_json(e) for e in EVENTS]
    assert request.headers["webhook-id"] == "msg-1"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    assert signature_ok(request.headers, request.body, SECRET)
    assert (receipt.status, receipt.excerpt) == (200, "ok")


def test_json_single_posts_one_object_per_event_with_its_own_id(http_receiver: Receiver) -> None:
    loopback_sink(http_receiver.url, format="json-single", secrets=[SECRET]).deliver("msg-1", EVENTS)

    requests = http_receiver.wait_for(3)
    assert [r.headers["webhook-id"] for r in requests] == ["msg-1_0", "msg-1_1", "msg-1_2"]
    bodies = [json.loads(r.body) for r in requests]
    assert bodies[1] == {"event": "click", **formats.to_json(EVENTS[1])}
    assert [b["event"] for b in bodies] == ["open", "click", "bounce"]
    assert all(signature_ok(r.headers, r.body, SECRET) for r in requests)


def test_form_posts_legacy_fields_per_event(http_receiver: Receiver) -> None:
    loopback_sink(http_receiver.url, format="form", secrets=[SECRET]).deliver("msg-1", EVENTS)

    requests = http_receiver.wait_for(3)
    assert requests[1].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qsl(requests[1].body.decode()) == formats.to_form(EVENTS[1])
    assert ("clickUrl", "https://example.com/ä?x=1&y=2") in parse_qsl(requests[1].body.decode())
    assert all(signature_ok(r.headers, r.body, SECRET) for r in requests)


def test_every_secret_signs_so_receivers_can_rotate(http_receiver: Receiver) -> None:
    loopback_sink(http_receiver.url, secrets=[SECRET, OTHER_SECRET]).deliver("msg-1", EVENTS)

    (request,) = http_receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert signature_ok(request.headers, request.body, SECRET)
    assert signature_ok(request.headers, request.body, OTHER_SECRET)


def test_custom_headers_and_basic_auth_are_sent(http_receiver: Receiver) -> None:
    sink = loopback_sink(http_receiver.url, headers={"X-Tenant": "acme"}, basic_auth=("hook", "pä:ss"))
    sink.deliver("msg-1", EVENTS)

    (request,) = http_receiver.wait_for(1)
    assert request.headers["X-Tenant"] == "acme"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode("hook:pä:ss".encode()).decode()
    assert "webhook-signature" not in request.headers


def test_a_retry_carries_the_same_webhook_id(http_receiver: Receiver) -> None:
    sink = loopback_sink(http_receiver.url, format="json-single")
    http_receiver.queue([Reply(status=200), Reply(status=500)])
    with pytest.raises(DeliveryError, match="event 2 of 3: HTTP 500"):
        sink.deliver("msg-1", EVENTS)
    sink.deliver("msg-1", EVENTS)

    ids = [r.headers["webhook-id"] for r in http_receiver.wait_for(5)]
    assert ids == ["msg-1_0", "msg-1_1", "msg-1_0", "msg-1_1", "msg-1_2"]


def test_connections_are_kept_alive_between_batches(http_receiver: Receiver) -> None:
    sink = loopback_sink(http_receiver.url)
    sink.deliver("msg-1", EVENTS)
    sink.deliver("msg-2", EVENTS)

    first, second = http_receiver.wait_for(2)
    assert first.client_port == second.client_port


def test_server_error_is_retryable_and_shows_the_answer(http_receiver: Receiver) -> None:
    http_receiver.respond(status=500, body=b"database\x00 down\r\n")

    error = failure(loopback_sink(http_receiver.url))
    assert error.retryable and error.status == 500
    assert "HTTP 500" in str(error) and error.excerpt == "database down"


def test_gone_is_permanent(http_receiver: Receiver) -> None:
    http_receiver.respond(status=410, body=b"endpoint removed")

    error = failure(loopback_sink(http_receiver.url))
    assert not error.retryable and error.status == 410


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120),
        ("HTTP date 300 s ahead", 300),
        ("999999", 3600),
    ],
)
def test_too_many_requests_passes_retry_after_on(http_receiver: Receiver, header: str, expected: float) -> None:
    if header.startswith("HTTP date"):
        header = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=300), usegmt=True)
    http_receiver.respond(status=429, headers={"Retry-After": header})

    error = failure(loopback_sink(http_receiver.url))
    assert error.retryable and error.status == 429
    assert error.retry_after == pytest.approx(expected, abs=3)


def test_redirect_is_a_failure_naming_the_new_location(http_receiver: Receiver) -> None:
    http_receiver.respond(status=301, headers={"Location": "https://elsewhere.example/hook"})

    error = failure(loopback_sink(http_receiver.url))
    assert error.retryable and error.status == 301
    assert "https://elsewhere.example/hook" in str(error)


def test_no_answer_within_the_timeout(http_receiver: Receiver) -> None:
    http_receiver.respond(delay=3)

    started = time.monotonic()
    error = failure(loopback_sink(http_receiver.url, timeout=0.5))
    assert time.monotonic() - started < 2
    assert error.retryable
    assert str(error) == f"no answer from {http_receiver.url.split('/')[2]} within 0.5 s"


def test_connection_closed_without_an_answer(http_receiver: Receiver) -> None:
    http_receiver.respond(close=True)

    error = failure(loopback_sink(http_receiver.url))
    assert error.retryable and "closed the connection without answering" in str(error)


def test_connection_refused(http_receiver: Receiver) -> None:
    url = http_receiver.url.replace(http_receiver.url.split(":")[2].split("/")[0], "9")

    error = failure(loopback_sink(url, timeout=1))
    # Refused, unreachable or silent read alike: the errors must not map a network.
    assert error.retryable and str(error) == "could not connect to 127.0.0.1:9"


def test_an_endless_answer_is_not_read_to_the_end(http_receiver: Receiver) -> None:
    http_receiver.respond(endless=True)

    receipt = loopback_sink(http_receiver.url, timeout=2).deliver("msg-1", EVENTS)
    assert receipt.status == 200
    assert receipt.excerpt == "x" * 200


def test_self_signed_certificate_is_refused(https_receiver: Receiver) -> None:
    error = failure(loopback_sink(https_receiver.url, timeout=2))
    assert error.retryable and "certificate" in str(error)
    assert https_receiver.requests == []


# The sink was told not to verify the certificate; urllib3 warns about exactly that.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verification_can_be_turned_off(https_receiver: Receiver) -> None:
    assert loopback_sink(https_receiver.url, verify_tls=False).deliver("msg-1", EVENTS).status == 200


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("ftp://example.com/x", {}, "not an http or https URL"),
        ("file:///etc/passwd", {}, "not an http or https URL"),
        ("https://user:pw@example.com/hook", {}, "basic_auth"),
        ("https://example.com/hook", {"format": "xml"}, "unknown format"),
        ("https://example.com/hook", {"secrets": ["hunter2"]}, "whsec_"),
        ("https://example.com/hook", {"headers": {"Webhook-Id": "x"}}, "Webhook-Id"),
        ("https://example.com/hook", {"headers": {"Authorization": "Bearer x"}}, "Authorization .*basic_auth"),
        ("https://example.com/hook", {"headers": {"X-A": "1\r\nHost: evil"}}, "X-A .* on one line"),
    ],
)
def test_bad_configuration_is_refused_up_front(url: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpSink(url, **kwargs)


def test_generated_secrets_parse_and_short_ones_do_not() -> None:
    assert len(parse_secret(generate_secret())) == 24
    assert generate_secret() != generate_secret()
    with pytest.raises(ValueError, match="at least 24 bytes"):
        parse_secret("whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="base64"):
        parse_secret("whsec_not base64!")


def test_a_json_batch_over_max_bytes_goes_as_several_posts_each_within_the_limit(http_receiver):
    events = [
        {"id": f"e{i}", "type": "OPEN", "occurred_at": datetime(2026, 11, 24, tzinfo=timezone.utc),
         "email": f"user{i}@example.com", "data": {"pad": "x" * 200}}
        for i in range(20)
    ]
    sink = loopback_sink(http_receiver.url, format="json", max_bytes=2000)
    try:
        sink.deliver("msg_split", events)
    finally:
        sink.close()
    bodies = [json.loads(request.body) for request in http_receiver.requests]
    assert len(bodies) > 1
    assert all(len(request.body) <= 2000 for request in http_receiver.requests)
    assert [event["id"] for body in bodies for event in body] == [f"e{i}" for i in range(20)]
    ids = [request.headers["webhook-id"] for request in http_receiver.requests]
    assert ids == [f"msg_split_{n}" for n in range(len(bodies))]


@pytest.mark.parametrize("name", ["Authorization", "authorization", "Cookie", "Host", "Proxy-Authorization",
                                  "Proxy-Connection", "Content-Length", "Transfer-Encoding", "Connection"])
def test_credential_and_connection_headers_cannot_be_configured(name: str) -> None:
    with pytest.raises(ValueError, match=f"header {name} cannot be configured"):
        check_headers({"X-Tenant": "acme", name: "value"})


@pytest.mark.parametrize("name", ["X Tenant", "X-Tenant:", "", "Tenant\n"])
def test_malformed_header_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid header name"):
        check_headers({name: "value"})


def test_by_default_the_sink_refuses_loopback_without_connecting(http_receiver: Receiver) -> None:
    error = failure(HttpSink(http_receiver.url))
    assert str(error) == "address not allowed by outbound policy: 127.0.0.1"
    assert not error.retryable
    assert http_receiver.requests == []


def test_an_answer_is_shown_as_a_short_printable_excerpt(http_receiver: Receiver) -> None:
    http_receiver.respond(status=500, body=b"line one\r\n\tline\x00 two\x1b[31m \xe2\x80\xaeevil " + b"y" * 1000)

    error = failure(loopback_sink(http_receiver.url))
    assert error.excerpt.startswith("line one line two[31m evil yyy")
    assert len(error.excerpt) == 200 and error.excerpt.isprintable()
    assert str(error) == f"HTTP 500 from {http_receiver.url}: {error.excerpt}"
