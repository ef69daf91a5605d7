"""What a run carries between flushes (functions/consolidate/carried.py): the indicator items it has read
or changed, so that each is read from DynamoDB once a run, found or not."""

from __future__ import annotations

from collections.abc import Mapping

from pynamodb.models import Model

from functions.consolidate.batch import StateKey
from functions.consolidate.carried import Carried
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
