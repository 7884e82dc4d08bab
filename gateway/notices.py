"""Operational notices: an account's list of them, where they are mailed, what a deactivation's notice says,
and the mail sent when a destination is deactivated.

The notice itself is always recorded in the store (``GET /api/v1/notifications``) by the
engine; the email is a courtesy on top and never makes anything fail.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.destinations.checks import check_address
from gateway.destinations.email import smtp_settings
from gateway.errors import DeliveryError, NotFound
from gateway.events import formats
from gateway.runtime import Runtime
from gateway.store.models import Account, Destination, Notice
from sinks.email import EmailSink

log = logging.getLogger(__name__)


def list_notices(session: Session, account_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The account's operational notices (deactivations, activations), newest first."""
    rows = session.scalars(select(Notice).where(Notice.account_id == account_id)
                           .order_by(Notice.id.desc()).limit(max(1, min(limit, 1000))))
    return [{"id": n.id, "created_at": formats.iso(n.created_at), "kind": n.kind, "destination_id": n.destination_id,
             "message": n.message} for n in rows]


def set_notice_address(session: Session, account_id: int, address: str | None) -> None:
    """Mail the account's operational notices to ``address`` (None: stop mailing them)."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound("account", account_id)
    account.notify_email = check_address(address) if address is not None else None


def notice_address(session: Session, account_id: int) -> str | None:
    """Where the account's operational notices are mailed (None: nowhere)."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound("account", account_id)
    return account.notify_email


def deactivation_message(destination: Destination, reason: str, refused: bool) -> str:
    """What the notice of a deactivation says: with ``refused``, that the destination refused one delivery in a
    way no retry can change (a host key that does not match, a 410 Gone, a file name another period's file
    has) and what that was; otherwise that deliveries kept failing, and the last reason."""
    what = f"destination #{destination.id} ({destination.kind} {destination.name}) was deactivated"
    if refused:
        return (f"{what} because a delivery was refused and trying again cannot change that: {reason}. "
                "Its events are kept; fix the cause, then activate it with replay to deliver them.")
    return (f"{what} after repeated failures: {reason}. Its events are kept; activate it with replay to "
            "deliver them.")


def notify_deactivated(runtime: Runtime, destination_id: int) -> bool:
    """Mail the account owner that the destination was deactivated; True when a mail went out.

    Sends nothing when the account has no notice address or no SMTP host is configured.
    Never raises: this runs on the delivery engine's threads, and a failure is only logged.
    """
    try:
        with runtime.read_sessions() as session:
            found = session.execute(
                select(Destination, Account).join(Account, Account.id == Destination.account_id)
                .where(Destination.id == destination_id)
            ).first()
            if found is None:
                return False
            destination, account = found
            if not account.notify_email or not runtime.settings.smtp_host:
                return False
            message = session.scalar(
                select(Notice.message).where(Notice.destination_id == destination_id, Notice.kind == "deactivated")
                .order_by(Notice.id.desc()).limit(1)
            ) or f"destination #{destination.id} ({destination.kind} {destination.name}) was deactivated."
        sink = EmailSink(smtp_settings(runtime.settings), recipients=[account.notify_email], account=account.name)
        sink.send_notice(
            f"[eventgw] {destination.kind} destination #{destination.id} of {account.name} was deactivated",
            f"Account: {account.name}\nDestination: #{destination.id} {destination.kind} {destination.name}\n\n"
            f"{message}\n",
        )
        return True
    except DeliveryError as exc:
        log.warning("could not mail the deactivation notice of destination #%s: %s", destination_id, exc)
    except Exception:
        log.exception("could not mail the deactivation notice of destination #%s", destination_id)
    return False
