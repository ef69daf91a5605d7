"""What a run carries between flushes (functions/consolidate/carried.py): the indicator items it has read
or changed, so that each is read from DynamoDB once a run, found or not."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from pynamodb.models import Model

from functions.consolidate.batch import Outcome, StateKey
from functions.consolidate.carried import MAX_KNOWN_ITEMS, MEASURED_MARGIN, Carried
from functions.consolidate.store import PendingBatch
from functions.shared.models import DeliveryStatsModel, TrackingLogModel

STATS, URL_ROW = ("d1", "stats"), ("d1", "url#1")


class Store:
    """d1's stats stored (its URL row is not), and every key the run asked for."""

    def __init__(self) -> None:
        self.items: dict[StateKey, Model] = {STATS: DeliveryStatsModel(delivery_id="d1")}
        self.asked: list[list[StateKey]] = []

    def load(self, keys: list[StateKey]) -> Mapping[StateKey, Model]:
        self.asked.append(list(keys))
        return {key: self.items[key] for key in keys if key in self.items}


def test_an_item_found_missing_is_not_read_again_until_the_run_forgets_it() -> None:
    # Given a run that read d1's stats (found) and its URL row (missing)
    store, carried = Store(), Carried()
    first = carried.view([STATS, URL_ROW], store.load)
    # When a later batch needs both again
    again = carried.view([STATS, URL_ROW], store.load)
    # Then neither is read again, and the URL row is still missing
    assert store.asked == [[STATS, URL_ROW]]
    assert list(first) == list(again) == [STATS]
    # And once the run forgets the URL row (its write was refused), it is read again when next needed
    carried.forget(URL_ROW)
    carried.view([STATS, URL_ROW], store.load)
    assert store.asked == [[STATS, URL_ROW], [URL_ROW]]


def test_batches_whose_events_changed_no_item_are_measured_without_dividing_by_nothing() -> None:
    # Given a run whose first batch consolidated 5 events that changed no indicator item (a deleted
    # delivery's), measured against the bound before any flush
    carried = Carried()
    carried.take(Outcome(events=5), hold_logs=True)
    assert not carried.too_big(1, max_bytes=400_000)
    # When a later batch changes an item, and the pending batch is measured again
    carried.take(Outcome(items=[DeliveryStatsModel(delivery_id="d1")], events=1), hold_logs=True)
    # Then it is measured (far under the bound), not divided by the no items of the last measure
    assert not carried.too_big(1, max_bytes=400_000)
    assert len(carried) == 1 and carried.events == 6


def carrying_ten_stats_items() -> Carried:
    carried = Carried()
    items: list[Model] = [DeliveryStatsModel(delivery_id=f"d{n}", opens=n) for n in range(10)]
    carried.take(Outcome(items=items, events=10), hold_logs=True)
    return carried


def test_a_pending_batch_measured_within_the_margin_of_the_bound_is_flushed_already() -> None:
    # Given a run carrying ten items, and what its pending batch weighs encoded
    size = len(carrying_ten_stats_items().pending(1).encode())
    # When it is measured against a bound it reaches, one it is within MEASURED_MARGIN of, and one twice
    # its size
    # Then it is flushed at the first two (or every later batch would measure it again), not the third
    assert carrying_ten_stats_items().too_big(1, max_bytes=size)
    assert carrying_ten_stats_items().too_big(1, max_bytes=int(size / (1 - MEASURED_MARGIN / 2)))
    assert not carrying_ten_stats_items().too_big(1, max_bytes=2 * size)


def test_after_a_flush_the_next_batch_is_estimated_from_what_an_item_weighed() -> None:
    # Given a run that flushed eight items, encoded in `size` bytes (eight: size / 8 * 8 is exact)
    carried = Carried()
    carried.take(Outcome(items=[DeliveryStatsModel(delivery_id=f"d{n}") for n in range(8)]), hold_logs=True)
    size = len(carried.pending(1).encode())
    carried.flushed(size)
    # When it carries eight items again
    carried.take(Outcome(items=[DeliveryStatsModel(delivery_id=f"e{n}") for n in range(8)]), hold_logs=True)
    # Then they are estimated at `size`: within a bound of `size`, past one a byte smaller
    assert not carried.too_big(2, max_bytes=size)
    assert carried.too_big(2, max_bytes=size - 1)


def test_a_flush_leaves_nothing_carried_and_nothing_quarantined_to_count_again() -> None:
    # Given a run carrying items, events, a checkpoint and two items it quarantined
    carried = carrying_ten_stats_items()
    carried.checkpoints["00"] = "2026-11-23T10:00:00.000Z#e1"
    carried.quarantined = 2
    # When its pending batch is flushed
    carried.flushed(len(carried.pending(1).encode()))
    # Then nothing is left to flush, and the next pending batch counts no quarantined item again
    assert carried.is_empty()
    assert carried.pending(2).quarantined == 0


def test_a_run_whose_flush_carried_no_item_measures_its_next_batch() -> None:
    # Given a run whose first flush carried events and a checkpoint but no item (a deleted delivery's)
    carried = Carried()
    carried.take(Outcome(events=3), hold_logs=True)
    carried.checkpoints["00"] = "2026-11-23T10:00:00.000Z#e3"
    carried.flushed(len(carried.pending(1).encode()))
    # When its next batch changes an item
    carried.take(Outcome(items=[DeliveryStatsModel(delivery_id="d1")], events=1), hold_logs=True)
    # Then that pending batch is measured against the bound (it knows no weight per item yet)
    assert not carried.too_big(2, max_bytes=400_000)
    assert carried.too_big(2, max_bytes=10)


def test_a_new_run_carries_nothing_and_knows_no_item() -> None:
    # Given a run that has consolidated nothing yet
    carried = Carried()
    # Then it has nothing to flush: its pending batch is empty
    assert carried.is_empty() and len(carried) == 0
    assert carried.pending(1) == PendingBatch(1, {}, 0, [], 0)
    # and it reads every item it needs, measuring its first pending batch before any flush
    store = Store()
    assert list(carried.view([STATS], store.load)) == [STATS] and store.asked == [[STATS]]
    assert not carried.too_big(1, max_bytes=400_000)


@pytest.mark.parametrize(
    "carrying", ["an item", "a held log", "a checkpoint", "events", "a quarantined item"]
)
def test_a_run_carrying_any_one_thing_has_something_to_flush(carrying: str) -> None:
    # Given a run carrying one kind of thing only
    carried = Carried()
    if carrying == "an item":
        carried.take(Outcome(items=[DeliveryStatsModel(delivery_id="d1")]), hold_logs=True)
    elif carrying == "a held log":
        log = TrackingLogModel(partition="d1#00", sk="2026-11-23T09:00:00.000Z#e1", delivery_id="d1")
        carried.take(Outcome(items=[log]), hold_logs=True)
    elif carrying == "a checkpoint":
        carried.checkpoints["00"] = "2026-11-23T09:00:00.000Z#e1"
    elif carrying == "events":
        carried.take(Outcome(events=1), hold_logs=True)
    else:
        carried.quarantined = 1
    # Then it is not empty: its pending batch must be flushed
    assert not carried.is_empty()


@pytest.mark.parametrize(("known", "kept"), [(MAX_KNOWN_ITEMS, True), (MAX_KNOWN_ITEMS + 1, False)])
def test_a_flush_keeps_the_items_a_run_knows_up_to_the_bound(known: int, kept: bool) -> None:
    # Given a run that knows `known` indicator items (read or written)
    carried = Carried()
    stats = DeliveryStatsModel(delivery_id="d1")
    carried.items.update({(f"d{n}", "stats"): stats for n in range(known)})
    # When it flushes
    carried.flushed(0)
    # Then it keeps them up to MAX_KNOWN_ITEMS, and beyond forgets them all (read again when needed)
    assert len(carried.items) == (known if kept else 0)
