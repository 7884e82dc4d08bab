"""Sessions of both SOAP services: login hands out a session id (the legacy `beanId`), which expires when idle."""
from __future__ import annotations

import secrets
import string
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from gateway.accounts import check_password
from gateway.errors import AuthError
from gateway.store.models import LegacySession, utcnow

_ALPHABET = string.ascii_letters + string.digits


def new_context_id() -> str:
    """A context id in the legacy platform's shape: 'X-' and 22 letters and digits."""
    return "X-" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def login(sessions: sessionmaker[Session], name: str, password: str, *, failure_limit: int = 5,
          lockout_seconds: int = 300) -> str:
    """Check the credentials and open a session; returns its context id."""
    account_id = check_password(sessions, name, password, failure_limit=failure_limit,
                                lockout_seconds=lockout_seconds)
    context_id = new_context_id()
    with sessions.begin() as session:
        session.add(LegacySession(id=context_id, account_id=account_id))
    return context_id


def resolve(sessions: sessionmaker[Session], context_id: str | None, idle_seconds: int) -> int:
    """The account of a live session, refreshing its idle timer; AuthError when unknown or expired."""
    if not context_id:
        raise AuthError("no session")
    now = utcnow()
    with sessions.begin() as session:
        found = session.get(LegacySession, context_id)
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
        session.execute(delete(LegacySession).where(LegacySession.id == (context_id or "")))
