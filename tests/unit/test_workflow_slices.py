"""The merge's slices (README "Scale-out"): what a ``merge_slice`` step quarantines reaches the run
record once, whether the slice ran once, was retried or was left to Finish."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from functions.consolidate import batch
from functions.consolidate.store import PARTIAL_SPREAD, decode_items, partial_key, partial_spread
from functions.consolidate.workflow import MAX_PAGE_BYTES, TrackingWorkflow, _pages
from functions.shared.models import UrlStatsModel
from tests.fakes_workflow import Crash, FakeWorkflowStore, refused_by_dynamodb
from tests.unit.test_workflow import RUN_AT, Clock, seeded_store
from tests.unit.test_workflow_workers import _eight_shards, first_run_events, workflow  # noqa: F401

pytestmark = pytest.mark.usefixtures("_eight_shards")  # imported above: 8 raw-event shards

REFUSED_KEY = batch.url_key("d1", "1")  # a URL row every worker adds to: merged by one slice
REFUSED = "ValidationException: Item size has exceeded the maximum allowed size"
TARGET = partial_spread(partial_key(REFUSED_KEY))  # the slice that merges it


def refuse_url_row(data: dict[str, Any]) -> str | None:
    if data.get("delivery_id") == {"S": REFUSED_KEY[0]} and data.get("sk") == {"S": REFUSED_KEY[1]}:
        return REFUSED  # as DynamoDB refuses an item grown too large
    return refused_by_dynamodb(data)


def slice_once(flow: TrackingWorkflow, store: FakeWorkflowStore) -> None:
    flow.merge_slice("run-1", TARGET)


def slice_retried_after_its_put(flow: TrackingWorkflow, store: FakeWorkflowStore) -> None:
    # the step dies after putting the slice's items, before marking them put; Step Functions retries it
    store.fault = lambda operation, count: operation == "slice_put"
    with pytest.raises(Crash):
        flow.merge_slice("run-1", TARGET)
    store.restart()
    flow.merge_slice("run-1", TARGET)


def slice_retried_after_it_finished(flow: TrackingWorkflow, store: FakeWorkflowStore) -> None:
    # the step finished but its answer was lost (a Lambda service error): retried all the same
    flow.merge_slice("run-1", TARGET)
    flow.merge_slice("run-1", TARGET)


def slice_left_to_finish(flow: TrackingWorkflow, store: FakeWorkflowStore) -> None:
    pass  # the slice failed for good: Finish merges it itself


def slice_left_to_finish_after_its_put(flow: TrackingWorkflow, store: FakeWorkflowStore) -> None:
    store.fault = lambda operation, count: operation == "slice_put"
    with pytest.raises(Crash):
        flow.merge_slice("run-1", TARGET)
    store.restart()


@pytest.mark.parametrize(
    "merge_target",
    [
        slice_once,
        slice_retried_after_its_put,
        slice_retried_after_it_finished,
        slice_left_to_finish,
        slice_left_to_finish_after_its_put,
    ],
)
def test_given_a_slice_whose_put_is_refused_when_the_run_finishes_then_its_record_counts_the_item_once(
    merge_target: Callable[[TrackingWorkflow, FakeWorkflowStore], None], reliability: Any
) -> None:
    # Given a run of four workers whose merged URL row of link 1 DynamoDB refuses (too large)
    store = seeded_store()
    first_run_events(store)
    store.refuse = refuse_url_row
    flow = workflow(store, 4, Clock(RUN_AT))
    plan = flow.plan("run-1", "schedule")
    results = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    # When the run is closed, the slice that merges that row runs as the case says, the others once
    assert flow.close("run-1") == list(range(PARTIAL_SPREAD))
    merge_target(flow, store)
    for spread in range(PARTIAL_SPREAD):
        if spread != TARGET:
            flow.merge_slice("run-1", spread)
    run = flow.finish("run-1", [result.as_dict() for result in results])
    # Then the row is kept in quarantine once and the run record counts it once, naming it
    assert [(item.table, item.key) for item in store.quarantined.values()] == [
        ("indicators", json.dumps(list(REFUSED_KEY)))
    ]
    assert run.status == "succeeded" and run.quarantined == 1
    assert (
        sum(
            note.startswith(f"quarantined indicators item {json.dumps(list(REFUSED_KEY))}")
            for note in run.errors
        )
        == 1
    )
    reliability.record(
        "Faults",
        f"a merge slice whose merged item DynamoDB refuses ({merge_target.__name__.replace('_', ' ')})",
        1,
        "the item is quarantined and the run record counts it once",
        0,
        0,
    )


def incompressible_url_row(n: int, size: int) -> UrlStatsModel:
    """d1's URL row n whose url id holds ``size`` random bytes (hex): it compresses to about half."""
    return UrlStatsModel(delivery_id="d1", sk=f"url#{n}", url_id=random.Random(n).randbytes(size // 2).hex())


@pytest.mark.parametrize(
    ("sizes", "pages"),
    [
        ([], 0),  # a slice that merged nothing saves no page
        ([10] * 3, 1),  # small items share a page
        ([300_000] * 3, 3),  # three items of about 150 KB compressed: no two fit in a page
        ([700_000], 1),  # one item compressing beyond the bound: a page of its own, the halving stops
    ],
)
def test_merged_items_are_saved_in_pages_under_the_bound_and_read_back_whole_in_order(
    sizes: list[int], pages: int
) -> None:
    # Given a slice's merged items of these sizes
    items = [incompressible_url_row(n, size) for n, size in enumerate(sizes)]
    # When they are cut into the pages the slice saves
    saved = _pages(items)
    # Then there are as many pages as expected, each within the bound unless it holds one item, and
    # read back they are the items, in order
    assert len(saved) == pages
    assert all(len(page) <= MAX_PAGE_BYTES or len(decode_items(page)) == 1 for page in saved)
    read = [item for page in saved for item in decode_items(page)]
    assert [(item.sk, item.url_id) for item in read] == [(item.sk, item.url_id) for item in items]
