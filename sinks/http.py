"""Webhook delivery: POST events to an HTTP(S) URL, signed the Standard Webhooks way.

Formats:

* ``json``: one POST per batch; the body is a JSON array of ``events.to_json(event)``.
* ``json-single``: one POST per event; the body is one JSON object, ``{"event": "<type in
  lower case>"}`` followed by the fields of ``events.to_json(event)``, for example
  ``{"event": "click", "id": "e1", "type": "CLICK", "occurred_at": "...", "email": "...",
  "url": "..."}``.
* ``form``: one POST per event; ``application/x-www-form-urlencoded`` legacy form fields
  (``events.to_form``).

Every request carries ``webhook-id`` (the batch's message id for ``json``; ``<message id>_<n>``
for the n-th event, counting from 0, in the single formats; both stable across retries),
``webhook-timestamp`` (Unix seconds of this attempt) and, when secrets are configured,
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`` for each secret,
separated by spaces, so a receiver can rotate secrets without downtime.

Connections go only to addresses the outbound policy permits (``sinks.outbound``), to exactly
the address checked, with TLS still verifying the URL's host name. Each request (connect, send
and the whole answer) must end within the sink's deadline (``sinks.deadline``), however slowly
the receiver drips its answer; redirects are never followed.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import re
import secrets as random_source
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from gateway.errors import DeliveryError
from gateway.events import formats
from gateway.events.model import Event
from sinks.base import Receipt, excerpt, network_error, unreachable
from sinks.deadline import Deadline, watch
from sinks.outbound import PUBLIC_ONLY, OutboundPolicy

FORMATS = ("json", "json-single", "form")
DEFAULT_USER_AGENT = "eventgw-webhooks/1"
SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
# Enough of an answer to show and to let a kept-alive connection be reused; anything longer
# is not read, and its connection is closed instead.
MAX_RESPONSE_BYTES = 64 * 1024
# Headers the sink sets itself, and headers that carry credentials or steer the connection
# (a configured Authorization would sneak past basic_auth; Host, Cookie and Proxy-* could make
# a receiver or a proxy on the way treat the request as someone else's).
_RESERVED_HEADERS = frozenset({"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"})
_REFUSED_HEADERS = frozenset({
    "authorization", "cookie", "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
    "trailer", "upgrade", "expect",
})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
MAX_HEADERS = 20
MAX_HEADER_VALUE = 1000


def parse_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError if it is malformed or shorter than 24 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except binascii.Error:
        raise ValueError(f"a webhook secret must be {SECRET_PREFIX!r} followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret must hold at least {MIN_SECRET_BYTES} bytes, this one has {len(key)}")
    return key


def generate_secret() -> str:
    """A new random secret: ``whsec_`` and the base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(MIN_SECRET_BYTES)).decode("ascii")


def check_url(url: str) -> urllib3.util.Url:
    """``url`` parsed, if the sink can post to it; ValueError saying why not."""
    try:
        parsed = urllib3.util.parse_url(url)
    except urllib3.exceptions.LocationParseError:
        raise ValueError(f"{url!r} is not an http or https URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{url!r} is not an http or https URL")
    if parsed.auth:
        # URLs end up in logs and error messages; credentials must not.
        raise ValueError("put credentials in basic_auth, not in the URL")
    return parsed


def url_target(url: str) -> tuple[str, int]:
    """The host (an IPv6 address without brackets) and port a checked ``url`` connects to."""
    return _target(check_url(url))


def _target(parsed: urllib3.util.Url) -> tuple[str, int]:
    host = (parsed.host or "").strip("[]")
    return host, parsed.port or (443 if parsed.scheme == "https" else 80)


def check_headers(headers: Mapping[str, str]) -> None:
    """ValueError naming the first header that cannot be configured: one the sink sets itself, one that
    carries credentials or steers the connection (Authorization: use basic_auth; Host, Cookie, Proxy-*),
    or a malformed name or value."""
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers can be configured")
    for name, value in headers.items():
        lowered = name.lower()
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"{excerpt(name, 100)!r} is not a valid header name")
        if lowered in _RESERVED_HEADERS:
            raise ValueError(f"header {name} is set by the sink and cannot be configured")
        if lowered == "authorization":
            raise ValueError(f"header {name} cannot be configured; give credentials in basic_auth")
        if lowered in _REFUSED_HEADERS or lowered.startswith("proxy-"):
            raise ValueError(f"header {name} cannot be configured")
        if len(value) > MAX_HEADER_VALUE or any(c in value for c in "\r\n\x00"):
            raise ValueError(f"header {name} must have a value of at most {MAX_HEADER_VALUE} characters "
                             "on one line")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<signature>`` entry of the ``webhook-signature`` header for ``secret``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(parse_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def render(format: str, events: Sequence[Event], max_bytes: int | None = None) -> list[tuple[str, bytes]]:
    """The request bodies of a batch in ``format``, each with its Content-Type.

    ``events`` are as the store reads them (``store.rows.to_event``). In ``json`` a batch
    is one array, or with ``max_bytes`` as few arrays as keep each body within it (an
    event larger than the limit still goes, alone).
    """
    if format == "json":
        if max_bytes is None:
            return [("application/json", _json(list(events)))]
        bodies: list[tuple[str, bytes]] = []
        chunk: list[bytes] = []
        size = 2
        for event in events:
            item = _json(event)
            if chunk and size + len(item) + 1 > max_bytes:
                bodies.append(("application/json", b"[" + b",".join(chunk) + b"]"))
                chunk, size = [], 2
            chunk.append(item)
            size += len(item) + 1
        if chunk or not bodies:
            bodies.append(("application/json", b"[" + b",".join(chunk) + b"]"))
        return bodies
    if format == "json-single":
        return [("application/json", _json({"event": e["type"].lower(), **e})) for e in events]
    return [("application/x-www-form-urlencoded", urlencode(formats.to_form(e)).encode("ascii")) for e in events]


def _json(value: object) -> bytes:
    # Events come as the store reads them (store.rows.to_event), in the form events.to_json
    # gives, except that times are datetimes: aware and in UTC, they come out exactly as
    # events.iso writes them, ISO 8601 with a Z.
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def _open(conn: HTTPConnection, policy: OutboundPolicy) -> socket.socket:
    """A new socket for ``conn``, to an address the policy permits, under the running attempt's deadline."""
    timeout = conn.timeout if isinstance(conn.timeout, (int, float)) else None
    try:
        sock = policy.connect(conn.host, conn.port or 80, timeout)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(conn, f"connection to {conn.host} timed out") from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"failed to establish a new connection: {exc}") from exc
    for option in conn.socket_options or ():
        sock.setsockopt(*option)
    return watch(sock)


class _Connection(HTTPConnection):
    """An HTTP connection made by the outbound policy, its socket watched by each request's deadline."""

    def __init__(self, *args: Any, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy

    def _new_conn(self) -> socket.socket:
        return _open(self, self.policy)

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection, made by an earlier request
            watch(self.sock)
        super().request(*args, **kwargs)


class _SecureConnection(_Connection, HTTPSConnection):
    """``_Connection`` over TLS; the certificate is checked against the URL's host name, not the address."""


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _SecurePool(HTTPSConnectionPool):
    ConnectionCls = _SecureConnection


class HttpSink:
    """POSTs batches to one URL over a connection pool kept for the life of the sink.

    ``timeout`` bounds connecting and each wait for the receiver; ``deadline`` each whole
    request (connect, send, and the whole answer). ``policy`` says which addresses the URL may
    reach (by default public ones only).
    """

    def __init__(
        self,
        url: str,
        *,
        format: str = "json",
        secrets: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        timeout: float = 10.0,
        deadline: float = 30.0,
        policy: OutboundPolicy = PUBLIC_ONLY,
        verify_tls: bool = True,
        max_retry_after: float = 3600.0,
        max_bytes: int | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        parsed = check_url(url)
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        for secret in secrets:
            parse_secret(secret)
        check_headers(headers or {})
        self.url = url
        self.format = format
        self.secrets = tuple(secrets)
        self.timeout = min(timeout, deadline)
        self.deadline = deadline
        self.max_retry_after = max_retry_after
        self.max_bytes = max_bytes
        host, port = _target(parsed)
        self._peer = f"{parsed.host}:{port}"
        self._path = parsed.request_uri
        self._headers = {"User-Agent": user_agent, **(headers or {})}
        if basic_auth:
            # UTF-8, as RFC 7617 recommends (urllib3's helper would use Latin-1).
            token = base64.b64encode(":".join(basic_auth).encode("utf-8")).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        timeouts = urllib3.Timeout(connect=self.timeout, read=self.timeout)
        self._pool: HTTPConnectionPool
        if parsed.scheme == "https":
            self._pool = _SecurePool(host, port, timeout=timeouts, retries=False, maxsize=4, policy=policy,
                                     cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE")
        else:
            self._pool = _Pool(host, port, timeout=timeouts, retries=False, maxsize=4, policy=policy)

    def deliver(self, message_id: str, events: Sequence[Event]) -> Receipt:
        """POST the batch (one request; several when ``max_bytes`` splits a json batch; one per
        event in the single formats); DeliveryError on the first failure.

        After a failure part-way, a retry sends every request again with the same webhook
        ids, so the receiver can skip those it already has.
        """
        bodies = render(self.format, events, self.max_bytes)
        status, answer = None, b""
        for index, (content_type, body) in enumerate(bodies):
            webhook_id = message_id if len(bodies) == 1 and self.format == "json" else f"{message_id}_{index}"
            try:
                status, answer = self._post(webhook_id, content_type, body)
            except DeliveryError as exc:
                if len(bodies) == 1:
                    raise
                raise DeliveryError(
                    f"{'request' if self.format == 'json' else 'event'} {index + 1} of {len(bodies)}: {exc}",
                    retryable=exc.retryable,
                    retry_after=exc.retry_after,
                    status=exc.status,
                    excerpt=exc.excerpt,
                ) from exc
        return Receipt(status, excerpt(answer), f"{len(bodies)} POST(s) to {self.url}, HTTP {status}")

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._pool.close()

    def _post(self, webhook_id: str, content_type: str, body: bytes) -> tuple[int, bytes]:
        timestamp = int(time.time())
        headers = {
            **self._headers,
            "Content-Type": content_type,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
        }
        if self.secrets:
            headers["webhook-signature"] = " ".join(sign(s, webhook_id, timestamp, body) for s in self.secrets)
        with Deadline(self.deadline) as limit:
            try:
                response = self._pool.urlopen(
                    "POST", self._path, body=body, headers=headers, redirect=False, preload_content=False,
                )
            except HTTPError as exc:
                raise self._transport_error(exc, limit) from exc
            try:
                answer = self._read_bounded(response)
            finally:
                response.release_conn()
        self._check(response, answer)
        return response.status, answer

    def _read_bounded(self, response: urllib3.BaseHTTPResponse) -> bytes:
        """Up to MAX_RESPONSE_BYTES of the body; the connection is dropped if more remains or reading fails."""
        try:
            answer = response.read(MAX_RESPONSE_BYTES + 1)
        except (HTTPError, OSError, http.client.HTTPException):
            # The status line has arrived and decides the outcome; the body is only for show.
            response.close()
            return b""
        if len(answer) > MAX_RESPONSE_BYTES:
            response.close()
        return answer[:MAX_RESPONSE_BYTES]

    def _check(self, response: urllib3.BaseHTTPResponse, answer: bytes) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        shown = excerpt(answer)
        if 300 <= status < 400:
            target = excerpt(response.headers.get("Location", "(no Location)"))
            message = f"HTTP {status} from {self.url}: redirected to {target} (not followed; update the URL)"
        else:
            message = f"HTTP {status} from {self.url}" + (f": {shown}" if shown else "")
        retry_after = None
        if status in (429, 503):
            retry_after = self._retry_after(response.headers.get("Retry-After"))
        raise DeliveryError(
            message, retryable=status != 410, retry_after=retry_after, status=status, excerpt=shown
        )

    def _retry_after(self, value: str | None) -> float | None:
        """Seconds from a Retry-After header (seconds or an HTTP date), capped at max_retry_after."""
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        return min(max(seconds, 0.0), self.max_retry_after)

    def _transport_error(self, exc: HTTPError, limit: Deadline) -> DeliveryError:
        if limit.expired:
            return DeliveryError(
                f"no complete answer from {self._peer} within the delivery deadline of {round(limit.seconds, 1):g} s")
        if isinstance(exc, NewConnectionError) and isinstance(exc.__cause__, OSError):
            return network_error(exc.__cause__, self._peer, self.timeout)
        if isinstance(exc, ConnectTimeoutError):
            return unreachable(self._peer)
        if isinstance(exc, ReadTimeoutError):
            return DeliveryError(f"no answer from {self._peer} within {self.timeout:g} s")
        cause = exc.args[-1] if exc.args else None
        if isinstance(exc, SSLError) and isinstance(cause, OSError):
            return network_error(cause, self._peer, self.timeout)
        if isinstance(exc, ProtocolError) and isinstance(cause, http.client.RemoteDisconnected):
            return DeliveryError(f"{self._peer} closed the connection without answering")
        if isinstance(exc, ProtocolError) and isinstance(cause, OSError):
            return network_error(cause, self._peer, self.timeout)
        return DeliveryError(f"HTTP request to {self._peer} failed: {exc}")
