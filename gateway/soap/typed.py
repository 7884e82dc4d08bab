"""The typed SOAP service at /soap/events: Spyne, SOAP 1.1 document/literal, a thin adapter over gateway.pull.

Operations: ``login``, ``logout``, ``getBatch``, ``acknowledgeBatch``, ``getBatchAgain``; the
webhook-management operations are in ``gateway.soap.typed_webhooks``, served by the same
application (``gateway.soap.typed_context``), which resolves sessions and maps the gateway's
errors to Faults for both.
The ``TypedEvent`` record is derived from ``gateway.events.model.FIELDS``: its elements carry the
model's field names, in the model's order; text fields are ``xs:string``, times
``xs:dateTime`` and ``data`` is a string holding a JSON object (compact, keys sorted),
because a free-form map has no portable document/literal type.

Spyne parses requests, serves the WSDL and writes every answer except the batches:
those are written here with lxml (see ``write_batch``), because Spyne's own serialiser
needs about 2.2 s for 10,000 records and lxml about 0.15 s. A test keeps the two equal.

``python -m gateway.soap.typed [PUBLIC_URL]`` prints the WSDL (the copy in wsdl/events.wsdl).
"""
from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
from lxml import etree

from gateway import pull
from gateway.events import model
from gateway.limits import MAX_BATCH_EVENTS, MAX_SOAP_REQUEST_BYTES
from gateway.runtime import Runtime
from gateway.soap import sessions
from gateway.soap.spyne_types import (
    Array,
    Boolean,
    ComplexModel,
    DateTime,
    Integer,
    MethodContext,
    ServiceBase,
    SimpleModel,
    Unicode,
    WsgiApplication,
    fields_of,
    rpc,
)
from gateway.soap.typed_context import SERVICE_NAME, ServiceApplication, account_of, runtime_of
from gateway.soap.typed_webhooks import WebHooksService

TNS = "urn:eventgw:events:1"
PATH = "/soap/events"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PORT = "Events"
"""The port (and binding) of the pull operations."""
WSDL_PUBLIC_URL = "http://127.0.0.1:8080"
"""The public URL the checked-in wsdl/events.wsdl is generated with."""

_REQUIRED = {"min_occurs": 1, "nillable": False}
_TYPES_BY_KIND: dict[str, type[SimpleModel]] = {"time": DateTime}
_NOTES_BY_KIND = {"object": " (a JSON object, as text)"}


class TypedEvent(ComplexModel):
    """One event; one element per field of the event model, absent fields left out."""

    __namespace__ = TNS
    _type_info = [
        (field.name, _TYPES_BY_KIND.get(field.kind, Unicode)(doc=field.doc + _NOTES_BY_KIND.get(field.kind, "")))
        for field in model.FIELDS
    ]


class BatchResult(ComplexModel):
    """A batch: its id (to acknowledge or fetch it again), its size, lease end and events."""

    __namespace__ = TNS
    _type_info = [
        ("batchId", Unicode(doc="the batch id; none for a peek")),
        ("count", Integer(doc="how many events the batch holds")),
        ("leaseUntil", DateTime(doc="until when a leased batch stays hidden unless acknowledged")),
        ("events", Array(TypedEvent)),
    ]


class EventsService(ServiceBase):
    """The pull operations; each translates its arguments into one call of the pull core.

    They are the port ``Events`` of the one service, beside the port ``WebHooks``.
    """

    __service_name__ = SERVICE_NAME
    __port_types__ = (PORT,)

    @rpc(Unicode(**_REQUIRED), Unicode(**_REQUIRED), _returns=Unicode,
         _in_arg_names={"user_name": "userName"}, _out_variable_name="sessionId", _port_type=PORT)
    def login(ctx: MethodContext, user_name: str, password: str) -> str:
        """Check an account's name and password; returns the session id the other operations take."""
        rt = runtime_of(ctx)
        environ = getattr(getattr(ctx, "transport", None), "req_env", None)  # Spyne's WSGI transport
        return sessions.login(rt.sessions, user_name, password, address=sessions.client_address(environ),
                              settings=rt.settings)

    @rpc(Unicode(**_REQUIRED), _in_arg_names={"session_id": "sessionId"}, _port_type=PORT)
    def logout(ctx: MethodContext, session_id: str) -> None:
        """End a session."""
        sessions.logout(runtime_of(ctx).sessions, session_id)

    @rpc(Unicode(**_REQUIRED), Unicode(max_occurs="unbounded", doc="event types, comma-separated or repeated; "
                                       "none means every type"),
         Integer(**_REQUIRED, doc=f"at most this many events, 1 to {MAX_BATCH_EVENTS}"),
         Boolean(doc="true: mark the events as collected now; false (the default): lease them until "
                     "acknowledgeBatch, or until the lease runs out and they come back"),
         Boolean(doc="true: return the events and change nothing (markAsRead is ignored)"),
         _returns=BatchResult,
         _in_arg_names={"session_id": "sessionId", "limit": "max", "mark_as_read": "markAsRead"},
         _port_type=PORT)
    def getBatch(ctx: MethodContext, session_id: str, types: list[str] | None, limit: int,
                 mark_as_read: bool | None, peek: bool | None) -> None:
        """Take up to ``max`` of the oldest waiting events of ``types``."""
        rt = runtime_of(ctx)
        account_id = account_of(ctx, session_id)
        wanted = pull.check_types(",".join(types or ()), "types")
        size = pull.check_max(limit, "max")
        mode: pull.Mode = "peek" if peek else "read" if mark_as_read else "lease"
        pull.get_batch(rt.sessions, account_id, wanted, size, mode, _answer(ctx),
                       lease_seconds=rt.settings.pull_lease_seconds)

    @rpc(Unicode(**_REQUIRED), Unicode(**_REQUIRED), _returns=Integer,
         _in_arg_names={"session_id": "sessionId", "batch_id": "batchId"}, _out_variable_name="acknowledged",
         _port_type=PORT)
    def acknowledgeBatch(ctx: MethodContext, session_id: str, batch_id: str) -> int:
        """Mark a leased batch as collected; returns how many of its events it still held."""
        return pull.acknowledge(runtime_of(ctx).sessions, account_of(ctx, session_id), batch_id)

    @rpc(Unicode(**_REQUIRED), Unicode(**_REQUIRED), _returns=BatchResult,
         _in_arg_names={"session_id": "sessionId", "batch_id": "batchId"}, _port_type=PORT)
    def getBatchAgain(ctx: MethodContext, session_id: str, batch_id: str) -> None:
        """The events of an earlier batch, within the recovery window (after a client crashed)."""
        rt = runtime_of(ctx)
        batch = pull.batch_again(rt.read_sessions, account_of(ctx, session_id), batch_id,
                                 timedelta(days=rt.settings.recovery_days))
        _answer(ctx)(batch)


def _answer(ctx: MethodContext) -> Callable[[pull.Batch], None]:
    """A pull renderer that writes the response envelope itself, so Spyne does not serialise it."""
    message = ctx.descriptor.out_message
    response_name = message.get_type_name()
    result_name = next(iter(fields_of(message)))

    def render(batch: pull.Batch) -> None:
        ctx.out_string = [write_batch(batch, response_name, result_name)]

    return render


# Characters XML 1.0 cannot carry. Events are validated, but a control character in a
# text field must not make every later batch of the queue fail to render.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TAGS = {name: f"{{{TNS}}}{name}" for name in model.FIELD_NAMES}


def _text(name: str, value: Any) -> str:
    if type(value) is str:
        # Printable ASCII, by far the common case, needs no scan for what XML cannot carry.
        return value if value.isascii() and value.isprintable() else _NOT_XML.sub("\ufffd", value)
    if name == "data":
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value.isoformat())


def write_batch(batch: pull.Batch, response_name: str = "getBatchResponse",
                result_name: str = "getBatchResult") -> bytes:
    """The SOAP response envelope of a batch: the same XML infoset Spyne writes for a BatchResult.

    Written with lxml's incremental writer (a 10,000-event answer is about 5 MB).
    """
    t = f"{{{TNS}}}"
    out = io.BytesIO()
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap11env": SOAP_ENV, "tns": TNS}), \
                xf.element(f"{{{SOAP_ENV}}}Body"), xf.element(t + response_name), xf.element(t + result_name):
            if batch.id is not None:
                with xf.element(t + "batchId"):
                    xf.write(batch.id)
            with xf.element(t + "count"):
                xf.write(str(len(batch.events)))
            if batch.lease_until is not None:
                with xf.element(t + "leaseUntil"):
                    xf.write(batch.lease_until.isoformat())
            with xf.element(t + "events"):
                # Events come as the store reads them: their fields in the model's order,
                # absent ones (an empty data too) left out.
                for event in batch.events:
                    with xf.element(t + "TypedEvent"):
                        for name, value in event.items():
                            with xf.element(_TAGS[name]):
                                xf.write(_text(name, value))
    return out.getvalue()


def application(runtime: Runtime | None) -> ServiceApplication:
    """The service's Spyne application: the pull and the webhook operations, over ``runtime``.

    Without a Runtime, the application only describes the service (its WSDL).
    """
    return ServiceApplication([EventsService, WebHooksService], runtime, tns=TNS, name="Events")


def _server(runtime: Runtime | None, public_url: str) -> WsgiApplication:
    server = WsgiApplication(application(runtime), max_content_length=MAX_SOAP_REQUEST_BYTES)
    # Spyne would otherwise build the WSDL, and its address, from the first ?wsdl request.
    server.doc.wsdl11.build_interface_document(public_url.rstrip("/") + PATH)
    return server


def make_wsgi(runtime: Runtime) -> WsgiApplication:
    """The service as a WSGI application, to mount at /soap/events; its WSDL names the configured public URL."""
    return _server(runtime, runtime.settings.effective_public_url)


def wsdl(public_url: str = WSDL_PUBLIC_URL) -> bytes:
    """The service's WSDL with the address ``public_url`` + /soap/events, indented."""
    document = _server(None, public_url).doc.wsdl11.get_interface_document()
    root = etree.fromstring(document)
    etree.indent(root)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8")) + b"\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(wsdl(*sys.argv[1:2]))
