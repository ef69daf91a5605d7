"""The audited registry the sites and webhooks areas share: newest first, audited adds and removals,
an id that cannot be the area's never looked up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from functions.api import audited_registry
from tests.fakes_audit import FakeAuditTrail

NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Thing:
    id: str
    created_at: str
    name: str = "a thing"


class ThingNotFound(Exception):
    pass


@dataclass
class CountingRepository:
    things: dict[str, Thing] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def add(self, item: Thing) -> None:
        self.things[item.id] = item

    def all(self) -> list[Thing]:
        return list(self.things.values())

    def get(self, item_id: str) -> Thing | None:
        self.lookups.append(item_id)
        return self.things.get(item_id)

    def delete(self, item_id: str) -> None:
        self.things.pop(item_id, None)


THINGS = audited_registry.RegistryAudit[Thing](
    created="site_created",
    deleted="site_deleted",
    target_prefix="things",
    valid_id=re.compile(r"^t[0-9]{1,3}$"),
    not_found=lambda thing_id: ThingNotFound(thing_id),
    described=lambda thing: {"name": thing.name},
)


def test_items_are_listed_newest_first_and_the_id_orders_items_of_one_moment() -> None:
    # Given three items, two created in the same millisecond
    repo = CountingRepository()
    for thing in (Thing("t1", "2026-12-06T09:00:00.000Z"), Thing("t3", "2026-12-06T09:00:00.000Z")):
        repo.add(thing)
    repo.add(Thing("t2", "2026-12-06T10:00:00.000Z"))
    # When they are listed
    listed = audited_registry.newest(repo)
    # Then the newest comes first, and of the two alike the greater id
    assert [thing.id for thing in listed] == ["t2", "t3", "t1"]


def test_adding_and_deleting_record_the_item_after_and_before() -> None:
    # Given an empty registry and trail
    repo, trail = CountingRepository(), FakeAuditTrail()
    # When an item is added, then deleted
    change = audited_registry.Change("ops", trail, NOW)
    audited_registry.add(Thing("t7", "2026-12-06T09:00:00.000Z"), THINGS, repo, change)
    audited_registry.delete("t7", THINGS, repo, change)
    # Then it is gone, and the trail holds both changes with the item as it was
    assert repo.things == {}
    created, deleted = trail.entries
    assert (created.action, created.target, created.before, created.after) == (
        "site_created",
        "things/t7",
        None,
        {"name": "a thing"},
    )
    assert (deleted.action, deleted.target, deleted.before, deleted.after) == (
        "site_deleted",
        "things/t7",
        {"name": "a thing"},
        None,
    )
    assert {created.actor, deleted.actor} == {"ops"}


@pytest.mark.parametrize("thing_id", ["t9", "x" * 2000, "t1;drop"])
def test_deleting_what_is_not_there_raises_the_areas_error_and_records_nothing(thing_id: str) -> None:
    # Given a registry with one item
    repo, trail = CountingRepository(), FakeAuditTrail()
    repo.add(Thing("t1", "2026-12-06T09:00:00.000Z"))
    # When an unknown id, or one that cannot be the area's, is deleted
    with pytest.raises(ThingNotFound):
        audited_registry.delete(thing_id, THINGS, repo, audited_registry.Change("ops", trail, NOW))
    # Then nothing changed, and only a well-formed id was looked up
    assert list(repo.things) == ["t1"]
    assert trail.entries == []
    assert repo.lookups == ([thing_id] if thing_id == "t9" else [])
