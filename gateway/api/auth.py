"""Who is calling: HTTP Basic (account name and password) or a Bearer API key."""
from __future__ import annotations

import hashlib
import threading
import time

from flask import current_app, request

from gateway.accounts import check_api_key, check_password
from gateway.api.context import current_runtime
from gateway.errors import AuthError

# Checking a password costs a deliberate ~50 ms of scrypt; a caller that sends the same
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
        account_id = check_password(rt.sessions, name, password,
                                    failure_limit=rt.settings.login_failure_limit,
                                    lockout_seconds=rt.settings.login_backoff_max_seconds)
        with _lock:
            cache[token] = (account_id, now + _CACHE_SECONDS)
        return account_id
    raise AuthError("unsupported Authorization header; use Basic or Bearer")


def forget_account(account_id: int) -> None:
    """Drop the remembered passwords of an account (its password changed): the old one stops working at once
    in this process, and within the minute in others."""
    with _lock:
        cache: dict[str, tuple[int, float]] = current_app.extensions.setdefault(_CACHE_KEY, {})
        for token in [token for token, (cached, _) in cache.items() if cached == account_id]:
            del cache[token]
