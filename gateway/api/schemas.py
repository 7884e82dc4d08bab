"""The shapes of the REST API's JSON bodies and answers, as typed dicts: what each view's declaration names and
/openapi.json documents (``gateway.api.openapi`` derives their JSON Schema).

An event's shape is built from the event model's one field list (``gateway.events.model.FIELDS``); the settings
of email and file destinations are not repeated here either: their request bodies derive from the kinds' own
frozen settings classes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, with_config

# pydantic derives JSON Schema from typing_extensions' TypedDict only, before Python 3.12.
from typing_extensions import NotRequired, TypedDict

from gateway.api.params import MAX_LIMIT
from gateway.destinations import control
from gateway.destinations.kinds import kind_named
from gateway.destinations.management import MANAGED_KINDS
from gateway.events import model

# The settings classes of the kinds /api/v1/destinations manages: their fields are the settings a request gives.
DESTINATION_SETTINGS = tuple(kind_named(kind) for kind in MANAGED_KINDS)
# Every request body refuses a field it does not have (400 naming it).
_CLOSED = with_config(ConfigDict(extra="forbid"))
Time = Annotated[Union[str, float], Field(description="ISO 8601 with a zone, or Unix seconds")]
Stamp = Annotated[Union[str, None], Field(description="ISO 8601, UTC")]
# What an event must have whatever its type; which recipient and message fields a type needs is checked at ingest.
EVENT_REQUIRED = ("id", "type", "occurred_at")
_EVENT_KINDS: dict[str, Any] = {"text": str, "url": str, "email": str, "phone": str, "time": Union[str, float],
                                "object": dict[str, Any]}


def _event_fields() -> dict[str, Any]:
    """Each field of the event model as a typed-dict item, its doc and limits included."""
    fields: dict[str, Any] = {}
    for field in model.FIELDS:
        doc = field.doc + (f" (only {', '.join(sorted(field.types))})" if field.types else "")
        max_length = field.max_len if field.kind in ("text", "url", "email", "phone") else None
        if field.kind == "time":
            doc += ": ISO 8601 with a zone, or Unix seconds (answers give ISO 8601, UTC)"
        item: Any = Annotated[_EVENT_KINDS[field.kind], Field(description=doc, max_length=max_length)]
        fields[field.name] = item if field.name in EVENT_REQUIRED else NotRequired[item]
    return fields


if TYPE_CHECKING:
    Event = dict[str, Any]
else:
    Event = TypedDict("Event", _event_fields())
    Event.__doc__ = "An event, as producers post it and the JSON APIs show it."


class Problem(TypedDict):
    """One thing wrong with a request: the record (of an ingest body) and the field it is about."""

    record: int | None
    field: str | None
    message: str


class ErrorBody(TypedDict):
    """Every error answer: a short error code, a message, the problems of an invalid request, and how long to
    wait after too many failed logins."""

    error: str
    message: str
    problems: NotRequired[list[Problem]]
    retry_after: NotRequired[int]


class DeliveryFailure(TypedDict):
    """A delivery asked for now that the receiving end refused or could not be reached for (502)."""

    ok: Literal[False]
    error: str


class IngestResult(TypedDict):
    """How many of the posted events were stored, and how many the account already had (same id)."""

    accepted: int
    duplicates: int


class Batch(TypedDict):
    """A batch of pulled events, oldest first."""

    batch_id: Annotated[str | None, Field(description="null when peeking")]
    mode: Literal["lease", "read", "peek"]
    lease_until: Stamp
    count: int
    events: list[Event]


class BatchQuery(TypedDict, total=False):
    """How to take a batch."""

    types: Annotated[str, Field(description="comma-separated event types (default: every type)")]
    max: Annotated[int, Field(ge=1, le=10_000, description="events at most (default 1000)")]
    mode: Annotated[Literal["lease", "read", "peek"],
                    Field(description="lease (default; acknowledge to collect), read (collected at once) or peek")]


class Acknowledged(TypedDict):
    """How many events of a leased batch are now collected."""

    batch_id: str
    acknowledged: int


@_CLOSED
class RequeueRequest(TypedDict):
    """The window of collected events to put back into the pull queue."""

    since: Time
    until: NotRequired[Time]
    types: NotRequired[Annotated[Union[list[str], str], Field(description="event types (default: every type)")]]


class Requeued(TypedDict):
    """How many events were put back."""

    requeued: int


class BasicAuth(TypedDict):
    """HTTP Basic credentials a webhook sends."""

    username: str
    password: str


class WebhookSettings(TypedDict, total=False):
    """What a webhook request may set besides its URL."""

    events: list[str]
    app: str | None
    format: str
    secret: Annotated[str, Field(description="whsec_ and base64 of 24 to 64 bytes (default: generated)")]
    headers: dict[str, str] | None
    basic_auth: BasicAuth | None
    batch_max_events: int
    interval_seconds: float
    batch_max_wait_seconds: float
    batch_max_bytes: int
    timeout_seconds: float
    verify_tls: bool
    rate_limit: Annotated[float | None, Field(description="events per second at most (null: unlimited)")]


@_CLOSED
class WebhookCreate(WebhookSettings):
    """A new webhook; with ``verify``, refused unless its URL answers 2xx to a test event."""

    url: str
    verify: NotRequired[bool]


@_CLOSED
class WebhookChange(WebhookSettings, total=False):
    """A change of a webhook: the settings given replace the current ones."""

    url: str


class Webhook(TypedDict):
    """A webhook as the API shows it; its secret only in the answer to its creation."""

    id: int
    url: str
    events: list[str]
    format: str
    app: str | None
    active: bool
    deactivated_at: Stamp
    failing_since: Stamp
    headers: dict[str, str]
    basic_auth: Annotated[bool, Field(description="whether it sends HTTP Basic credentials")]
    batch_max_events: int
    interval_seconds: float
    batch_max_bytes: int | None
    rate_limit: float | None
    created_at: Stamp
    secret: NotRequired[str]


class WebhookList(TypedDict):
    """The caller's webhooks."""

    webhooks: list[Webhook]


class WebhookFilter(TypedDict, total=False):
    """Which webhooks to list."""

    app: Annotated[str, Field(description="only the webhooks of this app")]
    event: Annotated[str, Field(description="only the webhooks that get this event type")]


class Verified(TypedDict):
    """What the endpoint answered to a test event."""

    ok: bool
    status: int | None
    answer: str
    error: str | None


class ReplayFlag(TypedDict, total=False):
    """Whether an activation delivers what accumulated while the destination was inactive."""

    replay: Annotated[bool, Field(description="deliver what accumulated (default: drop it)")]


class Activated(TypedDict):
    """A destination made active, and what became of the events that waited."""

    id: int
    active: bool
    queued: int
    dropped: int


class ReplayWindow(TypedDict):
    """The window of events to deliver again, [since, until)."""

    since: Time
    until: Time


class Replayed(TypedDict):
    """How many events were queued again."""

    id: int
    queued: int


class Attempt(TypedDict):
    """One delivery attempt."""

    message_id: str | None
    started_at: Stamp
    duration_ms: int | None
    events: int
    outcome: str
    status: int | None
    detail: str | None


class Attempts(TypedDict):
    """Recent delivery attempts, newest first."""

    attempts: list[Attempt]


class Deactivated(TypedDict):
    """A destination made inactive (``deactivated`` false: it already was)."""

    id: int
    active: Literal[False]
    deactivated: bool


class RetriedNow(TypedDict):
    """How many of a destination's waiting retries are now due."""

    id: int
    due: int


class FailedAttempt(TypedDict):
    """A failed delivery attempt, with what the receiver answered."""

    failure: Literal["attempt"]
    at: Stamp
    destination_id: int
    kind: str
    name: str
    active: bool
    message_id: str | None
    events: int
    status: int | None
    duration_ms: int | None
    error: str | None


class ParkedEvent(TypedDict):
    """An event set aside because it cannot be rendered, with why (a re-drive queues it again)."""

    failure: Literal["parked"]
    at: Stamp
    destination_id: int
    kind: str
    name: str
    active: bool
    event_id: int
    event: str
    type: str
    error: str | None


class Failed(TypedDict):
    """Failed deliveries across the account's destinations, newest first."""

    failed: list[Annotated[Union[FailedAttempt, ParkedEvent], Field(discriminator="failure")]]


class FailedQuery(TypedDict, total=False):
    """Which failed deliveries to list."""

    limit: Annotated[int, Field(ge=0, le=control.MAX_LIMIT, description="default 100")]
    before: Annotated[Time, Field(description="only those before this time (to page back)")]
    destination: Annotated[int, Field(ge=1, description="only those of this destination")]


@_CLOSED
class RedriveRequest(TypedDict, total=False):
    """Which parked events to queue again (an empty body: every one of the account's)."""

    destination_id: int | None
    event_ids: list[int]


class Limit(TypedDict, total=False):
    """How many items at most."""

    limit: Annotated[int, Field(ge=0, le=MAX_LIMIT, description="default 100")]


class DestinationFields(TypedDict):
    """What a destination request gives besides its kind's settings."""

    kind: str
    events: NotRequired[list[str]]
    test: NotRequired[Annotated[bool, Field(description="on create: refuse a destination that fails its test")]]


class DestinationChange(TypedDict, total=False):
    """What a destination change gives besides its kind's settings (every one optional: those given replace the
    current ones, secrets left out are kept)."""

    events: list[str]


class DestinationView(TypedDict):
    """An email or file destination as the API shows it: these fields and its kind's settings, never a
    secret (only whether one is set)."""

    id: int
    kind: str
    name: str
    events: list[str]
    active: bool
    deactivated_at: Stamp
    failing_since: Stamp
    created_at: Stamp


class DestinationList(TypedDict):
    """The caller's email and file destinations."""

    destinations: list[DestinationView]


class KindFilter(TypedDict, total=False):
    """Which destinations to list."""

    kind: Annotated[str, Field(description="only destinations of this kind (email, ftp, sftp)")]


class Tested(TypedDict):
    """How a test email or a test upload went."""

    ok: bool
    status: int | None
    answer: str | None
    detail: str | None
    error: str | None


class ExportPeriod(TypedDict, total=False):
    """Which closed period to export again: its start, or the day (and hour) one period starts."""

    start: Annotated[str, Field(description="the period's start, YYYY-MM-DDTHH:MM[:SS] (UTC unless an offset)")]
    date: Annotated[str, Field(description="YYYY-MM-DD")]
    hour: Annotated[int, Field(ge=0, le=23)]


class Exported(TypedDict):
    """An export run again."""

    ok: bool
    detail: str | None


class Flushed(TypedDict):
    """What was sent now."""

    ok: bool
    id: int
    kind: str
    detail: Any


class RouteTarget(TypedDict):
    """A destination an event type goes to."""

    id: int
    kind: str
    name: str
    active: bool


class RoutesTable(TypedDict):
    """Every event type with the destinations it goes to."""

    routes: dict[str, list[RouteTarget]]


@_CLOSED
class RouteChange(TypedDict):
    """Exactly the destinations an event type goes to."""

    destinations: list[int]


class Route(TypedDict):
    """One event type's destinations."""

    type: str
    destinations: list[RouteTarget]


class Notice(TypedDict):
    """An operational notice."""

    id: int
    created_at: Stamp
    kind: str
    destination_id: int | None
    message: str


class Notices(TypedDict):
    """The account's notices, newest first."""

    notifications: list[Notice]


class NoticeEmail(TypedDict):
    """Where notices are mailed (null: nowhere)."""

    email: str | None


class ApiKeyInfo(TypedDict):
    """An API key, known by its prefix."""

    prefix: str
    created_at: Stamp


class AccountView(TypedDict):
    """The calling account."""

    id: int
    name: str
    created_at: Stamp
    api_keys: list[ApiKeyInfo]


@_CLOSED
class PasswordChange(TypedDict):
    """The current password and the new one."""

    current_password: str
    password: str


class NewApiKey(AccountView):
    """The account with its new API key, shown only this once."""

    api_key: str


class Waiting(TypedDict):
    """What waits for one destination."""

    kind: str
    name: str
    active: bool
    pending: int
    oldest_age_seconds: float
    parked: int


class Stats(TypedDict):
    """Stored events per type, and what waits per destination (by id)."""

    events: dict[str, int]
    total: int
    pending: dict[str, Waiting]


class Health(TypedDict):
    """Whether the process can serve: ok, or why not (unavailable, stopping)."""

    status: str
    role: str
    database: str
    error: NotRequired[str]
