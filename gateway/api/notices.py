"""REST operational notices: the account's notices and where they are mailed, /api/v1/notifications."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from gateway import notices
from gateway.api.auth import current_account
from gateway.api.context import current_runtime
from gateway.api.operations import operation
from gateway.api.params import json_body
from gateway.api.schemas import NoticeEmail, Notices
from gateway.errors import ValidationError

blueprint = Blueprint("notices", __name__)


@blueprint.get("/api/v1/notifications")
@operation(answer=Notices)
def notifications() -> Response:
    """Operational notices for the account (a webhook deactivated, say), newest first."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify({"notifications": notices.list_notices(session, account_id)})


@blueprint.get("/api/v1/notifications/email")
@operation(answer=NoticeEmail)
def notice_email() -> Response:
    """Where the account's operational notices are mailed (null: they are only listed here)."""
    account_id = current_account()
    with current_runtime().read_sessions() as session:
        return jsonify({"email": notices.notice_address(session, account_id)})


@blueprint.put("/api/v1/notifications/email")
@operation(answer=NoticeEmail, body=NoticeEmail)
def set_notice_email() -> Response:
    """Mail the account's operational notices to `{"email": ...}`; `{"email": null}` stops mailing them."""
    account_id = current_account()
    payload = json_body(NoticeEmail)
    if "email" not in payload:
        raise ValidationError("is required (an address, or null to stop mailing notices)", "email")
    with current_runtime().sessions.begin() as session:
        notices.set_notice_address(session, account_id, payload["email"])
        return jsonify({"email": notices.notice_address(session, account_id)})
