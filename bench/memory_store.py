"""The tests' in-memory WorkflowStore, made to hold a million events: same semantics, leaner keeping.

``tests/fakes_workflow.FakeWorkflowStore`` scans a shard's whole list on every read and copies every
item through PynamoDB serialization, which is right for a few hundred events and quadratic at a
million. This subclass changes only how data is kept: raw events compact and sorted per shard (read
with a binary search and turned into ``RawEventModel`` items as the DynamoDB store's query does),
tracking logs as their keys (the workflow only ever asks whether one exists), indicator items handed
over by reference. So a run in memory measures the workflow's own logic (and its pending-batch
encoding), without the (de)serialization a DynamoDB client adds; the moto runs measure that. Locks,
checkpoints, the pending batch and the fallback queue are the parent's. No crash is injected here, so
sharing items by reference cannot change a result (the scaling figure checks the indicators against
moto's).

What the store keeps stands for the database, not the function's heap: after every write it is moved
out of the garbage collector's sight (``gc.freeze``), as the seeded events are. Otherwise each full
collection would walk a million stored objects, a cost that grows with the run and that a function
writing to DynamoDB never pays. (The indicator items the workflow still holds are the same objects, so
their collection cost, bounded by the run's flush and memory bounds, is left out too.)
"""

from __future__ import annotations

import bisect
import gc
from collections.abc import Iterable

from pynamodb.models import Model

from functions.consolidate.batch import StateKey
from functions.consolidate.store import Refused
from functions.shared import raw_events
from functions.shared.models import STATS_SK, RawEventModel, TrackedUrlModel, TrackingLogModel
from functions.shared.raw_events import RawEvent
from functions.shared.timeutil import iso
from tests.fakes_workflow import FakeWorkflowStore

RAW_EVENT_TTL_DAYS = 30
STAT_NAMES = (
    "opens",
    "total_opens",
    "clicks",
    "person_clicks",
    "total_clicks",
    "opt_outs",
    "mirror_page_views",
)


class ScalableWorkflowStore(FakeWorkflowStore):
    """``keep_logs`` keeps the tracking logs themselves, for a figure that loads them into moto."""

    def __init__(self, *, keep_logs: bool = False) -> None:
        super().__init__()
        self.kept_logs: list[TrackingLogModel] | None = [] if keep_logs else None
        self._events: dict[str, list[tuple[str, RawEvent]]] = {}  # shard -> (sort key, event), sorted
        self._sort_keys: dict[str, list[str]] = {}
        self._stored: dict[StateKey, Model] = {}
        self._domains: dict[tuple[str, str], str | None] = {}
        self.log_keys: set[tuple[str, str]] = set()
        self.items_written = 0

    # --- seeding --------------------------------------------------------------------------------

    def seed_events(self, events: Iterable[RawEvent]) -> int:
        seeded = 0
        for event in events:
            shard = raw_events.shard_of(event.delivery_id, event.recipient_id)
            sort_key = raw_events.sort_key(iso(event.at), event.event_id)
            self._events.setdefault(shard, []).append((sort_key, event))
            seeded += 1
        for shard, events_of_shard in self._events.items():
            events_of_shard.sort(key=lambda pair: pair[0])
            self._sort_keys[shard] = [sort_key for sort_key, _ in events_of_shard]
        return seeded

    def seed_urls(self, urls: Iterable[TrackedUrlModel]) -> None:
        for url in urls:
            self.add_url(url)

    def seed_domains(self, delivery_id: str, domains: dict[str, str | None]) -> None:
        for recipient_id, domain in domains.items():
            self._domains[(delivery_id, recipient_id)] = domain

    # --- the WorkflowStore operations whose keeping changes -------------------------------------

    def read_raw(self, shard: str, after: str | None, upto: str, limit: int) -> list[RawEventModel]:
        self._call("read_raw")
        keys = self._sort_keys.get(shard, [])
        start = 0 if after is None else bisect.bisect_right(keys, after)
        stop = min(bisect.bisect_right(keys, upto), start + limit)
        return [
            RawEventModel.from_raw_data(raw_events.to_item(event, RAW_EVENT_TTL_DAYS))
            for _, event in self._events.get(shard, [])[start:stop]
        ]

    def logged(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        self._call("logged")
        return {key for key in keys if key in self.log_keys}

    def load_logs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]:
        self._call("load_logs")
        wanted = set(keys)
        kept = {(str(log.partition), str(log.sk)): log for log in self.kept_logs or ()}
        return {key: log for key, log in kept.items() if key in wanted}

    def message_domains(self, delivery_id: str, recipient_ids: Iterable[str]) -> dict[str, str | None]:
        self._call("message_domains")
        found = ((rid, (delivery_id, rid)) for rid in recipient_ids)
        return {rid: self._domains[key] for rid, key in found if key in self._domains}

    def load_indicators(self, keys: Iterable[StateKey]) -> dict[StateKey, Model]:
        self._call("load_indicators")
        return {key: self._stored[key] for key in keys if key in self._stored}

    def put_items(self, items: Iterable[Model]) -> list[Refused]:
        self._call("put_items")
        for item in items:
            if isinstance(item, TrackingLogModel):
                self.log_keys.add((str(item.partition), str(item.sk)))
                if self.kept_logs is not None:
                    self.kept_logs.append(item)
            else:
                self._stored[(str(item.delivery_id), str(item.sk))] = item  # type: ignore[attr-defined]
            self.items_written += 1
        gc.freeze()  # the stored items are the database's now (see the module's docstring)
        return []  # nothing here is refused: the figures measure the workflow, not bad input

    # --- reading results ---

    def consolidated(self) -> list[Model]:
        """Every item the workflow left: indicator items, then the kept tracking logs."""
        return [*self._stored.values(), *(self.kept_logs or [])]

    def stats(self, delivery_id: str) -> dict[str, int]:
        item = self._stored.get((delivery_id, STATS_SK))
        return {name: int(getattr(item, name)) if item else 0 for name in STAT_NAMES}
