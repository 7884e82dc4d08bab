"""Webhook management over the typed SOAP service at /soap/events: a thin adapter over gateway.destinations.webhooks.

The operations of seed 004 (createWebHook, getWebHooks, activateWebHook with replayEvents,
deleteWebHookById) and the rest of the REST API's (getWebHook, updateWebHook,
verifyWebHook, replayWebHook, getWebHookAttempts), with the same semantics. A ``WebHook``
carries the fields of ``gateway.destinations.webhooks.view``, camel-cased, times as ``xs:dateTime``.

``gateway.soap.typed`` serves these beside the pull operations in one application
(``gateway.soap.typed_context``), which resolves sessions and maps the gateway's errors to
Faults for both.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from gateway.destinations import outbound, webhooks
from gateway.errors import ValidationError
from gateway.events import model
from gateway.runtime import Runtime
from gateway.soap.spyne_types import (
    DEFAULT_NS,
    Boolean,
    ComplexModel,
    DateTime,
    Double,
    Integer,
    MethodContext,
    ServiceBase,
    Unicode,
    fields_of,
    rpc,
)
from gateway.soap.typed_context import SERVICE_NAME, account_of, runtime_of
from sinks.http import FORMATS

_SESSION = Unicode(min_occurs=1, nillable=False, doc="the session id from login")
_WEBHOOK_ID = Integer(min_occurs=1, nillable=False, doc="the webhook's id")
_EVENTS = Unicode(max_occurs="unbounded", doc="event types, comma-separated or repeated")
_NAMES = {"session_id": "sessionId", "webhook_id": "webHookId", "format_": "format"}
_R = TypeVar("_R", bound=ComplexModel)
PORT = "WebHooks"
"""The port (and binding) of the webhook operations."""


class HttpHeader(ComplexModel):
    """A custom header the webhook's requests carry (set over REST)."""

    __namespace__ = DEFAULT_NS  # the application's, urn:eventgw:events:1
    _type_info = [("name", Unicode), ("value", Unicode)]


class WebHook(ComplexModel):
    """A webhook: where its events go, which types, how, and whether it is active."""

    __namespace__ = DEFAULT_NS
    _type_info = [
        ("id", Integer(doc="the id the other operations take")),
        ("url", Unicode(doc="where the events are posted")),
        ("events", Unicode(max_occurs="unbounded", doc="the event types it receives")),
        ("format", Unicode(doc=f"how events are posted: {', '.join(FORMATS)}")),
        ("app", Unicode(doc="a name of the caller's choosing, to filter on")),
        ("active", Boolean(doc="false once deactivated after repeated failures, until activateWebHook")),
        ("deactivatedAt", DateTime(doc="when it was deactivated")),
        ("failingSince", DateTime(doc="since when every delivery has failed")),
        ("headers", HttpHeader.customize(max_occurs="unbounded")),
        ("basicAuth", Boolean(doc="whether requests carry Basic auth (set over REST)")),
        ("batchMaxEvents", Integer(doc="at most this many events per request")),
        ("intervalSeconds", Double(doc="at most one request per this many seconds; 0: as events arrive")),
        ("batchMaxBytes", Integer(doc="at most this many bytes per request")),
        ("rateLimit", Double(doc="at most this many events per second (set over REST); none: no limit")),
        ("createdAt", DateTime(doc="when it was created")),
        ("secret", Unicode(doc="the signing secret (whsec_<base64>); only in createWebHook's answer")),
    ]


class ActivationResult(ComplexModel):
    """What activateWebHook did with the events that accumulated while the webhook was deactivated."""

    __namespace__ = DEFAULT_NS
    _type_info = [
        ("id", Integer(doc="the webhook's id")),
        ("active", Boolean(doc="always true")),
        ("queued", Integer(doc="events waiting to be delivered now")),
        ("dropped", Integer(doc="accumulated events dropped (without replayEvents)")),
    ]


class VerifyResult(ComplexModel):
    """What the webhook's URL answered to a test event."""

    __namespace__ = DEFAULT_NS
    _type_info = [
        ("ok", Boolean(doc="whether it answered 2xx")),
        ("status", Integer(doc="the HTTP status, if it answered")),
        ("answer", Unicode(doc="the start of its answer")),
        ("error", Unicode(doc="why the test event was not accepted")),
    ]


class Attempt(ComplexModel):
    """One delivery attempt (or a deactivation) in the webhook's log."""

    __namespace__ = DEFAULT_NS
    _type_info = [
        ("messageId", Unicode(doc="the webhook-id header of the request; the same on every retry")),
        ("startedAt", DateTime),
        ("durationMs", Integer),
        ("events", Integer(doc="how many events the request carried")),
        ("outcome", Unicode(doc="delivered, failed or deactivated")),
        ("status", Integer(doc="the HTTP status, if there was an answer")),
        ("detail", Unicode(doc="the start of the answer, or the error")),
    ]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _record(cls: type[_R], shown: Mapping[str, Any]) -> _R:
    """A record of ``cls`` from the core's view: names camel-cased, ISO 8601 times parsed."""
    fields = {_camel(name): value for name, value in shown.items()}
    for name, kind in fields_of(cls).items():
        if issubclass(kind, DateTime) and fields.get(name) is not None:
            fields[name] = model.parse_time(fields[name])
    return cls(**fields)


def _webhook(shown: Mapping[str, Any]) -> WebHook:
    headers = [HttpHeader(name=name, value=value) for name, value in shown["headers"].items()]
    return _record(WebHook, {**shown, "headers": headers})


def _payload(**given: Any) -> dict[str, Any]:
    """The core's payload of the arguments given; a list of type names splits at commas as well."""
    payload = {name: value for name, value in given.items() if value is not None}
    if "events" in payload:
        payload["events"] = [name for item in payload["events"] for name in item.split(",")]
    return payload


def _time(value: datetime, field: str) -> datetime:
    try:
        return model.parse_time(value)
    except ValueError as exc:
        raise ValidationError(str(exc), field) from None


def _context(ctx: MethodContext, session_id: str) -> tuple[Runtime, int]:
    """The Runtime and the session's account."""
    return runtime_of(ctx), account_of(ctx, session_id)


class WebHooksService(ServiceBase):
    """The webhook operations; each translates its arguments into calls of gateway.destinations.webhooks.

    They are the port ``WebHooks`` of the one service, beside the pull operations' port ``Events``.
    """

    __service_name__ = SERVICE_NAME
    __port_types__ = (PORT,)

    @rpc(_SESSION, Unicode(doc="the http or https URL to post events to"), _EVENTS,
         Unicode(doc=f"one of {', '.join(FORMATS)}; json if not given"),
         Unicode(doc="a name of the caller's choosing, to filter on"),
         Unicode(doc="the signing secret, whsec_<base64 of at least 24 bytes>; generated if not given"),
         Boolean(doc="true: send a test event first and refuse a URL that does not answer 2xx"),
         _returns=WebHook, _in_arg_names=_NAMES, _out_variable_name="webHook", _port_type=PORT)
    def createWebHook(ctx: MethodContext, session_id: str, url: str | None, events: list[str] | None,
                      format_: str | None, app: str | None, secret: str | None, verify: bool | None) -> WebHook:
        """Post the events of these types to the URL; the answer holds the secret, shown only here."""
        rt, account_id = _context(ctx, session_id)
        payload = _payload(url=url, events=events, format=format_, app=app, secret=secret)
        return _webhook(webhooks.create_verified(rt.sessions, account_id, payload, rt.settings, bool(verify)))

    @rpc(_SESSION, Unicode(doc="only the webhooks of this app"), Unicode(doc="only those receiving this type"),
         _returns=WebHook.customize(max_occurs="unbounded"), _in_arg_names=_NAMES, _out_variable_name="webHook",
         _port_type=PORT)
    def getWebHooks(ctx: MethodContext, session_id: str, app: str | None, event: str | None) -> list[WebHook]:
        """The caller's webhooks, oldest first."""
        rt, account_id = _context(ctx, session_id)
        with rt.read_sessions() as session:
            found = webhooks.list_webhooks(session, account_id, app, event)
            return [_webhook(webhooks.view(session, destination)) for destination in found]

    @rpc(_SESSION, _WEBHOOK_ID, _returns=WebHook, _in_arg_names=_NAMES, _out_variable_name="webHook",
         _port_type=PORT)
    def getWebHook(ctx: MethodContext, session_id: str, webhook_id: int) -> WebHook:
        """One webhook."""
        rt, account_id = _context(ctx, session_id)
        with rt.read_sessions() as session:
            return _webhook(webhooks.view(session, webhooks.get(session, account_id, webhook_id)))

    @rpc(_SESSION, _WEBHOOK_ID, Unicode(doc="a new URL"), _EVENTS, Unicode(doc=f"one of {', '.join(FORMATS)}"),
         Unicode(doc="a new app name"),
         Unicode(doc="a new secret; the previous one keeps signing beside it until the next change"),
         _returns=WebHook, _in_arg_names=_NAMES, _out_variable_name="webHook", _port_type=PORT)
    def updateWebHook(ctx: MethodContext, session_id: str, webhook_id: int, url: str | None, events: list[str] | None,
                      format_: str | None, app: str | None, secret: str | None) -> WebHook:
        """Change the fields given, and only those, without deactivating the webhook."""
        rt, account_id = _context(ctx, session_id)
        payload = _payload(url=url, events=events, format=format_, app=app, secret=secret)
        outbound.check_change(payload, rt.settings)
        with rt.sessions.begin() as session:
            return _webhook(webhooks.view(session, webhooks.update_webhook(session, account_id, webhook_id, payload)))

    @rpc(_SESSION, _WEBHOOK_ID,
         Boolean(doc="true: deliver the events that accumulated while deactivated; false (the default): drop them"),
         _returns=ActivationResult, _in_arg_names={**_NAMES, "replay": "replayEvents"}, _port_type=PORT)
    def activateWebHook(ctx: MethodContext, session_id: str, webhook_id: int, replay: bool | None) -> ActivationResult:
        """Activate a webhook that was deactivated after repeated failures (make sure its URL works again)."""
        rt, account_id = _context(ctx, session_id)
        with rt.sessions.begin() as session:
            return _record(ActivationResult, webhooks.activate(session, account_id, webhook_id, bool(replay)))

    @rpc(_SESSION, _WEBHOOK_ID, DateTime(min_occurs=1, nillable=False, doc="from this time (with a zone) on"),
         DateTime(min_occurs=1, nillable=False, doc="up to, not including, this time (with a zone)"),
         _returns=Integer, _in_arg_names=_NAMES, _out_variable_name="queued", _port_type=PORT)
    def replayWebHook(ctx: MethodContext, session_id: str, webhook_id: int, since: datetime, until: datetime) -> int:
        """Deliver again every event of the webhook's types that occurred in [since, until); returns how many."""
        rt, account_id = _context(ctx, session_id)
        window = _time(since, "since"), _time(until, "until")
        with rt.sessions.begin() as session:
            return webhooks.replay(session, account_id, webhook_id, *window)

    @rpc(_SESSION, _WEBHOOK_ID, _in_arg_names=_NAMES, _port_type=PORT)
    def deleteWebHookById(ctx: MethodContext, session_id: str, webhook_id: int) -> None:
        """Delete a webhook; its types go back to the pull queue if nothing else receives them."""
        rt, account_id = _context(ctx, session_id)
        with rt.sessions.begin() as session:
            webhooks.delete_webhook(session, account_id, webhook_id)

    @rpc(_SESSION, _WEBHOOK_ID, _returns=VerifyResult, _in_arg_names=_NAMES, _port_type=PORT)
    def verifyWebHook(ctx: MethodContext, session_id: str, webhook_id: int) -> VerifyResult:
        """Send a test event now and report what the URL answered; the webhook itself does not change."""
        rt, account_id = _context(ctx, session_id)
        return VerifyResult(**webhooks.verify(rt.read_sessions, account_id, webhook_id, rt.settings))

    @rpc(_SESSION, _WEBHOOK_ID, Integer(doc="at most this many, 1 to 1000; 100 if not given"),
         _returns=Attempt.customize(max_occurs="unbounded"), _in_arg_names=_NAMES, _out_variable_name="attempt",
         _port_type=PORT)
    def getWebHookAttempts(ctx: MethodContext, session_id: str, webhook_id: int, limit: int | None) -> list[Attempt]:
        """The webhook's most recent delivery attempts, newest first."""
        rt, account_id = _context(ctx, session_id)
        with rt.read_sessions() as session:
            return [_record(Attempt, attempt)
                    for attempt in webhooks.attempts(session, account_id, webhook_id, 100 if limit is None else limit)]
