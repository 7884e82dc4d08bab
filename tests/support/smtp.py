"""aiosmtpd on 127.0.0.1, recording what it receives: with STARTTLS and AUTH, over implicit TLS, or plain."""
from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.net import free_port
from tests.support.tls import TlsFiles

REFUSED_PREFIX = "nobody@"
"""Recipients whose address starts with this are refused with 550."""


@dataclass
class SmtpServer:
    """A running server: where it is, its one login, and what it received.

    ``user`` and ``password`` are None on the plain server; ``ca_file`` trusts its certificate.
    """

    host: str
    port: int
    user: str | None
    password: str | None
    ca_file: str | None
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.startswith(REFUSED_PREFIX):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content.replace(b"\r\n", b"\n")
        message = BytesParser(policy=default_policy).parsebytes(content)
        self.server.messages.append(message)
        self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return f"250 2.0.0 Ok: queued as Q{len(self.server.messages)}"


def _authenticator(user: str, password: str) -> Any:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (user.encode(), password.encode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    return authenticate


@contextlib.contextmanager
def serve_smtp(tls: TlsFiles | None, mode: str) -> Iterator[SmtpServer]:
    """Run aiosmtpd until the block ends; ``mode`` is ``starttls``, ``tls`` (implicit) or ``none`` (no TLS, no AUTH)."""
    port = free_port()
    secured = mode != "none"
    server = SmtpServer(
        "127.0.0.1", port,
        "mailer" if secured else None,
        secrets.token_urlsafe(12) if secured else None,
        tls.ca_file if tls else None,
    )
    options: dict[str, Any] = {}
    if secured and tls is not None:
        options = {"authenticator": _authenticator(server.user or "", server.password or "")}
        if mode == "starttls":
            options.update(tls_context=tls.server_context(), require_starttls=True,
                           auth_required=True, auth_require_tls=True)
        else:
            # aiosmtpd counts only STARTTLS as TLS for AUTH; on an implicit-TLS listener it must
            # be told that no upgrade is needed, and then it cannot also require AUTH without warning.
            options.update(ssl_context=tls.server_context(), auth_require_tls=False)
    controller = Controller(_Handler(server), hostname="127.0.0.1", port=port, server_hostname="mx.test", **options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
