"""The Spyne application the typed services run in: it holds the Runtime, resolves sessions, answers errors as Faults.

Operations reach it through their call context, with ``runtime_of`` and ``account_of``. It is
what ``typed`` (the pull operations) and ``typed_webhooks`` share, so neither imports the other.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from gateway.errors import AuthError, GatewayError, NotFound, ValidationError
from gateway.runtime import Runtime
from gateway.soap import sessions
from gateway.soap.spyne_types import Application, Fault, MethodContext, ServiceBase, Soap11

SERVICE_NAME = "EventsService"
"""The one wsdl:service both service classes are ports of (code generators make one class per service)."""

# Spyne logs every client fault (a wrong password, max=0, malformed XML) with a stack
# trace, and malformed requests in full (passwords included). They are the caller's
# errors and answered as Faults; unexpected errors (spyne.application.server) still log.
for _name in ("spyne.application.client", "spyne.server._base", "spyne.protocol.soap.soap11.invalid"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class _Soap11(Soap11):
    """Spyne's SOAP 1.1, refusing documents with a DTD (its parser never expands entities or fetches anything)
    and answering an empty body or one that is not text in its charset with a Fault (Spyne lets those escape)."""

    def create_in_document(self, ctx: MethodContext, charset: str | None = None) -> None:
        try:
            super().create_in_document(ctx, charset)
        except StopIteration:  # Spyne reads the body's first chunk with next()
            raise Fault("Client.XMLSyntaxError", "the request body is empty; POST a SOAP 1.1 envelope") from None
        except UnicodeDecodeError as exc:
            raise Fault("Client.XMLSyntaxError",
                        f"the request body is not {exc.encoding} text (byte {exc.start}: {exc.reason})") from None
        except LookupError:
            raise Fault("Client.XMLSyntaxError", f"unknown charset {charset!r} in the Content-Type") from None
        root, _ = ctx.in_document
        if root.getroottree().docinfo.doctype:  # type: ignore[attr-defined]  # lxml-stubs lack DocInfo.doctype
            raise Fault("Client.XMLSyntaxError", "a document type declaration (DOCTYPE) is not allowed")


class ServiceApplication(Application):
    """A Spyne application of ``services`` over a Runtime (its operations run outside Flask)."""

    def __init__(self, services: Sequence[type[ServiceBase]], runtime: Runtime | None, *, tns: str,
                 name: str) -> None:
        super().__init__(services, tns=tns, name=name, in_protocol=_Soap11(validator="soft"), out_protocol=Soap11())
        self._runtime = runtime

    @property
    def runtime(self) -> Runtime:
        """The Runtime; an application built only for its WSDL has none."""
        if self._runtime is None:
            raise RuntimeError("this application only describes the service")
        return self._runtime

    def account(self, session_id: str) -> int:
        """The account of a live session; AuthError when it is unknown or expired."""
        return sessions.resolve(self.runtime.sessions, session_id, self.runtime.settings.session_idle_seconds)

    def call_wrapper(self, ctx: MethodContext) -> Any:
        """Map the gateway's errors to SOAP Faults, in this one place for every operation (never a stack trace)."""
        try:
            return super().call_wrapper(ctx)
        except ValidationError as exc:
            raise Fault("Client.ValidationError", str(exc)) from None
        except AuthError as exc:
            raise Fault("Client.AuthError", str(exc)) from None
        except NotFound as exc:
            raise Fault("Client.NotFound", str(exc)) from None
        except GatewayError as exc:
            raise Fault("Client.Error", str(exc)) from None


def _application(ctx: MethodContext) -> ServiceApplication:
    # Every service of the typed SOAP edge is served by a ServiceApplication.
    return cast(ServiceApplication, ctx.app)


def runtime_of(ctx: MethodContext) -> Runtime:
    """The Runtime the operation called in ``ctx`` works with."""
    return _application(ctx).runtime


def account_of(ctx: MethodContext, session_id: str) -> int:
    """The account of the session ``session_id``; AuthError when it is unknown or expired."""
    return _application(ctx).account(session_id)
