"""Who is calling: HTTP Basic (account name and password) or a Bearer API key; a client address that must wait
after failed logins gets 429 with Retry-After."""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Response, abort, current_app, jsonify, request

from gateway.accounts import check_api_key, check_password
from gateway.api.context import current_runtime
from gateway.errors import AuthError
from gateway.login_throttle import LoginThrottle, Throttled

# Checking a password costs a deliberate ~0.3 s of scrypt; a caller that sends the same
# right credentials with every request is remembered for a minute instead. The memory
# belongs to the app, so two apps over different stores never share an account id.
_CACHE_SECONDS = 60.0
_CACHE_KEY = "eventgw.password_cache"
_lock = threading.Lock()


def current_account() -> int:
    """The id of the calling account; AuthError (401) when credentials are missing or wrong."""
    rt = current_runtime()
    authorization = request.authorization
    if authorization is None:
        raise AuthError("credentials required: HTTP Basic (account name, password) or Bearer API key")
    if authorization.type == "bearer" and authorization.token:
        with rt.read_sessions() as session:
            return check_api_key(session, authorization.token)
    if authorization.type == "basic" and authorization.username and authorization.password is not None:
        name, password = authorization.username, authorization.password
        token = hashlib.sha256(f"{name}\0{password}".encode()).hexdigest()
        now = time.monotonic()
        with _lock:
            cache: dict[str, tuple[int, float]] = current_app.extensions.setdefault(_CACHE_KEY, {})
            hit = cache.get(token)
        if hit and hit[1] > now:
            return hit[0]
        with answering_throttled():
            account_id = check_password(rt.sessions, name, password, address=request.remote_addr,
                                        throttle=LoginThrottle.of(rt.settings))
        with _lock:
            cache[token] = (account_id, now + _CACHE_SECONDS)
        return account_id
    raise AuthError("unsupported Authorization header; use Basic or Bearer")


@contextmanager
def answering_throttled() -> Iterator[None]:
    """Answer a login the throttle refuses with 429 Too Many Requests, Retry-After and the JSON error body.

    Answered here rather than by the error handlers: only this answer carries a Retry-After header.
    """
    try:
        yield
    except Throttled as exc:
        response: Response = jsonify({"error": "too_many_attempts", "message": str(exc),
                                      "retry_after": exc.retry_after})
        response.status_code = 429
        response.headers["Retry-After"] = str(exc.retry_after)
        abort(response)


def forget_account(account_id: int) -> None:
    """Drop the remembered passwords of an account (its password changed): the old one stops working at once
    in this process, and within the minute in others."""
    with _lock:
        cache: dict[str, tuple[int, float]] = current_app.extensions.setdefault(_CACHE_KEY, {})
        for token in [token for token, (cached, _) in cache.items() if cached == account_id]:
            del cache[token]
