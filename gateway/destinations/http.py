"""The ``http`` kind (a webhook): its settings, their defaults and checks, its public view and its sink."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from gateway.config import Settings
from gateway.destinations.checks import check_number, check_whole, problem
from gateway.events import model
from gateway.limits import MAX_BATCH_EVENTS
from sinks.http import FORMATS, HttpSink, check_headers, check_url, generate_secret, parse_secret
from sinks.outbound import policy_for

DEFAULT_FORMAT = "json"
DEFAULT_BATCH_EVENTS = 500
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 60.0
MIN_RATE, MAX_RATE = 0.01, 1_000_000.0  # events per second


@dataclass(frozen=True, kw_only=True)
class HttpSettings:
    """Where and how a webhook posts. A setting left as None was never given: its default applies
    (for ``timeout_seconds``, the gateway's ``http_timeout_seconds``)."""

    kind: ClassVar[str] = "http"
    # The settings a request may give (``secret`` sets the first of ``secrets``).
    KEYS: ClassVar[tuple[str, ...]] = ("url", "format", "secret", "headers", "basic_auth", "batch_max_events",
                                       "interval_seconds", "batch_max_wait_seconds", "batch_max_bytes",
                                       "timeout_seconds", "verify_tls", "rate_limit")

    url: str
    format: str = DEFAULT_FORMAT
    # The first signs and is shown; a second is the previous one, still signing during rotation.
    secrets: tuple[str, ...] = ()
    headers: Mapping[str, str] | None = None
    basic_auth: tuple[str, str] | None = None
    batch_max_events: int | None = None
    interval_seconds: float | None = None
    batch_max_wait_seconds: float | None = None
    batch_max_bytes: int | None = None
    timeout_seconds: float | None = None
    verify_tls: bool | None = None
    rate_limit: float | None = None  # events per second at most (None: unlimited)

    @classmethod
    def parse(cls, payload: Mapping[str, Any], current: HttpSettings | None) -> HttpSettings:
        """The settings a create (``current`` None) or change request gives, over the current ones;
        ValidationError naming the first bad field. Keys that are not settings are ignored."""
        changes: dict[str, Any] = {}
        if "url" in payload or current is None:
            changes["url"] = _check_url(payload.get("url"))
        if "format" in payload:
            if payload["format"] not in FORMATS:
                raise problem("format", f"{payload['format']!r} is not one of {', '.join(FORMATS)}")
            changes["format"] = payload["format"]
        if "secret" in payload:
            secret = payload["secret"]
            try:
                parse_secret(secret if isinstance(secret, str) else "")
            except ValueError as exc:
                raise problem("secret", str(exc)) from None
            # The previous secret keeps signing too during rotation, until the next change.
            previous = current.secrets[:1] if current else ()
            changes["secrets"] = (secret, *(s for s in previous if s != secret))
        elif current is None or not current.secrets:
            changes["secrets"] = (generate_secret(),)
        if "headers" in payload:
            headers = payload["headers"] or {}
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                raise problem("headers", "must be an object of header names to string values")
            changes["headers"] = headers
        if "basic_auth" in payload:
            auth = payload["basic_auth"]
            if auth is not None and not (isinstance(auth, dict) and isinstance(auth.get("username"), str)
                                         and isinstance(auth.get("password"), str)):
                raise problem("basic_auth", "must be {\"username\": ..., \"password\": ...} or null")
            changes["basic_auth"] = (auth["username"], auth["password"]) if auth else None
        if "batch_max_events" in payload:
            changes["batch_max_events"] = check_whole(payload, "batch_max_events", 1, MAX_BATCH_EVENTS)
        for key in ("interval_seconds", "batch_max_wait_seconds"):
            if key in payload:
                changes[key] = check_number(payload, key, 0, 86_400)
        if "batch_max_bytes" in payload:
            changes["batch_max_bytes"] = check_whole(payload, "batch_max_bytes", 1024, 100_000_000)
        if "timeout_seconds" in payload:
            changes["timeout_seconds"] = check_number(payload, "timeout_seconds", MIN_TIMEOUT, MAX_TIMEOUT)
        if "verify_tls" in payload:
            changes["verify_tls"] = bool(payload["verify_tls"])
        if "rate_limit" in payload:
            changes["rate_limit"] = (None if payload["rate_limit"] is None
                                     else float(check_number(payload, "rate_limit", MIN_RATE, MAX_RATE)))
        settings = replace(current, **changes) if current else cls(**changes)
        settings._check_target()
        return settings

    def _check_target(self) -> None:
        """What the sink itself would refuse: a URL it cannot post to, headers it cannot send."""
        try:
            check_url(self.url)
        except ValueError as exc:
            raise problem("url", str(exc)) from None
        try:
            check_headers(self.headers or {})
        except ValueError as exc:
            raise problem("headers", str(exc)) from None

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> HttpSettings:
        """The settings as the store holds them (checked when they were stored, so not again)."""
        auth = stored.get("basic_auth")
        return cls(url=stored["url"], format=stored.get("format", DEFAULT_FORMAT),
                   secrets=tuple(stored.get("secrets", ())), headers=stored.get("headers"),
                   basic_auth=(auth[0], auth[1]) if auth else None,
                   batch_max_events=stored.get("batch_max_events"), interval_seconds=stored.get("interval_seconds"),
                   batch_max_wait_seconds=stored.get("batch_max_wait_seconds"),
                   batch_max_bytes=stored.get("batch_max_bytes"), timeout_seconds=stored.get("timeout_seconds"),
                   verify_tls=stored.get("verify_tls"), rate_limit=stored.get("rate_limit"))

    def stored(self) -> dict[str, Any]:
        """The settings as the store keeps them (JSON): the settings given, none of the defaults."""
        shown: dict[str, Any] = {"url": self.url, "format": self.format, "secrets": list(self.secrets)}
        if self.headers is not None:
            shown["headers"] = dict(self.headers)
        if self.basic_auth is not None:
            shown["basic_auth"] = list(self.basic_auth)
        for key in ("batch_max_events", "interval_seconds", "batch_max_wait_seconds", "batch_max_bytes",
                    "timeout_seconds", "verify_tls", "rate_limit"):
            if (value := getattr(self, key)) is not None:
                shown[key] = value
        return shown

    def view(self) -> dict[str, Any]:
        """The settings as the API shows them: neither the secret nor the basic_auth password."""
        return {"url": self.url, "format": self.format, "headers": dict(self.headers or {}),
                "basic_auth": self.basic_auth is not None, "batch_max_events": self.batch_limit,
                "interval_seconds": 0 if self.interval_seconds is None else self.interval_seconds,
                "batch_max_bytes": self.batch_max_bytes, "rate_limit": self.rate_limit}

    @property
    def name(self) -> str:
        """How lists name the webhook: its URL."""
        return self.url[:200]

    @property
    def secret(self) -> str:
        """The secret that signs now."""
        return self.secrets[0]

    @property
    def batch_limit(self) -> int:
        """Events per delivery at most."""
        return DEFAULT_BATCH_EVENTS if self.batch_max_events is None else self.batch_max_events

    @property
    def interval(self) -> float:
        """Seconds between the starts of two deliveries at least (0: no pause)."""
        return float(self.interval_seconds or 0)

    @property
    def batch_wait(self) -> float:
        """Seconds a batch may wait to fill up to ``batch_limit`` (0: it goes at once)."""
        return float(self.batch_max_wait_seconds or 0)

    def sink(self, config: Settings, account: str) -> HttpSink:
        """The sink that posts to the webhook (``account`` is not part of a webhook's request)."""
        # A webhook's own timeout, if smaller, also bounds each whole request.
        limit = min(config.delivery_deadline_seconds, self.timeout_seconds or config.delivery_deadline_seconds)
        return HttpSink(
            self.url, format=self.format, secrets=self.secrets, headers=self.headers or {},
            basic_auth=self.basic_auth, timeout=float(self.timeout_seconds or config.http_timeout_seconds),
            deadline=float(limit), policy=policy_for(config.outbound_allow_networks),
            verify_tls=self.verify_tls is not False, max_retry_after=config.max_retry_after_seconds,
            max_bytes=self.batch_max_bytes,
        )


def _check_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise problem("url", "is required")
    try:
        return model.check_url(value)
    except ValueError as exc:
        raise problem("url", str(exc)) from None
