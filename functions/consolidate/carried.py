"""What a step of the tracking workflow carries in memory between two flushes (``workflow.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pynamodb.models import Model

from functions.consolidate import batch
from functions.consolidate.store import PendingBatch
from functions.shared.models import TrackingLogModel

MEASURED_MARGIN = 0.2  # see Carried.too_big
MAX_KNOWN_ITEMS = 50_000  # indicator items kept in memory after a flush, to spare reading them again


class Carried:
    """What the run has consolidated since its last flush, held in memory until the flush.

    ``items`` are the indicator items the run knows, as stored plus its changes since the flush
    (``batch.consolidate`` updates them in place); ``absent`` the keys it found missing.
    """

    def __init__(self) -> None:
        self.items: dict[batch.StateKey, Model] = {}
        self.absent: set[batch.StateKey] = set()
        self.changed: set[batch.StateKey] = set()
        # by key: a log rewritten by a later batch (the honeypot burst) is put once, as last computed
        self.held_logs: dict[batch.LogKey, TrackingLogModel] = {}
        self.checkpoints: dict[str, str] = {}
        self.events = 0
        self.quarantined = 0  # items quarantined since the flush, counted when it completes
        # (items and logs carried, events, encoded bytes) at the last measure since the flush; None
        # while there is none to grow from (a measure of no items or no events is none)
        self._measured: tuple[int, int, int] | None = None
        self._bytes_per_entry: float | None = None  # encoded bytes per item or log, at the last flush

    def __len__(self) -> int:
        return len(self.changed) + len(self.held_logs)

    def is_empty(self) -> bool:
        return not (self.changed or self.held_logs or self.checkpoints or self.events or self.quarantined)

    def view(
        self,
        keys: Iterable[batch.StateKey],
        load: Callable[[list[batch.StateKey]], Mapping[batch.StateKey, Model]],
    ) -> dict[batch.StateKey, Model]:
        """The items of ``keys`` that exist, loading those the run has not seen yet."""
        keys = list(keys)
        unknown = [key for key in keys if key not in self.items and key not in self.absent]
        if unknown:
            found = load(unknown)
            self.items.update(found)
            self.absent.update(key for key in unknown if key not in found)
        return {key: self.items[key] for key in keys if key in self.items}

    def take(self, outcome: batch.Outcome, *, hold_logs: bool) -> list[TrackingLogModel]:
        """Carry a batch's indicator items; its tracking logs to put now (none if held)."""
        logs: list[TrackingLogModel] = []
        for item in outcome.items:
            if isinstance(item, TrackingLogModel):
                logs.append(item)
                continue
            key = (str(item.delivery_id), str(item.sk))  # type: ignore[attr-defined]
            self.items[key] = item
            self.absent.discard(key)
            self.changed.add(key)
        self.events += outcome.events
        # Behind a checkpoint a tracking log means "counted as it says": a log rewritten with the
        # counts it moved goes with them through the pending batch.
        for log in outcome.rewritten:
            self.held_logs[item_key(log)] = log
        if hold_logs:
            self.held_logs.update((item_key(log), log) for log in logs)
            return []
        return logs

    def pending(self, seq: int) -> PendingBatch:
        items: list[Model] = [self.items[key] for key in sorted(self.changed)]
        return PendingBatch(
            seq, dict(self.checkpoints), self.events, items + list(self.held_logs.values()), self.quarantined
        )

    def too_big(self, seq: int, max_bytes: int) -> bool:
        """Whether the pending batch is encoded past ``max_bytes``.

        Encoding all of it after every batch would cost more than the batches. After a flush, the run
        knows what an item or a log of its pending batches weighs encoded (the flush encodes its pending
        batch anyway), so it estimates from the count alone. Before its first flush it measures: again
        only once the items or the events carried have grown fourfold since the last measure, or when
        growing the last measure by as much as either (the items' sizes grow with both) passes the bound;
        a measure within ``MEASURED_MARGIN`` of the bound flushes already, or every batch after it would
        measure again.
        """
        if self._bytes_per_entry is not None:
            return len(self) * self._bytes_per_entry > max_bytes
        if self._measured is not None:
            items, events, encoded = self._measured
            growth = max(len(self) / items, self.events / events)
            if growth < 4 and encoded * growth <= max_bytes:
                return False
        size = len(self.pending(seq).encode())
        self._measured = (len(self), self.events, size) if len(self) and self.events else None
        return size > max_bytes * (1 - MEASURED_MARGIN)

    def forget(self, key: batch.StateKey) -> None:
        """The run's copy of this item was not written: the stored one is read again when next needed."""
        self.items.pop(key, None)
        self.absent.discard(key)

    def flushed(self, encoded_bytes: int) -> None:
        """The pending batch (``encoded_bytes`` long) is applied: the items as held are the stored ones."""
        if len(self):
            self._bytes_per_entry = encoded_bytes / len(self)
        self.changed.clear()
        self.held_logs.clear()
        self.checkpoints.clear()
        self.events = 0
        self.quarantined = 0
        self._measured = None
        if len(self.items) > MAX_KNOWN_ITEMS:
            self.items.clear()
            self.absent.clear()


def item_key(item: Any) -> tuple[str, str]:
    """An item's table key: (partition, sk) for a tracking log, (delivery_id, sk) for the others."""
    if isinstance(item, TrackingLogModel):
        return (str(item.partition), str(item.sk))
    return (str(item.delivery_id), str(item.sk))
