"""What a run carries between flushes (functions/consolidate/carried.py): the indicator items it has read
or changed, so that each is read from DynamoDB once a run, found or not."""

from __future__ import annotations

from collections.abc import Mapping

from pynamodb.models import Model

from functions.consolidate.batch import Outcome, StateKey
from functions.consolidate.carried import MEASURED_MARGIN, Carried
from functions.shared.models import DeliveryStatsModel

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
