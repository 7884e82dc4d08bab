"""Accounts (gateway/accounts.py): listing, deletion with all they own, password changes and API-key rotation, and
password checks (throttled per client address, rehashed at a new cost)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gateway import accounts, passwords
from gateway.accounts import NewAccount, check_api_key, check_password
from gateway.destinations import webhooks
from gateway.errors import AuthError, LockedOut, ValidationError
from gateway.passwords import LEGACY, hash_password
from gateway.runtime import Runtime
from gateway.soap import sessions as soap_sessions
from gateway.store.models import Account, ApiKey, Destination, Event, LegacySession, LoginFailure, QueueItem, Route
from tests.support.events import ingest, raw_events
from tests.support.runtime import PASSWORD

NEW_PASSWORD = "n3w-Secret"


def count(runtime: Runtime, table: type, account_id: int | None = None) -> int:
    """Rows of ``table`` in the store, or of one account's."""
    query = select(func.count()).select_from(table)
    if account_id is not None:
        query = query.where(table.account_id == account_id)  # type: ignore[attr-defined]
    with runtime.sessions() as session:
        return int(session.scalar(query) or 0)


def test_list_and_view(runtime: Runtime, account: NewAccount, other_account: NewAccount) -> None:
    with runtime.sessions() as session:
        listed = [accounts.view(session, item) for item in accounts.list_accounts(session)]

    assert [(item["id"], item["name"]) for item in listed] == [(account.id, "acme"), (other_account.id, "globex")]
    assert [key["prefix"] for key in listed[0]["api_keys"]] == [account.api_key[:10]]
    assert listed[0]["created_at"].endswith("Z")
    assert "password_hash" not in listed[0] and account.api_key not in str(listed)


def test_delete_removes_everything_the_account_owns(
    runtime: Runtime, account: NewAccount, other_account: NewAccount
) -> None:
    for owner in (account, other_account):
        ingest(runtime, owner.id, raw_events(5, prefix=f"a{owner.id}"))
        with runtime.sessions.begin() as session:
            webhooks.create(session, owner.id, {"url": "http://127.0.0.1:9/hook", "events": ["OPEN"]})
        soap_sessions.login(runtime.sessions, "acme" if owner is account else "globex", PASSWORD)
    with pytest.raises(AuthError):
        check_password(runtime.sessions, "acme", "wrong")
    tables = (Event, Destination, Route, ApiKey, LegacySession)
    left = {table: count(runtime, table, other_account.id) for table in tables}

    with runtime.sessions.begin() as session:
        accounts.delete_account(session, "acme")

    assert {table: count(runtime, table, account.id) for table in tables} == dict.fromkeys(tables, 0)
    assert {table: count(runtime, table, other_account.id) for table in tables} == left
    assert count(runtime, QueueItem) == 5  # globex's events, queued for its pull queue before the webhook existed
    assert count(runtime, LoginFailure) == 0
    with runtime.sessions() as session, pytest.raises(AuthError, match="unknown account 'acme'"):
        accounts.delete_account(session, "acme")
    with runtime.sessions.begin() as session:  # the name is free again
        accounts.create_account(session, "acme", PASSWORD)


def test_set_password_ends_soap_sessions_and_lifts_every_wait(runtime: Runtime, account: NewAccount) -> None:
    context = soap_sessions.login(runtime.sessions, "acme", PASSWORD)
    for address in ("192.0.2.1", "192.0.2.2"):
        for _ in range(5):
            with pytest.raises(AuthError):
                check_password(runtime.sessions, "acme", "wrong", address=address)
        with pytest.raises(LockedOut):
            check_password(runtime.sessions, "acme", PASSWORD, address=address)

    with runtime.sessions.begin() as session:
        accounts.set_password(session, account.id, NEW_PASSWORD)

    assert count(runtime, LoginFailure) == 0
    for address in ("192.0.2.1", "192.0.2.2"):
        assert check_password(runtime.sessions, "acme", NEW_PASSWORD, address=address) == account.id
    with pytest.raises(AuthError, match="unknown session"):
        soap_sessions.resolve(runtime.sessions, context, 1200)
    with pytest.raises(AuthError):
        check_password(runtime.sessions, "acme", PASSWORD)
    with runtime.sessions() as session, pytest.raises(ValidationError) as refused:
        accounts.set_password(session, account.id, "short")
    assert [(p.field, p.message) for p in refused.value.problems] == [("password", "must be at least 6 characters")]


def test_changing_ones_own_password_needs_the_current_one(runtime: Runtime, account: NewAccount) -> None:
    with pytest.raises(ValidationError) as wrong:
        accounts.change_password(runtime.sessions, account.id, "wrong", NEW_PASSWORD)
    assert [(p.field, p.message) for p in wrong.value.problems] == [("current_password",
                                                                      "is not the account's password")]
    # A wrong current password is a failed login from the caller's address: guessing it makes that address wait.
    for _ in range(4):
        with pytest.raises(ValidationError):
            accounts.change_password(runtime.sessions, account.id, "wrong", NEW_PASSWORD)
    with pytest.raises(LockedOut, match="try again in 1 s"):
        accounts.change_password(runtime.sessions, account.id, PASSWORD, NEW_PASSWORD)
    assert check_password(runtime.sessions, "acme", PASSWORD, address="192.0.2.7") == account.id

    accounts.change_password(runtime.sessions, account.id, PASSWORD, NEW_PASSWORD, address="192.0.2.7")

    assert check_password(runtime.sessions, "acme", NEW_PASSWORD) == account.id
    with pytest.raises(ValidationError, match="at least 6"):
        accounts.change_password(runtime.sessions, account.id, NEW_PASSWORD, "short")


def test_rotating_the_api_key_revokes_every_other_key(runtime: Runtime, account: NewAccount,
                                                      other_account: NewAccount) -> None:
    with runtime.sessions.begin() as session:
        second = accounts.issue_api_key(session, account.id)
        new_key = accounts.rotate_api_key(session, account.id)

    with runtime.sessions() as session:
        assert check_api_key(session, new_key) == account.id
        for revoked in (account.api_key, second):
            with pytest.raises(AuthError):
                check_api_key(session, revoked)
        assert check_api_key(session, other_account.api_key) == other_account.id
        assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.account_id == account.id)) == 1
        assert session.scalar(select(Account.name).where(Account.id == account.id)) == "acme"


def test_a_hash_at_an_old_cost_is_replaced_at_the_next_login(runtime: Runtime, account: NewAccount) -> None:
    legacy = hash_password(PASSWORD, LEGACY).replace(f"${LEGACY.encoded()}", "")  # as hashes were written before
    assert legacy.count("$") == 2
    with runtime.sessions.begin() as session:
        session.get_one(Account, account.id).password_hash = legacy

    with pytest.raises(AuthError):
        check_password(runtime.sessions, "acme", "wrong")
    assert stored_hash(runtime, account.id) == legacy  # a failed login changes nothing
    assert check_password(runtime.sessions, "acme", PASSWORD) == account.id

    rehashed = stored_hash(runtime, account.id)
    assert rehashed != legacy and rehashed.startswith(f"scrypt${passwords.COST.encoded()}$")
    assert check_password(runtime.sessions, "acme", PASSWORD) == account.id
    assert stored_hash(runtime, account.id) == rehashed  # at the current cost: left alone


def stored_hash(runtime: Runtime, account_id: int) -> str:
    """The account's stored password hash."""
    with runtime.sessions() as session:
        return session.get_one(Account, account_id).password_hash
