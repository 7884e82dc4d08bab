"""Accounts and their credentials: creation, listing and deletion, passwords and API keys (checks, changes,
rotation), lockout after repeated failures."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import AuthError, Conflict, LockedOut, ValidationError
from gateway.events.formats import iso
from gateway.events.model import ALL_TYPES
from gateway.store.models import Account, ApiKey, Destination, LegacySession, LoginFailure, Route, utcnow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
API_KEY_PREFIX = "egw_"


@dataclass(frozen=True)
class NewAccount:
    """What account creation hands back once: the id and the only copy of the API key."""

    id: int
    name: str
    api_key: str
    pull_destination_id: int


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password`` in a self-describing text form."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash made by hash_password (constant time)."""
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32, **_SCRYPT)
    return hmac.compare_digest(got, base64.b64decode(digest))


def key_hash(api_key: str) -> str:
    """The stored form of an API key (keys are random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_account(session: Session, name: str, password: str) -> NewAccount:
    """Create an account with its pull queue, default routes (every type to the pull queue) and an API key."""
    if not _NAME.match(name or ""):
        raise ValidationError("must be 1-100 letters, digits or . _ @ -, starting with a letter or digit", "name")
    _check_new_password(password)
    if session.scalar(select(Account.id).where(Account.name == name)) is not None:
        raise Conflict(f"account {name!r} already exists")
    account = Account(name=name, password_hash=hash_password(password))
    session.add(account)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"account {name!r} already exists") from None
    pull = Destination(account_id=account.id, kind="pull", name="pull queue", settings={})
    session.add(pull)
    session.flush()
    session.add_all(Route(account_id=account.id, event_type=t, destination_id=pull.id) for t in ALL_TYPES)
    api_key = issue_api_key(session, account.id)
    return NewAccount(account.id, name, api_key, pull.id)


def _check_new_password(password: str) -> None:
    if len(password or "") < 6:
        raise ValidationError("must be at least 6 characters", "password")


def issue_api_key(session: Session, account_id: int) -> str:
    """Create a new API key for the account and return it (it is not stored in clear)."""
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(account_id=account_id, key_hash=key_hash(api_key), prefix=api_key[:10]))
    session.flush()
    return api_key


def account_by_name(session: Session, name: str) -> Account:
    """The account called ``name``; AuthError when there is none."""
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        raise AuthError(f"unknown account {name!r}")
    return account


def check_password(
    sessions: sessionmaker[Session], name: str, password: str, *, failure_limit: int = 5, lockout_seconds: int = 300
) -> int:
    """The id of the account whose name and password match; AuthError otherwise.

    Runs in its own transaction so that a failure is counted even though the caller's
    work is abandoned. After ``failure_limit`` consecutive failures for a name, every
    attempt is refused with LockedOut for ``lockout_seconds`` (from the last failure),
    right password or not.
    """
    now = utcnow()
    with sessions.begin() as session:
        failure = session.get(LoginFailure, name)
        if failure is not None and failure.failures >= failure_limit:
            if now - failure.last_failure_at < timedelta(seconds=lockout_seconds):
                raise LockedOut("too many failed logins; try again later")
        account = session.scalar(select(Account).where(Account.name == name))
        if account is not None and verify_password(password, account.password_hash):
            if failure is not None:
                session.execute(delete(LoginFailure).where(LoginFailure.name == name))
            return account.id
        if failure is None:
            session.add(LoginFailure(name=name, failures=1, last_failure_at=now))
        else:
            failure.failures += 1
            failure.last_failure_at = now
    raise AuthError("wrong account name or password")


def check_api_key(session: Session, api_key: str) -> int:
    """The id of the account owning ``api_key``; AuthError otherwise."""
    account_id = session.scalar(select(ApiKey.account_id).where(ApiKey.key_hash == key_hash(api_key)))
    if account_id is None:
        raise AuthError("unknown API key")
    return account_id


def view(session: Session, account: Account) -> dict[str, Any]:
    """An account as the API and `gateway account list --json` show it: never a password hash or a whole key."""
    keys = session.scalars(select(ApiKey).where(ApiKey.account_id == account.id).order_by(ApiKey.id))
    return {"id": account.id, "name": account.name, "created_at": iso(account.created_at),
            "api_keys": [{"prefix": key.prefix, "created_at": iso(key.created_at)} for key in keys]}


def list_accounts(session: Session) -> list[Account]:
    """Every account, in the order they were created."""
    return list(session.scalars(select(Account).order_by(Account.id)))


def delete_account(session: Session, name: str) -> None:
    """Delete the account called ``name`` with everything it owns (events, destinations, keys, sessions)."""
    account = account_by_name(session, name)
    # The store's foreign keys cascade from the account to all it owns, in one statement.
    session.execute(delete(Account).where(Account.id == account.id))
    session.execute(delete(LoginFailure).where(LoginFailure.name == name))


def set_password(session: Session, account_id: int, password: str) -> None:
    """Give the account a new password: its SOAP sessions end and a lockout is lifted."""
    _check_new_password(password)
    account = session.get_one(Account, account_id)
    account.password_hash = hash_password(password)
    session.execute(delete(LegacySession).where(LegacySession.account_id == account_id))
    session.execute(delete(LoginFailure).where(LoginFailure.name == account.name))


def change_password(sessions: sessionmaker[Session], account_id: int, current: str, password: str, *,
                    failure_limit: int = 5, lockout_seconds: int = 300) -> None:
    """An account changes its own password, giving the current one: a wrong one is a ValidationError on
    ``current_password`` and counts as a failed login (LockedOut after too many)."""
    _check_new_password(password)
    with sessions() as session:
        name = session.get_one(Account, account_id).name
    try:
        check_password(sessions, name, current, failure_limit=failure_limit, lockout_seconds=lockout_seconds)
    except LockedOut:
        raise
    except AuthError:
        raise ValidationError("is not the account's password", "current_password") from None
    with sessions.begin() as session:
        set_password(session, account_id, password)


def rotate_api_key(session: Session, account_id: int) -> str:
    """Revoke every API key of the account and issue one new key, returned (the only copy)."""
    session.execute(delete(ApiKey).where(ApiKey.account_id == account_id))
    return issue_api_key(session, account_id)
