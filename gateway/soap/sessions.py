"""Sessions of both SOAP services: login hands out a session id (the legacy `beanId`), which expires when idle.

The client holds the only copy of a session id: the store keeps its SHA-256, so a copy of the
database opens no session.
"""
from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from gateway.accounts import check_password
from gateway.config import Settings
from gateway.errors import AuthError
from gateway.login_throttle import LoginThrottle
from gateway.store.models import LegacySession, utcnow

_ALPHABET = string.ascii_letters + string.digits


def new_context_id() -> str:
    """A context id in the legacy platform's shape: 'X-' and 22 letters and digits (131 random bits)."""
    return "X-" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def stored_id(context_id: str) -> str:
    """How the store knows a session: the SHA-256 of its id (ids are random, so no salt or stretching is needed)."""
    return hashlib.sha256(context_id.encode("utf-8", "surrogatepass")).hexdigest()


def client_address(environ: Mapping[str, Any] | None) -> str | None:
    """The client's address in a WSGI environment (None without one)."""
    address = (environ or {}).get("REMOTE_ADDR")
    return address if isinstance(address, str) else None


def login(sessions: sessionmaker[Session], name: str, password: str, *, address: str | None = None,
          settings: Settings | None = None) -> str:
    """Check the credentials given from ``address`` (throttled as ``check_password`` says, by the login settings
    of ``settings``) and open a session; returns its context id."""
    throttle = LoginThrottle.of(settings) if settings else None
    account_id = check_password(sessions, name, password, address=address, throttle=throttle)
    context_id = new_context_id()
    with sessions.begin() as session:
        session.add(LegacySession(id=stored_id(context_id), account_id=account_id))
    return context_id


def resolve(sessions: sessionmaker[Session], context_id: str | None, idle_seconds: int) -> int:
    """The account of a live session, refreshing its idle timer; AuthError when unknown or expired."""
    if not context_id:
        raise AuthError("no session")
    now = utcnow()
    with sessions.begin() as session:
        found = session.get(LegacySession, stored_id(context_id))
        if found is None:
            raise AuthError("unknown session")
        if now - found.last_seen_at <= timedelta(seconds=idle_seconds):
            found.last_seen_at = now
            return found.account_id
        # Raised after the commit: raising inside would roll the delete back.
        session.delete(found)
    raise AuthError("session expired")


def logout(sessions: sessionmaker[Session], context_id: str | None) -> None:
    """End a session (unknown ids are ignored)."""
    with sessions.begin() as session:
        session.execute(delete(LegacySession).where(LegacySession.id == stored_id(context_id or "")))
