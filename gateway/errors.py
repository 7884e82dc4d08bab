"""The gateway's exception hierarchy; every edge (REST, SOAP, CLI) maps these to its protocol in one place."""
from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input record: which record, which field, and what."""

    record: int | str | None
    field: str | None
    message: str

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


class AuthError(GatewayError):
    """Credentials are missing, wrong, or the session is unknown or expired."""


class LockedOut(AuthError):
    """Logins under this name are refused for a while, after too many failed ones in a row."""


class NotFound(GatewayError):
    """The addressed object does not exist for this account."""

    def __init__(self, what: str, ident: object) -> None:
        self.what = what
        self.ident = ident
        super().__init__(f"{what} {ident!r} not found")


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
