"""Request bodies within bounds: their Content-Encoding (gzip) decoded to at most max_body_bytes, and a
process-wide budget of body bytes handled at once, so concurrent large requests cannot exhaust memory."""
from __future__ import annotations

import ctypes
import json
import threading
import time
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import request

from gateway.api.errors import too_large_problem
from gateway.errors import TooLarge, Unsupported, ValidationError
from gateway.limits import BODY_RETRY_AFTER_SECONDS, BODY_WAIT_SECONDS, FREE_BODY_BYTES

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

IDENTITY = ("", "identity")
GZIP = ("gzip", "x-gzip")
SUPPORTED = "gzip or identity (none)"
GZIP_MAGIC = b"\x1f\x8b"
# What a gzip body counts for in the budget, per compressed byte: JSON events typically shrink
# five to ten times. One that inflates further is still cut off at max_body_bytes.
GZIP_RATIO = 10


def read_body(limit: int) -> bytes:
    """The current request's body, decoded as its Content-Encoding says, at most ``limit`` bytes decoded.

    TooLarge past the limit (a compressed body counts decoded), Unsupported for an encoding other than
    gzip, ValidationError for a body that is not the gzip it claims to be, or that is gzip without the
    header saying so.
    """
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in IDENTITY + GZIP:
        raise Unsupported(f"{encoding!r} is not supported; send {SUPPORTED}", "Content-Encoding")
    body = request.get_data(cache=False)
    if encoding in IDENTITY:
        if body.startswith(GZIP_MAGIC):
            raise ValidationError("is not UTF-8 text (byte 1); compressed? send Content-Encoding: gzip", "body")
        return body
    return gunzip(body, limit)


def gunzip(data: bytes, limit: int) -> bytes:
    """``data`` (one or more gzip members) decompressed, refused with TooLarge once past ``limit`` bytes:
    a small body that inflates to gigabytes costs no more than ``limit``."""
    parts: list[bytes] = []
    size = 0
    while True:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            part = decompressor.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise ValidationError(f"is not valid gzip data ({exc})", "body") from None
        size += len(part)
        if size > limit:
            raise TooLarge(too_large_problem(limit))
        parts.append(part)
        if not decompressor.eof:
            if decompressor.unconsumed_tail:  # stopped at the limit, with more to come
                raise TooLarge(too_large_problem(limit))
            raise ValidationError("is truncated gzip data", "body")
        data = decompressor.unused_data.lstrip(b"\x00")
        if not data:
            return b"".join(parts)


class BodyBudget:
    """WSGI middleware admitting request bodies while their bytes in flight stay within a budget.

    A parsed body takes several times its size in memory, so a few large bodies at once can
    take the whole machine's. Bodies up to FREE_BODY_BYTES always pass; a larger one waits
    until the budget has room for it (one on its own is always admitted, however large), at
    most ``wait`` seconds, after which it gets a 503 with Retry-After. A gzip body counts as
    GZIP_RATIO times its size, at most ``limit`` (what it may inflate to). When a large body
    is done, the memory it took is handed back to the system.
    """

    def __init__(self, app: WSGIApplication, budget: int, limit: int, wait: float = BODY_WAIT_SECONDS) -> None:
        self.app = app
        self.budget = budget
        self.limit = limit
        self.wait = wait
        self.in_flight = 0
        self.changed = threading.Condition()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        size = self._size(environ)
        if size <= FREE_BODY_BYTES:
            return self.app(environ, start_response)
        if not self._admit(size):
            return _busy(start_response)
        try:
            return self.app(environ, start_response)
        finally:
            self._release(size)

    def _size(self, environ: WSGIEnvironment) -> int:
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 0
        encoding = str(environ.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
        return min(self.limit, size * GZIP_RATIO) if encoding in GZIP else size

    def _admit(self, size: int) -> bool:
        deadline = time.monotonic() + self.wait
        with self.changed:
            while self.in_flight and self.in_flight + size > self.budget:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            self.in_flight += size
            return True

    def _release(self, size: int) -> None:
        with self.changed:
            self.in_flight -= size
            self.changed.notify_all()
        give_back_memory()


def _busy(start_response: StartResponse) -> list[bytes]:
    body = json.dumps({"error": "busy", "message": "the gateway is handling as many large request bodies as its "
                       f"memory allows; try again in {BODY_RETRY_AFTER_SECONDS} s"}).encode()
    start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(body))),
                                               ("Retry-After", str(BODY_RETRY_AFTER_SECONDS))])
    return [body]


def _libc_function(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOPT = _libc_function("mallopt")
_MALLOC_TRIM = _libc_function("malloc_trim")
_M_MMAP_THRESHOLD = -3
# glibc serves a large allocation from its own mapping, given back when freed, only above a
# threshold that grows to the largest block freed so far (up to 32 MiB); after the first large
# body, the next ones come from heaps that stay as large as their peak. A fixed threshold
# keeps every request buffer, decoded text and large list in a mapping of its own.
MMAP_THRESHOLD_BYTES = 2**20


def tune_memory() -> None:
    """Have the C heap give large blocks back to the system when they are freed (glibc only)."""
    if _MALLOPT is not None:
        _MALLOPT(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def give_back_memory() -> None:
    """Return the C heap's free pages to the system (glibc keeps them otherwise, however many)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
