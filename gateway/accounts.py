"""Accounts and their credentials: creation, listing and deletion, passwords and API keys (checks, changes,
rotation). Password hashing is ``gateway.passwords``, the wait after failed logins ``gateway.login_throttle``."""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway import login_throttle
from gateway.errors import AuthError, Conflict, LockedOut, ValidationError
from gateway.events.formats import iso
from gateway.events.model import ALL_TYPES
from gateway.login_throttle import LoginThrottle, client_key
from gateway.passwords import hash_password, needs_rehash, spend_as_verifying, verify_password
from gateway.store.models import Account, ApiKey, Destination, LegacySession, Route, utcnow

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
API_KEY_PREFIX = "egw_"
WRONG_LOGIN = "wrong account name or password"


@dataclass(frozen=True)
class NewAccount:
    """What account creation hands back once: the id and the only copy of the API key."""

    id: int
    name: str
    api_key: str
    pull_destination_id: int


def key_hash(api_key: str) -> str:
    """The stored form of an API key (keys are random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_account(session: Session, name: str, password: str) -> NewAccount:
    """Create an account with its pull queue, default routes (every type to the pull queue) and an API key."""
    if not _NAME.fullmatch(name or ""):
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


def check_password(sessions: sessionmaker[Session], name: str, password: str, *, address: str | None = None,
                   throttle: LoginThrottle | None = None) -> int:
    """The id of the account whose name and password match; AuthError otherwise.

    ``address`` is the client's (None: not known, as for a local command). After too many
    failures in a row from one address, tries from it wait (``throttle``, default
    LoginThrottle()): login_throttle.Throttled, right password or not, while other addresses
    are unaffected. An unknown name (or one no account could have) costs the same work as a
    known one, and leaves no trace in the store. A hash at an old cost is replaced on success.
    """
    client, now = client_key(address), utcnow()
    found = _credentials(sessions, name)
    if found is None:
        with sessions.begin() as session:  # the write a known name's try makes
            login_throttle.purge(session, now)
        spend_as_verifying(password)
        raise AuthError(WRONG_LOGIN)
    account_id, stored = found
    login_throttle.admit(sessions, name, client, throttle or LoginThrottle(), now)
    if not verify_password(password, stored):
        raise AuthError(WRONG_LOGIN)
    rehashed = hash_password(password) if needs_rehash(stored) else None
    with sessions.begin() as session:
        login_throttle.succeeded(session, name, client)
        if rehashed is not None:
            # Unless the password changed meanwhile.
            session.execute(update(Account).where(Account.id == account_id, Account.password_hash == stored)
                            .values(password_hash=rehashed))
    return account_id


def _credentials(sessions: sessionmaker[Session], name: str) -> tuple[int, str] | None:
    """The id and password hash of the account called ``name``, if there is one."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return None
    with sessions() as session:
        row = session.execute(select(Account.id, Account.password_hash).where(Account.name == name)).first()
    return (row.id, row.password_hash) if row else None


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
    login_throttle.succeeded(session, name)


def set_password(session: Session, account_id: int, password: str) -> None:
    """Give the account a new password: its SOAP sessions end and every wait after failed logins is lifted."""
    _check_new_password(password)
    account = session.get_one(Account, account_id)
    account.password_hash = hash_password(password)
    session.execute(delete(LegacySession).where(LegacySession.account_id == account_id))
    login_throttle.succeeded(session, account.name)


def change_password(sessions: sessionmaker[Session], account_id: int, current: str, password: str, *,
                    address: str | None = None, throttle: LoginThrottle | None = None) -> None:
    """An account changes its own password, giving the current one from ``address``: a wrong one is a
    ValidationError on ``current_password`` and counts as a failed login (tries wait after too many)."""
    _check_new_password(password)
    with sessions() as session:
        name = session.get_one(Account, account_id).name
    try:
        check_password(sessions, name, current, address=address, throttle=throttle)
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
