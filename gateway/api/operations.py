"""What each REST view takes and answers, declared beside it with ``@operation(...)``: the request body, query
parameters, answer, success status, error statuses and who may call. /openapi.json is built from these
declarations and the app's own routes; a view without one is not documented (and the tests refuse that)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

View = TypeVar("View", bound=Callable[..., object])
Caller = Literal["account", "metrics", "anyone"]
_ATTRIBUTE = "__eventgw_operation__"


@dataclass(frozen=True)
class Operation:
    """One view's contract.

    ``body`` and ``answer`` are types (typed dicts, settings classes, ``list[...]``) or, for ``body``, a tuple
    of settings classes, one per kind, each joined with ``fields`` (what the request gives besides the
    settings); with ``partial``, no setting is required (a change); with ``body_optional``, no body will do.
    ``errors`` are the statuses besides those every such view has (401 and 429 for an account's call, 400 and
    413 with a body or query, 404 with an id in the path).
    """

    answer: object = None
    status: int = 200
    body: object = None
    fields: object = None
    partial: bool = False
    query: object = None
    errors: tuple[int, ...] = ()
    caller: Caller = "account"
    media_type: str = "application/json"
    body_media_types: tuple[str, ...] = ("application/json",)
    body_optional: bool = False


def operation(*, answer: object = None, status: int = 200, body: object = None, fields: object = None,
              partial: bool = False, query: object = None, errors: tuple[int, ...] = (), caller: Caller = "account",
              media_type: str = "application/json",
              body_media_types: tuple[str, ...] = ("application/json",),
              body_optional: bool = False) -> Callable[[View], View]:
    """Declare what the decorated view takes and answers (see ``Operation``); put it below the route decorator."""
    declared = Operation(answer, status, body, fields, partial, query, errors, caller, media_type, body_media_types,
                         body_optional)

    def attach(view: View) -> View:
        setattr(view, _ATTRIBUTE, declared)
        return view

    return attach


def declared(view: Callable[..., object]) -> Operation | None:
    """The declaration of a view, or None when it has none."""
    found = getattr(view, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None
