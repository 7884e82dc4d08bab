"""The calling account itself: GET /api/v1/account, its password (PUT /api/v1/account/password) and its API key
(POST /api/v1/account/api-key)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway import accounts
from gateway.api.auth import answering_throttled, current_account, forget_account
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.params import json_body, text_field
from gateway.api.schemas import AccountView, NewApiKey, PasswordChange
from gateway.login_throttle import LoginThrottle
from gateway.store.models import Account

blueprint = Blueprint("account", __name__)


@blueprint.get("/api/v1/account")
@operation(answer=AccountView)
def show() -> Response:
    """The account's id, name and API keys (their prefixes only)."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify(accounts.view(session, session.get_one(Account, account_id)))


@blueprint.put("/api/v1/account/password")
@operation(answer=AccountView, body=PasswordChange)
def change_password() -> Response:
    """Change the account's password: `{"current_password": ..., "password": ...}`.

    The account's SOAP sessions end; a wrong current password counts as a failed login from the caller's
    address (429 when it must wait).
    """
    account_id = current_account()
    payload = json_body(PasswordChange)
    current, password = text_field(payload, "current_password"), text_field(payload, "password")
    rt = current_runtime()
    with answering_throttled():
        accounts.change_password(rt.sessions, account_id, current, password, address=request.remote_addr,
                                 throttle=LoginThrottle.of(rt.settings))
    forget_account(account_id)
    with rt.read_sessions() as session:
        return jsonify(accounts.view(session, session.get_one(Account, account_id)))


@blueprint.post("/api/v1/account/api-key")
@operation(answer=NewApiKey, status=201)
def rotate_api_key() -> tuple[Response, int]:
    """Revoke every API key of the account, the one calling included, and answer a new one (shown only once)."""
    account_id = current_account()
    with current_runtime().sessions.begin() as session:
        api_key = accounts.rotate_api_key(session, account_id)
        return jsonify({"api_key": api_key, **accounts.view(session, session.get_one(Account, account_id))}), 201
