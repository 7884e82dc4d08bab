"""Which event types of an account go to which destinations.

By default every type goes to the account's pull queue. Routing a type to a push
destination takes it out of the pull queue's default set; a type left with no
destination goes back to the pull queue, so no event is ever stored unrouted by accident.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from gateway.destinations.pull import PullSettings
from gateway.errors import NotFound, ValidationError
from gateway.events.model import ALL_TYPES
from gateway.store.models import Destination, Route


def pull_destination(session: Session, account_id: int) -> int:
    """The id of the account's pull queue."""
    destination_id = session.scalar(
        select(Destination.id).where(Destination.account_id == account_id, Destination.kind == PullSettings.kind)
    )
    if destination_id is None:
        raise NotFound("pull queue of account", account_id)
    return destination_id


def _owned(session: Session, account_id: int, destination_id: int) -> Destination:
    destination = session.get(Destination, destination_id)
    if destination is None or destination.account_id != account_id:
        raise NotFound("destination", destination_id)
    return destination


def add_routes(session: Session, account_id: int, destination_id: int, types: Iterable[str]) -> None:
    """Route ``types`` to the destination as well, taking them out of the pull queue's default set."""
    pull_id = pull_destination(session, account_id)
    types = list(types)
    existing = set(session.scalars(select(Route.event_type).where(
        Route.account_id == account_id, Route.destination_id == destination_id)))
    session.add_all(Route(account_id=account_id, event_type=t, destination_id=destination_id)
                    for t in types if t not in existing)
    if destination_id != pull_id and types:
        session.execute(delete(Route).where(Route.account_id == account_id, Route.destination_id == pull_id,
                                            Route.event_type.in_(types)))
    session.flush()


def remove_routes(session: Session, account_id: int, destination_id: int, types: Iterable[str] | None = None) -> None:
    """Stop routing ``types`` (default: all) to the destination; orphaned types go back to the pull queue."""
    condition = [Route.account_id == account_id, Route.destination_id == destination_id]
    if types is not None:
        condition.append(Route.event_type.in_(list(types)))
    session.execute(delete(Route).where(*condition))
    _restore_pull(session, account_id)


def replace_routes(session: Session, account_id: int, destination_id: int, types: Iterable[str]) -> None:
    """Route exactly ``types`` to the destination: the others it had go back to the pull queue if orphaned."""
    types = list(types)
    remove_routes(session, account_id, destination_id, [t for t in types_of(session, destination_id) if t not in types])
    add_routes(session, account_id, destination_id, types)


def _restore_pull(session: Session, account_id: int) -> None:
    routed = set(session.scalars(select(Route.event_type).where(Route.account_id == account_id)))
    pull_id = pull_destination(session, account_id)
    session.add_all(Route(account_id=account_id, event_type=t, destination_id=pull_id)
                    for t in ALL_TYPES if t not in routed)
    session.flush()


def set_route(session: Session, account_id: int, event_type: str, destination_ids: list[int]) -> None:
    """Route one type to exactly these destinations (one, for the legacy one-destination-per-type setup)."""
    if not destination_ids:
        raise ValidationError("name at least one destination", "destinations")
    destination_ids = list(dict.fromkeys(destination_ids))  # a repeated id is one route, not a clash
    for destination_id in destination_ids:
        _owned(session, account_id, destination_id)
    session.execute(delete(Route).where(Route.account_id == account_id, Route.event_type == event_type))
    session.add_all(Route(account_id=account_id, event_type=event_type, destination_id=d) for d in destination_ids)
    session.flush()


def routes_table(session: Session, account_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every type with the destinations it goes to."""
    table: dict[str, list[dict[str, Any]]] = {t: [] for t in ALL_TYPES}
    for event_type, destination in session.execute(
        select(Route.event_type, Destination)
        .join(Destination, Destination.id == Route.destination_id)
        .where(Route.account_id == account_id)
        .order_by(Destination.id)
    ):
        table[event_type].append({"id": destination.id, "kind": destination.kind, "name": destination.name,
                                  "active": destination.active})
    return table


def types_of(session: Session, destination_id: int) -> list[str]:
    """The types routed to a destination, in the model's order."""
    routed = set(session.scalars(select(Route.event_type).where(Route.destination_id == destination_id)))
    return [t for t in ALL_TYPES if t in routed]
