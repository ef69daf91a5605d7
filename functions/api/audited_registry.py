"""An audited registry: a handful of items an account registers through the report API (web-tracking
sites, webhooks), listed newest first, each addition and removal on the audit trail with what the
item was.

The area's module (``sites``, ``webhooks``) checks its input, builds the item and says how the trail
names it (a ``RegistryAudit``); this module adds, lists and removes it the one way they share. The
repository is an argument, so the unit tests hand the area an in-memory fake.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from functions.api import audit


class Registered(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> str: ...


Item = TypeVar("Item", bound=Registered)


class Registry(Protocol[Item]):
    def add(self, item: Item) -> None: ...

    def all(self) -> list[Item]:
        """Every item, in no particular order (an account has a handful)."""
        ...

    def get(self, item_id: str) -> Item | None: ...

    def delete(self, item_id: str) -> None: ...


@dataclass(frozen=True)
class RegistryAudit(Generic[Item]):
    """How the audit trail names an area's items and their changes."""

    created: audit.Action
    deleted: audit.Action
    target_prefix: str  # an item's target is ``{target_prefix}/{id}``
    valid_id: re.Pattern[str]  # what an id of this area can look like
    not_found: Callable[[str], Exception]  # the area's error for an id that names nothing
    described: Callable[[Item], Mapping[str, Any]]  # the item as the trail keeps it


@dataclass(frozen=True)
class Change:
    """Who makes a change (the API token's name), and the trail and moment it is recorded with (by
    default the container's trail, and now)."""

    actor: str
    trail: audit.AuditTrail | None = None
    now: datetime | None = None

    def record(
        self,
        action: audit.Action,
        target: str,
        *,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        audit.record(
            action, target, actor=self.actor, before=before, after=after, trail=self.trail, now=self.now
        )


def add(item: Item, kind: RegistryAudit[Item], repo: Registry[Item], change: Change) -> None:
    """Store ``item`` and record its creation."""
    repo.add(item)
    change.record(kind.created, f"{kind.target_prefix}/{item.id}", after=kind.described(item))


def newest(repo: Registry[Item]) -> list[Item]:
    """Every item, newest first (the id orders items created in the same millisecond)."""
    return sorted(repo.all(), key=lambda item: (item.created_at, item.id), reverse=True)


def delete(item_id: str, kind: RegistryAudit[Item], repo: Registry[Item], change: Change) -> None:
    """Remove an item and record what it was; ``kind.not_found`` unless there is one by that id."""
    # An id that cannot be one of the area's is not looked up: DynamoDB would refuse an over-long key.
    item = repo.get(item_id) if kind.valid_id.match(item_id) else None
    if item is None:
        raise kind.not_found(item_id)
    repo.delete(item_id)
    change.record(kind.deleted, f"{kind.target_prefix}/{item_id}", before=kind.described(item))
