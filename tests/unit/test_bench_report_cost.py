"""bench/fig5_report_cost.py's read-unit bound: what a route's items may cost, whatever the events, from
the caps of functions/shared/limits.py."""

from __future__ import annotations

from bench import capacity
from bench.fig5_report_cost import ItemsRead, bound_read_units, flat_between, worst_case_size
from functions.shared.limits import ITEM_BUDGET

URL_ITEM: dict[str, dict[str, str]] = {
    "delivery_id": {"S": "dbench100000"},
    "sk": {"S": "url#7"},
    "url_id": {"S": "7"},
    "clicks": {"N": "1234"},
    "distinct_clicks": {"N": "987"},
    "first_click": {"S": "2026-11-23T08:00:01Z"},
}


def test_an_item_without_a_map_is_bounded_by_its_counts_at_dynamodbs_largest_number() -> None:
    # Given a url item whose counts take 3 and 3 bytes
    # When its worst case is sized
    worst = worst_case_size(URL_ITEM)
    # Then each count takes 20 bytes (38 digits), the rest as it is
    assert worst == capacity.item_size(URL_ITEM) - 3 - 3 + 20 + 20


def test_an_item_holding_a_map_is_bounded_by_the_item_budget_of_limits() -> None:
    # Given an item with a breakdown map (names from outside, capped in number and bytes by limits.py)
    item: dict[str, dict[str, object]] = {
        "delivery_id": {"S": "d1"},
        "browsers": {"M": {"Firefox": {"N": "3"}}},
    }
    # When its worst case is sized / Then it is ITEM_BUDGET, every map full
    assert worst_case_size(item) == ITEM_BUDGET


def test_the_bound_of_a_route_adds_each_reads_worst_case_units() -> None:
    # Given a route's reads: a Query returning 40 url items, eventually consistent, and a consistent GetItem
    reads = [ItemsRead([URL_ITEM] * 40, consistent=False), ItemsRead([URL_ITEM], consistent=True)]
    # When it is bounded
    bound = bound_read_units(reads)
    # Then each read is priced on its items' worst-case sizes (4 KB per request): here more than as they are
    assert bound == capacity.read_units(40 * worst_case_size(URL_ITEM), consistent=False) + 1.0
    assert bound > sum(
        capacity.read_units(len(read.items) * capacity.item_size(URL_ITEM), consistent=read.consistent)
        for read in reads
    )


def test_a_route_reads_flat_when_requests_and_items_match_and_units_stay_within_the_bound() -> None:
    # Given a route measured at 10k and at 100k events
    at_10k = {"reads": 3, "items": 97, "read_units": 7.5, "bound_read_units": 9.0}
    same = {"reads": 3, "items": 97, "read_units": 8.0, "bound_read_units": 9.0}
    # Then it is flat when the requests and items match and the units stay within the bound...
    assert flat_between(at_10k, same)
    # ...and not when an item more is read, a request more is made, or the units pass the bound
    assert not flat_between(at_10k, {**same, "items": 98})
    assert not flat_between(at_10k, {**same, "reads": 4})
    assert not flat_between(at_10k, {**same, "read_units": 9.5})
