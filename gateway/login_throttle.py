"""Login throttling per (account, client address): after repeated failures from one address its next tries wait,
each wait twice the last, while every other address logs in as before. An account is never locked for everyone.

Each try is counted before its password is checked, in one short transaction per try (a row
lock on PostgreSQL, the write lock on SQLite), so parallel guessers get no more tries than one.
Only existing accounts get rows; a row is forgotten a day after its last try.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.errors import LockedOut
from gateway.store.models import LoginFailure

FORGET_AFTER = timedelta(days=1)
"""A run of failures is forgotten this long after its last try."""
PURGE_ROWS = 100
"""Forgotten rows each try deletes at most: the table stays small without a housekeeping job."""
ADDRESS_CHARS = 64
"""The longest client address stored (an IPv6 network is 43 characters)."""


class Throttled(LockedOut):
    """Logins of an account from one client address wait, after too many failures in a row from it."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins from this address; try again in {retry_after} s")


@dataclass(frozen=True)
class LoginThrottle:
    """How long logins from one address wait: nothing for the first ``failure_limit`` failures in a row, then
    1 s, doubling with each further failure, up to ``backoff_max_seconds``."""

    failure_limit: int = 5
    backoff_max_seconds: int = 300

    @classmethod
    def of(cls, settings: Settings) -> LoginThrottle:
        """The throttle the settings ``login_failure_limit`` and ``login_backoff_max_seconds`` describe."""
        return cls(settings.login_failure_limit, settings.login_backoff_max_seconds)

    def wait_after(self, failures: int) -> float:
        """Seconds the next try waits after ``failures`` failures in a row."""
        if failures < self.failure_limit:
            return 0.0
        return float(min(self.backoff_max_seconds, 2 ** min(failures - self.failure_limit, 32)))


def client_key(address: str | None) -> str:
    """The key a client address is throttled under: an IPv4 address as such (also when IPv4-mapped), an IPv6
    address by its /64 network (what one subscriber is given), anything else cut to ADDRESS_CHARS."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return (address or "")[:ADDRESS_CHARS]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def admit(sessions: sessionmaker[Session], name: str, address: str, throttle: LoginThrottle, now: datetime) -> None:
    """Count a try of account ``name`` from ``address`` (a key from ``client_key``) as a failure until it succeeds
    (``succeeded``); Throttled, counting nothing, when the address must wait."""
    with sessions.begin() as session:
        purge(session, now)
        session.execute(_insert(session).values(name=name, address=address, failures=0, last_failure_at=now)
                        .on_conflict_do_nothing())
        row = session.execute(select(LoginFailure.failures, LoginFailure.last_failure_at)
                              .where(LoginFailure.name == name, LoginFailure.address == address)
                              .with_for_update()).one()
        failures = row.failures if now - row.last_failure_at < FORGET_AFTER else 0
        ready_at = row.last_failure_at + timedelta(seconds=throttle.wait_after(failures))
        if now >= ready_at:
            session.execute(update(LoginFailure).where(LoginFailure.name == name, LoginFailure.address == address)
                            .values(failures=failures + 1, last_failure_at=now))
            return
    raise Throttled(max(1, math.ceil((ready_at - now).total_seconds())))


def succeeded(session: Session, name: str, address: str | None = None) -> None:
    """Forget the failures of ``name`` from ``address`` (a login succeeded), or from every address (None: its
    password was set, or the account deleted)."""
    query = delete(LoginFailure).where(LoginFailure.name == name)
    if address is not None:
        query = query.where(LoginFailure.address == address)
    session.execute(query)


def purge(session: Session, now: datetime) -> None:
    """Delete up to PURGE_ROWS forgotten rows (rows another transaction holds are left for the next try)."""
    forgotten = (select(LoginFailure.name, LoginFailure.address)
                 .where(LoginFailure.last_failure_at < now - FORGET_AFTER)
                 .limit(PURGE_ROWS).with_for_update(skip_locked=True))
    session.execute(delete(LoginFailure).where(tuple_(LoginFailure.name, LoginFailure.address).in_(forgotten))
                    .execution_options(synchronize_session=False))


def _insert(session: Session) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into login_failures that can skip an existing row, in the store's dialect."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(LoginFailure)
