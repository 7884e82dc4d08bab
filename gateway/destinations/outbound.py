"""The outbound address policy as destinations apply it: the configured policy, the check of a destination's
target before it is stored or tested, and file targets reached under the policy and the delivery deadline.

The policy itself (which addresses, resolved how, connected how) is ``sinks.outbound``'s; every sink
applies it again at each connection, so a target that passes here and later resolves elsewhere
is still refused.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gateway.config import Settings
from gateway.destinations.checks import problem
from gateway.destinations.http import HttpSettings
from gateway.destinations.kinds import FILE_KINDS, file_settings, settings_of
from gateway.store.models import Destination
from sinks.ftp import DEFAULT_PORTS, FileTarget
from sinks.http import url_target
from sinks.outbound import AddressNotAllowed, OutboundPolicy, policy_for


def policy(config: Settings) -> OutboundPolicy:
    """The policy of the configuration: public addresses, and the networks ``outbound_allow_networks`` names."""
    return policy_for(config.outbound_allow_networks)


def reach(target: FileTarget, config: Settings) -> FileTarget:
    """``target`` as the configuration lets the gateway reach it: under its policy and delivery deadline."""
    return replace(target, policy=policy(config), deadline=config.delivery_deadline_seconds)


def check_target(destination: Destination, config: Settings) -> None:
    """ValidationError naming the field (``url`` or ``host``) when the destination's target is, or now
    resolves to, an address the policy refuses. A name that does not resolve yet passes."""
    settings = settings_of(destination)
    if isinstance(settings, HttpSettings):
        field, (host, port) = "url", url_target(settings.url)
    elif destination.kind in FILE_KINDS:
        target = file_settings(destination).target()
        field, host, port = "host", target.host, target.port or DEFAULT_PORTS[target.protocol]
    else:
        return
    check_host(config, field, host, port)


def check_change(payload: Mapping[str, Any], config: Settings) -> None:
    """Refuse a change of a destination's target (a webhook's ``url``, a file destination's ``host``) to an
    address the policy does not let the gateway reach (ValidationError naming the field). Call it before the
    change's transaction: it may resolve a host name."""
    if "url" in payload:
        check_url(config, payload["url"])
    if isinstance(payload.get("host"), str):
        check_host(config, "host", payload["host"], 0)


def check_url(config: Settings, url: object) -> None:
    """ValidationError naming ``url`` when a webhook URL's host is, or now resolves to, an address the policy
    refuses; a URL that is not one passes (checking it is the settings' own business)."""
    try:
        host, port = url_target(url) if isinstance(url, str) else ("", 0)
    except ValueError:
        return
    if host:
        check_host(config, "url", host, port)


def check_host(config: Settings, field: str, host: str, port: int) -> None:
    """ValidationError naming ``field`` when ``host`` is, or now resolves to, an address the policy refuses."""
    try:
        policy(config).check(host, port)
    except AddressNotAllowed as exc:
        raise problem(field, str(exc)) from None
