"""The ``pull`` kind: the account's queue that clients collect over SOAP or REST. It has no settings."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.destinations.checks import check_keys


@dataclass(frozen=True)
class PullSettings:
    """The settings of a pull queue: none, so that every kind answers alike."""

    kind: ClassVar[str] = "pull"
    KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parse(cls, payload: Mapping[str, Any], current: PullSettings | None) -> PullSettings:
        """A pull queue's settings; ValidationError for any setting a request gives."""
        check_keys(payload, cls.KEYS, cls.kind)
        return cls()

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> PullSettings:
        """The settings as the store holds them: none."""
        return cls()

    def stored(self) -> dict[str, Any]:
        """The settings as the store keeps them: none."""
        return {}

    def view(self) -> dict[str, Any]:
        """The settings as the API shows them: none."""
        return {}

    @property
    def name(self) -> str:
        """How lists name the account's pull queue."""
        return "pull queue"
