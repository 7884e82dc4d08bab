"""The gateway's exception hierarchy; every edge (REST, SOAP, CLI) maps these to its protocol in one place."""
from __future__ import annotations

import re
from dataclasses import dataclass

# An answer names the bad value, but echoes no more of it than this: a producer recognises
# its value from a prefix, and a 1 MB value must not come back 1 MB long, once per field.
ECHO_CHARS = 64
# No message, however many values it quotes, is longer than this.
MESSAGE_CHARS = 1000
# A quoted value (a repr), in either quote, escapes included.
_QUOTED = re.compile("|".join(rf"{q}[^{q}\\]*(?:\\.[^{q}\\]*)*{q}" for q in "'\""))


def shorten(text: str) -> str:
    """``text`` with each quoted value cut to a prefix of ECHO_CHARS characters and ``...``, and the
    whole cut to MESSAGE_CHARS (its start and its end kept: where the explanation usually is)."""
    if len(text) <= ECHO_CHARS + 2:
        return text
    text = _QUOTED.sub(_cut_quoted, text)
    if len(text) > MESSAGE_CHARS:
        keep = (MESSAGE_CHARS - 5) // 2
        text = f"{text[:keep]} ... {text[-keep:]}"
    return text


def _cut_quoted(match: re.Match[str]) -> str:
    quoted = match.group()
    return quoted if len(quoted) <= ECHO_CHARS + 2 else quoted[:ECHO_CHARS + 1] + "..." + quoted[0]


def excerpt(value: object) -> str:
    """A value as an answer may echo it: its repr, cut to ECHO_CHARS characters and ``...``."""
    shown = repr(value)
    return shown if len(shown) <= ECHO_CHARS else shown[:ECHO_CHARS] + "..."


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input record: which record, which field, and what."""

    record: int | str | None
    field: str | None
    message: str

    def __post_init__(self) -> None:
        # Every edge shows problems; cutting echoed values here covers them all.
        object.__setattr__(self, "message", shorten(self.message))
        if self.field is not None and len(self.field) > ECHO_CHARS:
            object.__setattr__(self, "field", self.field[:ECHO_CHARS] + "...")
        if isinstance(self.record, str) and len(self.record) > ECHO_CHARS:
            object.__setattr__(self, "record", self.record[:ECHO_CHARS] + "...")

    def as_dict(self) -> dict[str, object]:
        """The problem as a JSON-ready mapping."""
        return {"record": self.record, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        where = []
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ValidationError(GatewayError):
    """Input is invalid; carries every problem found (up to a limit), each naming record and field."""

    def __init__(self, problems: list[Problem] | Problem | str, field: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(None, field, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("; ".join(str(p) for p in problems[:5]) + (" ..." if len(problems) > 5 else ""))


class TooLarge(ValidationError):
    """A request body or batch is over its size limit."""


class Unsupported(ValidationError):
    """A request comes in a form the gateway does not take (a content encoding, say)."""


class AuthError(GatewayError):
    """Credentials are missing, wrong, or the session is unknown or expired."""


class LockedOut(AuthError):
    """Logins under this name are refused for a while, after too many failed ones in a row."""


class NotFound(GatewayError):
    """The addressed object does not exist for this account."""

    def __init__(self, what: str, ident: object) -> None:
        self.what = what
        self.ident = ident
        super().__init__(f"{what} {excerpt(ident)} not found")


class Conflict(GatewayError):
    """The request clashes with the current state (a name already in use, say)."""


class ConfigError(GatewayError):
    """The configuration is invalid; raised at start-up."""


class DeliveryError(GatewayError):
    """A sink could not deliver a batch.

    ``retryable`` says whether trying again can help; ``retry_after`` is the delay in
    seconds the receiver asked for, if any; ``status`` is the transport's status code.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        status: int | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.excerpt = excerpt
