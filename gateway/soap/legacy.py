"""The legacy `handleRequest` endpoint (rpc/encoded and rpc/literal), wire-compatible with existing clients.

Translates a parsed request into calls of the login and pull functions and their
outcome into a `Result` map. Business errors are an HTTP 200 `Result` with one of the
documented codes; only XML that is not a `handleRequest` at all gets a SOAP Fault.
"""
from __future__ import annotations

import base64
import csv
import io
import logging
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from flask import Blueprint, Response, request

from gateway import pull
from gateway.api.context import current_runtime
from gateway.errors import AuthError, GatewayError, LockedOut, ValidationError
from gateway.events import formats
from gateway.limits import MAX_SOAP_REQUEST_BYTES
from gateway.soap import sessions
from gateway.soap.encoding import EnvelopeError, Flavour, PaintRequest, encode_fault, encode_result, parse_envelope
from gateway.store.models import utcnow

blueprint = Blueprint("legacy", __name__)
log = logging.getLogger(__name__)

# Package data, installed with the code; wsdl/ at the top of the repository holds the
# published copies, and tests/test_package.py keeps the two the same.
WSDLS = resources.files(__package__) / "wsdl"
WSDL_PLACEHOLDER = "http://HOST/paint"
DEFAULT_MAX_NOTIFICATIONS = 1000
CONTEXT_NOT_FOUND = "Bean requested not found - Bean type: [bus_entity_context]"
XML = "text/xml; charset=utf-8"
ENCODED_ACTION = "urn:localhost-paint#handleRequest"
LITERAL_ACTION = "urn:localhost-paint#handleRequestLiteral"

Result = dict[str, Any]


class LegacyError(GatewayError):
    """A business error answered as a `Result` with a documented code."""

    def __init__(self, code: str, data: str | Mapping[str, str]) -> None:
        super().__init__(str(data))
        self.code = code
        self.data = data


def _ok(data: Mapping[str, Any] | None = None) -> Result:
    return {"result": "success", "resultData": dict(data)} if data else {"result": "success"}


def _error(code: str, data: str | Mapping[str, str]) -> Result:
    return {"result": code, "resultData": data}


def _param(req: PaintRequest, name: str) -> Any:
    """A getBatch parameter, read from processData first, then entityData."""
    for source in (req.process_data, req.entity_data):
        if source.get(name) not in (None, ""):
            return source[name]
    return None


def _types_param(value: Any) -> Any:
    if isinstance(value, Mapping):  # a literal-flavour array: keys "0", "1", ...
        return [value[key] for key in sorted(value, key=lambda k: int(k) if str(k).isdigit() else 0)]
    return value


def _mark_as_read(value: Any) -> bool:
    # Missing means Y, as the original documents for its clients.
    if value is None:
        return True
    text = str(value).strip().upper()
    if text not in ("Y", "N"):
        raise ValidationError("must be Y or N", "markAsReadInd")
    return text == "Y"


def _batch_result(batch: pull.Batch) -> Result:
    # eventMeta: the header of each type present, in order of first appearance.
    meta = {etype: formats.legacy_header(etype) for etype in dict.fromkeys(event["type"] for event in batch.events)}
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(map(formats.to_legacy_row, batch.events))
    data = base64.b64encode(buffer.getvalue().encode("utf-8")).decode("ascii")
    return _ok({"bus_entity_eventNotificationBatch": {
        "eventCount": len(batch.events), "eventMeta": meta, "eventData": data,
    }})


def render_batch(batch: pull.Batch, flavour: Flavour) -> bytes:
    """The whole getBatch response envelope of a batch."""
    return encode_result(_batch_result(batch), flavour)


def _login(req: PaintRequest) -> Result:
    rt = current_runtime()
    name = str(req.entity_data.get("userName") or "").strip()
    password = str(req.entity_data.get("password") or "")
    if not name or not password:
        missing = {k: "is required" for k, v in (("userName", name), ("password", password)) if not v}
        raise LegacyError("bean_exception_validation", missing)
    try:
        context_id = sessions.login(rt.sessions, name, password, address=request.remote_addr, settings=rt.settings)
    except LockedOut as exc:
        raise LegacyError("bean_exception_security", str(exc)) from None
    except AuthError:
        raise LegacyError("bean_exception_validation", {"password": "invalid login details"}) from None
    now = formats.iso(utcnow())
    # Key order matters to clients that index pairs by position (resultData.pairs[3] is
    # the context bean, whose pairs[9] is beanId).
    return _ok({
        "bus_entity_account_identity": {"accountName": name, "defaultLanguage": "en"},
        "bus_entity_account_login": {"userName": name},
        "bus_entity_account_profile": {"profileName": name},
        "bus_entity_context": {
            "beanClass": "bus_entity_context", "userName": name, "accountName": name,
            "sessionTimeout": rt.settings.session_idle_seconds,
            "loginTime": now, "lastActivity": now, "profileName": name, "status": "active", "defaultLanguage": "en",
            "beanId": context_id,
        },
    })


def _logout(req: PaintRequest) -> Result:
    sessions.logout(current_runtime().sessions, req.context_id)
    return _ok()


def _account(req: PaintRequest) -> int:
    rt = current_runtime()
    try:
        return sessions.resolve(rt.sessions, req.context_id, rt.settings.session_idle_seconds)
    except AuthError:
        raise LegacyError("bean_exception_system", CONTEXT_NOT_FOUND) from None


def _get_batch(req: PaintRequest, flavour: Flavour) -> bytes:
    account_id = _account(req)
    rt = current_runtime()
    problems: dict[str, str] = {}
    types: list[str] = []
    limit = DEFAULT_MAX_NOTIFICATIONS
    read = True
    try:
        types = pull.check_types(_types_param(_param(req, "notificationTypes")), "notificationTypes")
    except ValidationError as exc:
        problems["notificationTypes"] = exc.problems[0].message
    raw_max = _param(req, "maxNotifications")
    if raw_max is not None:
        try:
            limit = pull.check_max(raw_max, "maxNotifications")
        except ValidationError as exc:
            problems["maxNotifications"] = exc.problems[0].message
    try:
        read = _mark_as_read(_param(req, "markAsReadInd"))
    except ValidationError as exc:
        problems["markAsReadInd"] = exc.problems[0].message
    if problems:
        raise LegacyError("bean_exception_validation", problems)
    return pull.get_batch(rt.sessions, account_id, types, limit, "read" if read else "peek",
                          lambda batch: render_batch(batch, flavour))


Process = Callable[[PaintRequest], Result]
_PROCESSES: dict[tuple[str, str], Process] = {
    ("bus_facade_context", "login"): _login,
    ("bus_facade_context", "logout"): _logout,
}
_FACADES = {"bus_facade_context", "bus_facade_eventNotification"}


def handle(req: PaintRequest) -> bytes:
    """Answer one parsed handleRequest with the encoded `Result` envelope."""
    class_name = (req.class_name or "").strip()
    process_name = (req.process_name or "").strip()
    try:
        if class_name not in _FACADES:
            raise LegacyError("bean_exception_system", f"Bean requested not found - Bean type: [{class_name}]")
        if (class_name, process_name) == ("bus_facade_eventNotification", "getBatch"):
            return _get_batch(req, req.flavour)
        process = _PROCESSES.get((class_name, process_name))
        if process is None:
            raise LegacyError("bean_exception_system",
                              f"Process requested not found - [{class_name}::{process_name}]")
        result = process(req)
    except LegacyError as exc:
        result = _error(exc.code, exc.data)
    except ValidationError as exc:
        result = _error("bean_exception_validation", {p.field or "request": p.message for p in exc.problems})
    except GatewayError as exc:
        result = _error("bean_exception_system", str(exc))
    return encode_result(result, req.flavour)


def _flavour_hint() -> Flavour | None:
    """The flavour the SOAPAction names: each WSDL declares its own action."""
    action = request.headers.get("SOAPAction", "").strip('" ')
    if action == LITERAL_ACTION:
        return "literal"
    return "encoded" if action == ENCODED_ACTION else None


@blueprint.post("/paint")
@blueprint.post("/_bus/request.soap")
def endpoint() -> Response:
    """POST a handleRequest envelope (any SOAPAction or none)."""
    if (request.content_length or 0) > MAX_SOAP_REQUEST_BYTES:
        return Response(encode_fault("Client", f"request body over {MAX_SOAP_REQUEST_BYTES} bytes"), 500,
                        content_type=XML)
    body = request.stream.read(MAX_SOAP_REQUEST_BYTES + 1)
    try:
        parsed = parse_envelope(body, max_bytes=MAX_SOAP_REQUEST_BYTES, flavour_hint=_flavour_hint())
    except EnvelopeError as exc:
        return Response(encode_fault("Client", str(exc)), 500, content_type=XML)
    try:
        return Response(handle(parsed), 200, content_type=XML)
    except Exception:
        log.exception("legacy request failed")
        return Response(encode_fault("Server", "internal error; nothing was changed"), 500, content_type=XML)


def _wsdl(name: str) -> Response:
    text = (WSDLS / name).read_text(encoding="utf-8")
    text = text.replace(WSDL_PLACEHOLDER, current_runtime().settings.effective_public_url + "/paint")
    return Response(text, 200, content_type=XML)


@blueprint.get("/paint")
def wsdl_query() -> Response:
    """`/paint?wsdl` serves the encoded WSDL."""
    if "wsdl" not in {key.lower() for key in request.args}:
        return Response(encode_fault("Client", "POST a handleRequest envelope, or GET ?wsdl"), 405,
                        content_type=XML)
    return _wsdl("ctrlPaint.wsdl")


@blueprint.get("/paint/ctrlPaint.wsdl")
def wsdl_encoded() -> Response:
    """The rpc/encoded WSDL (PHP SoapClient, raw-XML clients)."""
    return _wsdl("ctrlPaint.wsdl")


@blueprint.get("/paint/ctrlPaintLiteral.wsdl")
def wsdl_literal() -> Response:
    """The rpc/literal WSDL (.NET, suds, Savon, node-soap)."""
    return _wsdl("ctrlPaintLiteral.wsdl")
