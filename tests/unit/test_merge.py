"""The finisher's merge of the workers' partial items (functions/consolidate/merge.py), item by item:
stored + the sum of each worker's change, with fixed expected values worked out by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pynamodb.models import Model

from functions.consolidate.batch import StateKey
from functions.consolidate.merge import merge_item, merge_run, merge_stats, person_correction
from functions.shared.models import ClickStreamsModel, DeliveryStatsModel, PersonStateModel, UrlStatsModel


def plain(value: Any) -> Any:
    return value.as_dict() if hasattr(value, "as_dict") else value


def test_numbers_and_count_maps_add_up_each_workers_change_to_the_stored_item() -> None:
    # Given a stored stats item, and two workers' copies of it, each with its own recipients' hits
    stored = DeliveryStatsModel(
        delivery_id="d1",
        opens=5,
        total_opens=10,
        breakdowns={"browser": {"Chrome": {"opens": 4, "clicks": 1}}},
        human={"opens": 3},
    )
    one = DeliveryStatsModel(
        delivery_id="d1",
        opens=7,
        total_opens=12,
        breakdowns={"browser": {"Chrome": {"opens": 6, "clicks": 1}, "Safari": {"opens": 1, "clicks": 0}}},
        human={"opens": 5},
    )
    two = DeliveryStatsModel(
        delivery_id="d1",
        opens=6,
        total_opens=10,
        breakdowns={"browser": {"Chrome": {"opens": 5, "clicks": 2}}},
        human={"opens": 3},
    )
    # When they are merged
    merged = merge_item(stored, [one, two])
    # Then each number is the stored one plus both changes, in maps too, a name only one worker counted
    # included
    assert isinstance(merged, DeliveryStatsModel)
    assert (merged.opens, merged.total_opens) == (8, 12)
    assert plain(merged.breakdowns) == {
        "browser": {"Chrome": {"opens": 7, "clicks": 2}, "Safari": {"opens": 1, "clicks": 0}}
    }
    assert plain(merged.human) == {"opens": 5}


def url_row(**fields: Any) -> UrlStatsModel:
    """d1's row of link 1 with ``fields``: the stored row or a worker's copy of it."""
    return UrlStatsModel(delivery_id="d1", sk="url#1", url_id="1", **fields)


def test_a_first_item_of_its_key_merges_from_zero() -> None:
    # Given no stored URL row, and two workers' first clicks on the link
    one = url_row(clicks=2, distinct_clicks=1)
    two = url_row(clicks=3, distinct_clicks=2)
    # When they are merged
    merged = merge_item(None, [one, two])
    # Then the row holds both workers' clicks
    assert (merged.clicks, merged.distinct_clicks, merged.url_id) == (5, 3, "1")


def test_the_first_click_is_the_earliest_the_last_click_and_the_update_time_the_latest() -> None:
    # Given a stored URL row and stats, and two workers' copies whose times are not in order of workers
    stored = url_row(clicks=1, first_click="2026-11-23T09:10:00.000Z", last_click="2026-11-23T09:10:00.000Z")
    one = url_row(clicks=2, first_click="2026-11-23T09:05:00.000Z", last_click="2026-11-23T09:30:00.000Z")
    two = url_row(clicks=2, first_click="2026-11-23T09:10:00.000Z", last_click="2026-11-23T09:20:00.000Z")
    stats = [
        DeliveryStatsModel(delivery_id="d1", updated_at=at)
        for at in ("2026-11-23T10:00:00.000Z", "2026-11-23T10:05:00.000Z", "2026-11-23T10:03:00.000Z")
    ]
    # When they are merged
    url = merge_item(stored, [one, two])
    updated = merge_item(stats[0], stats[1:])
    # Then the first click is the earliest of all, the last click and the update time the latest
    assert (url.first_click, url.last_click, url.clicks) == (
        "2026-11-23T09:05:00.000Z",
        "2026-11-23T09:30:00.000Z",
        3,
    )
    assert updated.updated_at == "2026-11-23T10:05:00.000Z"


def test_transaction_amounts_add_up_exactly_as_decimal_strings_as_one_worker_writes_them() -> None:
    # Given stored amounts and two workers' copies, one adding EUR 0.20 and CHF 0.50, one adding USD 2
    stored = DeliveryStatsModel(delivery_id="d1", transaction_amount={"EUR": "10.10", "CHF": "2.50"})
    one = DeliveryStatsModel(delivery_id="d1", transaction_amount={"EUR": "10.30", "CHF": "3.00"})
    two = DeliveryStatsModel(delivery_id="d1", transaction_amount={"EUR": "10.10", "CHF": "2.50", "USD": "2"})
    # When they are merged
    merged = merge_item(stored, [one, two])
    # Then each currency's sum is exact and written as one worker adding them writes it ("3.00": the
    # Decimal sum of "2.50" and "0.50")
    assert plain(merged.transaction_amount) == {"EUR": "10.30", "CHF": "3.00", "USD": "2"}


@pytest.mark.parametrize(
    ("others", "paths"), [(0, {"1": 1, "1>2": 1, "2>1": 1}), (1, {"1": 1, "2": 0, "1>2": 1, "2>1": 1})]
)
def test_stream_keys_left_at_zero_are_dropped_unless_someone_is_counted_in_other(
    others: int, paths: dict[str, int]
) -> None:
    # Given stored click streams (two recipients on path 1, one on path 2), and two workers: one moved a
    # recipient from 1 to 1>2 (dropping the transition 2>3 at zero), the other the recipient of path 2 to
    # 2>1 (dropping path 2 at zero)
    def streams(
        paths: dict[str, int], transitions: dict[str, int], pages: dict[str, int]
    ) -> ClickStreamsModel:
        return ClickStreamsModel(
            delivery_id="d1",
            paths=paths,
            other_paths=others,
            transitions=transitions,
            other_transitions=others,
            pages=pages,
            other_pages=others,
        )

    stored = streams({"1": 2, "2": 1}, {"1>2": 1, "2>3": 1}, {"1\u241fa": 1})
    one = streams({"1": 1, "2": 1, "1>2": 1}, {"1>2": 2}, {"1\u241fa": 1})
    two = streams({"1": 2, "2>1": 1}, {"1>2": 1, "2>3": 1, "2>1": 1}, {"1\u241fa": 0})
    # When they are merged
    merged = merge_item(stored, [one, two])
    # Then a key at zero is kept only while someone is counted in "other" (where a later recipient may
    # be taken off it), as one worker leaves it
    assert isinstance(merged, ClickStreamsModel)
    assert {k: int(v) for k, v in plain(merged.paths).items()} == paths
    kept = {"1>2": 2, "2>1": 1, **({"2>3": 0} if others else {})}
    assert {k: int(v) for k, v in plain(merged.transitions).items()} == kept
    assert {k: int(v) for k, v in plain(merged.pages).items()} == ({"1\u241fa": 0} if others else {})


def test_a_machine_kind_no_hit_is_counted_as_any_more_is_not_listed() -> None:
    # Given a stored bot hit, which one worker moved to scanner (dropping the kind at zero)
    stored = DeliveryStatsModel(
        delivery_id="d1", machine={"total_opens": 0, "total_clicks": 1, "by_kind": {"bot": 1, "scanner": 1}}
    )
    one = DeliveryStatsModel(
        delivery_id="d1", machine={"total_opens": 0, "total_clicks": 1, "by_kind": {"scanner": 2}}
    )
    two = DeliveryStatsModel(
        delivery_id="d1",
        machine={"total_opens": 1, "total_clicks": 1, "by_kind": {"bot": 1, "apple_mpp": 1, "scanner": 1}},
    )
    # When they are merged
    merged = merge_item(stored, [one, two])
    # Then bot is gone, the other kinds add up
    assert plain(merged.machine) == {
        "total_opens": 1,
        "total_clicks": 1,
        "by_kind": {"scanner": 2, "apple_mpp": 1},
    }


@pytest.mark.parametrize(
    ("stored", "views", "expected"),
    [
        # a new person both workers counted as new and as a human person: once each
        (None, [1, 1], (-1, -1)),
        # a new person one worker alone counted: right as it is
        (None, [2], (0, 0)),
        # a new person whose clicks one worker counted were all a machine's: new, but no human person
        (None, [0, 0], (-1, 0)),
        # a known human person: one worker took its last human click off (uncounting it), another added
        # one; it still has one, so it is still counted
        (1, [0, 2], (0, 1)),
        # a known human person whose only human click one worker took off: uncounted once, rightly
        (1, [0, 1], (0, 0)),
        # a known person without human clicks who gets one from each of two workers: counted once
        (0, [1, 1], (0, -1)),
    ],
)
def test_a_person_is_new_once_and_a_human_person_while_any_human_click_is_left(
    stored: int | None, views: list[int], expected: tuple[int, int]
) -> None:
    # Given a person's stored item (or none), and each worker's copy with its human clicks
    item = None if stored is None else PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=stored)
    copies = [PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=n) for n in views]
    # When the workers' counts of the person are checked
    found = person_correction(item, copies)
    # Then they are off by what one worker counting every hit would not have counted
    assert found == expected


def test_a_person_stored_without_human_clicks_reads_as_none() -> None:
    # Given a person stored before human clicks were counted, and a worker's copy with one
    stored = PersonStateModel(delivery_id="d1", sk="p#p1")
    stored.human_clicks = None
    # When checked
    found = person_correction(stored, [PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=1)])
    # Then the worker's count of a new human person is right
    assert found == (0, 0)


class Loads:
    """The stored items, and which keys the merge asked for."""

    def __init__(self, *items: Model) -> None:
        self.items = {(str(item.delivery_id), str(item.sk)): item for item in items}  # type: ignore[attr-defined]
        self.asked: list[list[StateKey]] = []

    def __call__(self, keys: list[StateKey]) -> Mapping[StateKey, Model]:
        self.asked.append(keys)
        return {key: self.items[key] for key in keys if key in self.items}


def test_a_run_with_no_partial_items_merges_nothing_and_reads_nothing() -> None:
    load = Loads()
    assert merge_run([[], []], load) == []
    assert load.asked == []


def test_the_merged_statistics_count_a_person_two_workers_found_new_once() -> None:
    # Given a stored stats item (3 persons, 2 of them human), and two workers that each counted the new
    # person p1 (a human click each) in their copies of the stats, and a URL row of one worker
    stored = DeliveryStatsModel(delivery_id="d1", person_clicks=3, human={"person_clicks": 2, "clicks": 1})
    load = Loads(stored)
    one = [
        DeliveryStatsModel(delivery_id="d1", person_clicks=4, human={"person_clicks": 3, "clicks": 2}),
        PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=1),
        url_row(clicks=1),
    ]
    two = [
        PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=1),
        DeliveryStatsModel(delivery_id="d1", person_clicks=4, human={"person_clicks": 3, "clicks": 1}),
    ]
    # When the run's partial items are merged
    merged = merge_run([one, two], load)
    # Then p1 counts once in person_clicks and in the human person_clicks, and every item is there once,
    # in key order, read from the store once each: the slice's items, then the statistics
    assert [(item.delivery_id, item.sk) for item in merged] == [
        ("d1", "p#p1"),
        ("d1", "stats"),
        ("d1", "url#1"),
    ]
    person, stats, url = merged
    assert int(person.human_clicks) == 2
    assert int(stats.person_clicks) == 4
    assert plain(stats.human) == {"person_clicks": 3, "clicks": 2}
    assert int(url.clicks) == 1
    assert load.asked == [[("d1", "p#p1"), ("d1", "url#1")], [("d1", "stats")]]


def test_a_correction_of_statistics_no_worker_changed_reads_them_from_the_store() -> None:
    # Given a stored stats item, and two workers whose copies of a new person p1 hold only machine clicks
    # (so no worker wrote the stats: a new person is counted with the click that made it)
    stored = DeliveryStatsModel(delivery_id="d1", person_clicks=3, human={})
    load = Loads(stored)
    views = [[PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=0)] for _ in range(2)]
    # When the run's partial items are merged
    merged = merge_run(views, load)
    # Then the stats are read from the store and corrected, and their human figures left as they were
    stats = {item.sk: item for item in merged}["stats"]
    assert int(stats.person_clicks) == 2
    assert plain(stats.human) == {}
    assert load.asked == [[("d1", "p#p1")], [("d1", "stats")]]


def test_the_human_person_count_never_goes_below_zero() -> None:
    # Given stored stats with no human person counted, and two workers each counting p1 as a human person
    # in their copies of a person stored without human clicks, and their stats copies not counting it
    stored = [
        DeliveryStatsModel(delivery_id="d1", person_clicks=1, human={}),
        PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=0),
    ]
    load = Loads(*stored)
    views = [
        [
            PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=1),
            DeliveryStatsModel(delivery_id="d1", person_clicks=1, human={}),
        ]
        for _ in range(2)
    ]
    # When merged
    merged = {item.sk: item for item in merge_run(views, load)}
    # Then the correction (one human person too many) stops at zero
    assert plain(merged["stats"].human) == {"person_clicks": 0}
    assert int(merged["stats"].person_clicks) == 1


def test_each_deliverys_statistics_get_the_corrections_of_all_its_persons() -> None:
    # Given three deliveries: d0 with a new person one worker alone counted (nothing to correct), d1 with
    # a new person both workers counted, d2 with two new human persons both workers counted
    load = Loads(
        DeliveryStatsModel(delivery_id="d0", person_clicks=7),
        DeliveryStatsModel(delivery_id="d1", person_clicks=2),
        DeliveryStatsModel(delivery_id="d2", person_clicks=9, human={"person_clicks": 8}),
    )

    def partial(*persons: tuple[str, str, int]) -> list[Model]:
        return [PersonStateModel(delivery_id=d, sk=sk, human_clicks=n) for d, sk, n in persons]

    views = [
        partial(("d0", "p#z", 0), ("d1", "p#a", 0), ("d2", "p#b", 1), ("d2", "p#c", 1)),
        partial(("d1", "p#a", 0), ("d2", "p#b", 1), ("d2", "p#c", 1)),
    ]
    # When merged
    merged = {(item.delivery_id, item.sk): item for item in merge_run(views, load)}
    # Then each delivery loses its own double counts (d0 none, d1 one, d2 two), human ones too
    assert ("d0", "stats") not in merged
    assert int(merged[("d1", "stats")].person_clicks) == 1
    assert int(merged[("d2", "stats")].person_clicks) == 7
    assert plain(merged[("d2", "stats")].human) == {"person_clicks": 6}


def test_a_stream_key_dropped_at_zero_by_the_only_worker_with_a_copy_is_dropped() -> None:
    # Given stored click streams (a recipient on path 1, one on path 2, nobody in "other"), and the only
    # worker whose recipients clicked in the delivery moving the recipient of path 2 to 2>1 (dropping
    # path 2 at zero)
    stored = ClickStreamsModel(delivery_id="d1", paths={"1": 1, "2": 1}, other_paths=0)
    worker = ClickStreamsModel(delivery_id="d1", paths={"1": 1, "2>1": 1}, other_paths=0)
    # When merged
    merged = merge_item(stored, [worker])
    # Then path 2 is gone, as the worker left it
    assert isinstance(merged, ClickStreamsModel)
    assert {k: int(v) for k, v in plain(merged.paths).items()} == {"1": 1, "2>1": 1}


def test_a_delivery_whose_slices_corrections_cancel_out_leaves_the_next_deliverys_corrected() -> None:
    # Given the corrections summed over the merge's slices: d0's cancel out (a human person one slice
    # found, one another lost), d1 has a new person two workers counted
    load = Loads(
        DeliveryStatsModel(delivery_id="d0", person_clicks=5, human={"person_clicks": 4}),
        DeliveryStatsModel(delivery_id="d1", person_clicks=3, human={"person_clicks": 1}),
    )
    # When the statistics are merged
    merged = {item.delivery_id: item for item in merge_stats([], {"d0": [0, 0], "d1": [-1, 0]}, load)}
    # Then d0 is left as stored (not even read) and d1 counts the person once
    assert list(merged) == ["d1"]
    assert int(merged["d1"].person_clicks) == 2
    assert plain(merged["d1"].human) == {"person_clicks": 1}


def test_a_human_person_count_the_statistics_never_held_starts_from_zero() -> None:
    # Given stored statistics whose human figures hold no person_clicks yet, and a correction of one human
    # person more
    load = Loads(DeliveryStatsModel(delivery_id="d1", person_clicks=1, human={"clicks": 2}))
    # When the statistics are merged
    (stats,) = merge_stats([], {"d1": [0, 1]}, load)
    # Then the human persons are one
    assert isinstance(stats, DeliveryStatsModel)
    assert plain(stats.human) == {"clicks": 2, "person_clicks": 1}


def test_a_human_person_one_worker_lost_and_another_kept_stays_a_human_person() -> None:
    # Given a stored human person p1 (one human click), and two workers: one took p1's human click off (a
    # honeypot hit showed it a machine's) and counted one human person less in its copy of the stats; the
    # other counted a second human click of p1 (still a human person: its stats copy unchanged)
    load = Loads(
        DeliveryStatsModel(delivery_id="d1", person_clicks=5, human={"person_clicks": 3}),
        PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=1),
    )
    one = [
        PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=0),
        DeliveryStatsModel(delivery_id="d1", person_clicks=5, human={"person_clicks": 2}),
    ]
    two = [
        PersonStateModel(delivery_id="d1", sk="p#p1", human_clicks=2),
        DeliveryStatsModel(delivery_id="d1", person_clicks=5, human={"person_clicks": 3}),
    ]
    # When the run's partial items are merged
    merged = {item.sk: item for item in merge_run([one, two], load)}
    # Then p1 keeps one human click, and the statistics still count it a human person
    assert int(merged["p#p1"].human_clicks) == 1
    assert plain(merged["stats"].human) == {"person_clicks": 3}
    assert int(merged["stats"].person_clicks) == 5
