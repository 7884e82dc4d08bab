"""What a push destination received, checked as its owner would: signatures, event ids, counts; and what waits."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from urllib.parse import parse_qsl

from gateway.runtime import Runtime
from gateway.stats import account_stats
from tests.support.http_receiver import Request

SECRET = "whsec_" + base64.b64encode(b"a webhook secret of 32 bytes...!").decode()
"""The signing secret the tests give their webhooks."""


def signature_ok(request: Request, secret: str) -> bool:
    """Check a Standard Webhooks signature with nothing but hmac and base64."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, given) for given in request.headers["webhook-signature"].split(" "))


def event_ids(request: Request) -> list[str]:
    """The producer ids of the events one request carried, in any of the three formats."""
    if request.headers["Content-Type"] == "application/x-www-form-urlencoded":
        return [dict(parse_qsl(request.body.decode()))["eventId"]]
    body = json.loads(request.body)
    return [e["id"] for e in body] if isinstance(body, list) else [body["id"]]


def deliveries(requests_: list[Request]) -> Counter[str]:
    """How many times each event arrived."""
    return Counter(uid for r in requests_ for uid in event_ids(r))


def pending(runtime: Runtime, account_id: int, destination_id: int) -> int:
    """How many events wait for the destination, as the account's statistics tell."""
    with runtime.sessions() as session:
        return account_stats(session, account_id)["pending"][str(destination_id)]["pending"]  # type: ignore[no-any-return]
