"""Benchmark figure 11 (bench/fig11_workers.py): the store that counts the DynamoDB requests a workflow
step would make, and the figure's run of plan, workers and finish on a tiny campaign."""

from __future__ import annotations

from typing import Any

import pytest

from bench.common import latency_s
from bench.memory_store import LatencyAccountingStore
from functions.consolidate.store import PARTIAL_SPREAD
from functions.shared import log_chains
from functions.shared.models import (
    PERSON_SPREAD,
    PERSON_STATE_PREFIX,
    RECIPIENT_STATE_PREFIX,
    STATS_SK,
    URL_STATS_PREFIX,
    DeliveryStatsModel,
    PersonStateModel,
    RecipientStateModel,
    TrackingLogModel,
    stored_person_key,
    stored_recipient_key,
)
from functions.shared.tables import TRACKING_LOGS


def chain_logs(count: int, chains: int) -> list[TrackingLogModel]:
    """``count`` tracking logs spread evenly over ``chains`` chains of d1."""
    return [
        TrackingLogModel(
            partition=log_chains.chain_key("d1", n % chains), delivery_id="d1", sk=f"log#{n:03d}"
        )
        for n in range(count)
    ]


def test_given_puts_of_two_tables_when_counted_then_chains_are_read_and_put_and_25_items_batched() -> None:
    store = LatencyAccountingStore()
    logs = chain_logs(60, 2)  # 30 logs in each of two chains: 3 items each
    stats = [DeliveryStatsModel(delivery_id=f"d{n}", sk=STATS_SK) for n in range(30)]

    store.put_items([*logs, *stats])

    assert store.requests == {"Query": 2 * 2, "PutItem": 2 * 3, "BatchWriteItem": 2}
    assert store.writes_by_key[(TRACKING_LOGS.table_name, log_chains.chain_key("d1", 1))] == 3


def test_given_a_put_of_many_batches_when_its_wait_is_counted_then_each_group_of_concurrent_requests_counts_once() -> (
    None
):
    """``DynamoWorkflowStore.put_items`` sends its BatchWriteItem requests WRITERS at a time: the wall
    time of a group is its slowest request's, not their sum; its chains too, WRITERS at a time."""
    from functions.consolidate.store import WRITERS

    store = LatencyAccountingStore()
    stats = [DeliveryStatsModel(delivery_id=f"d{n}", sk=STATS_SK) for n in range(226)]  # 10 requests

    store.put_items(stats)
    store.put_items(stats[:25])  # one request alone
    store.put_items(chain_logs(8 * 14, 8))  # 8 chains of 14 logs: 2 Queries and a put each
    store.load_state()

    assert store.requests == {"BatchWriteItem": 10 + 1, "Query": 16, "PutItem": 8, "GetItem": 1}
    assert WRITERS == 4 and store.waits == {"BatchWriteItem": 3 + 1, "Query": 4, "PutItem": 2, "GetItem": 1}
    assert latency_s(store.waits) == pytest.approx((4 * 15 + 4 * 8 + 2 * 5 + 4) / 1000)


def test_given_a_workers_partials_when_their_wait_is_counted_then_writers_requests_of_25_count_once() -> None:
    """``DynamoWorkflowStore.put_partials`` packs a worker's partial items 25 to a BatchWriteItem
    request, whatever their partitions, and sends them WRITERS at a time, as ``put_items`` does."""
    from functions.consolidate.store import WRITERS

    store = LatencyAccountingStore()
    partials = [DeliveryStatsModel(delivery_id=f"d{n:03d}", sk=STATS_SK) for n in range(101)]  # 5 requests

    store.put_partials("run-1", 0, partials)
    store.put_partials("run-1", 1, partials[:25])  # one request alone

    assert store.requests == {"BatchWriteItem": 5 + 1}
    assert WRITERS == 4 and store.waits == {"BatchWriteItem": 2 + 1}
    partial_writes = {
        key: n for (_, key), n in store.writes_by_key.items() if key.startswith("partial#run-1#0#")
    }
    assert len(partial_writes) == PARTIAL_SPREAD and sum(partial_writes.values()) == 101


def test_given_many_keys_when_read_then_one_batch_get_per_100_keys_of_each_table() -> None:
    store = LatencyAccountingStore()
    stats_keys = [(f"d{n}", STATS_SK) for n in range(150)]
    url_keys = [("d1", f"{URL_STATS_PREFIX}{n}") for n in range(20)]

    store.logged([(log_chains.chain_key("d1", n % 50), f"log#{n:03d}") for n in range(250)])
    store.logged([(log_chains.chain_key("d2", 0), "log#000")])
    store.load_indicators([*stats_keys, *url_keys])
    store.logged([])

    # the logs: a chain's several keys read from their owner and a page or two of their range, a
    # chain's lone key from its owner
    assert store.requests == {"Query": 50 * 3 + 1, "BatchGetItem": 2 + 1}


@pytest.mark.parametrize(("partials", "stored", "slower"), [(150, 250, 3), (250, 150, 3), (0, 90, 1)])
def test_given_partial_and_stored_items_read_at_once_when_their_wait_is_counted_then_only_the_slower_read_is_waited_for(
    partials: int, stored: int, slower: int
) -> None:
    """``DynamoWorkflowStore.load_partials_and_indicators`` sends its two reads at once, each a chain of
    BatchGetItem requests of 100 keys: the caller waits for the longer chain, not for both."""
    store = LatencyAccountingStore()

    store.load_partials_and_indicators(
        "run-1",
        0,
        [(f"d{n}", STATS_SK) for n in range(partials)],
        [(f"d{n}", STATS_SK) for n in range(stored)],
    )
    store.load_state()

    sent = -(-partials // 100) + -(-stored // 100)
    assert store.requests == {"BatchGetItem": sent, "GetItem": 1}
    assert store.waits == {"BatchGetItem": slower, "GetItem": 1}


def test_given_a_tiny_campaign_with_2_and_4_workers_when_finished_then_the_finisher_queries_no_partial_partition() -> (
    None
):
    """Each slice of the merge deletes its partition of every worker's partial items before it is
    marked put: Finish queries the slices' partitions, not 16 partial partitions per worker."""
    from bench.fig11_workers import measure_runs

    two, four = measure_runs(600, (2, 4), shards=8)

    assert two["finish"]["requests"]["Query"] == four["finish"]["requests"]["Query"] < 3 * PARTIAL_SPREAD
    assert all(
        step["requests"]["Query"] >= 2 for step in two["slices"]
    )  # reads and deletes a partition a worker
    assert four["finish"]["partial_items"] > 0 and four["stats"] == two["stats"]


def test_given_state_and_shard_calls_when_counted_then_one_request_of_their_kind_each() -> None:
    store = LatencyAccountingStore()

    store.acquire_lock("run-1", 1_000.0, 60)
    store.load_state()
    store.read_raw("r000of64", None, "2026-12-06T00:00:00.000Z#~", 100)
    store.start_worker("run-1", 0)

    assert store.requests == {"UpdateItem": 2, "GetItem": 2, "Query": 1}


def test_given_an_operation_without_known_requests_when_called_then_it_fails_rather_than_cost_nothing() -> (
    None
):
    store = LatencyAccountingStore()

    with pytest.raises(KeyError, match="recipient_raw_keys"):
        store.recipient_raw_keys("cust-1")


def test_given_requests_when_their_wait_is_taken_then_each_at_figure_4s_latency_one_after_another() -> None:
    # BatchWriteItem 15 ms, GetItem 4 ms, a transaction at the 5 ms taken for any other request
    assert latency_s({"BatchWriteItem": 2, "GetItem": 1, "TransactWriteItems": 1}) == pytest.approx(0.039)
    assert latency_s({}) == 0.0


def test_given_a_tiny_campaign_when_the_figure_runs_it_with_4_workers_then_every_worker_is_timed_and_reports_match() -> (
    None
):
    from bench.fig11_workers import measure_runs, skew, throughput

    lone, four = measure_runs(600, (1, 4), shards=8)

    assert [step["shards"] for step in four["steps"]] == [2, 2, 2, 2]
    assert sum(step["events"] for step in four["steps"]) == 600
    assert all(step["wait_s"] > 0 and step["cpu_s"] > 0 and throughput(step) > 0 for step in four["steps"])
    # each slice of the merge reads its partition of each worker's partial items, timed on its own;
    # one worker writes none and has no slice
    assert [step["slice"] for step in four["slices"]] == list(range(PARTIAL_SPREAD)) and lone["slices"] == []
    assert all(step["requests"]["Query"] >= 4 for step in four["slices"])
    assert all(step["time_s"] > 0 for step in [four["close"], *four["slices"], four["finish"]])
    assert four["stats"] == lone["stats"] and four["stats"]["total_opens"] > 0
    assert 1.0 <= skew(four) < 2.0


def _run(workers: int, events: int, finisher_cpu_s: float) -> dict[str, Any]:
    share = events // workers
    steps = [
        {
            "events": share,
            "cpu_s": share * 0.0001,  # 100 µs of CPU per event
            "wait_s": share * 0.001,  # 1 ms of waiting per event
            "time_s": share * 0.0011,
            "writes_by_key": {"logs d1": share, f"partial w{n}": share // 10},
        }
        for n in range(workers)
    ]
    return {
        "events": events,
        "workers": workers,
        "steps": steps,
        "plan": {"cpu_s": 0.0, "wait_s": 1.0},
        "finish": {"cpu_s": finisher_cpu_s, "wait_s": 0.0, "writes_by_key": {"stats d1": events // 1000}},
    }


def test_given_measured_runs_when_put_on_paper_then_the_least_of_the_three_bounds_is_the_hourly_figure() -> (
    None
):
    from bench.fig11_workers import CAMPAIGN_EVENTS, paper_figure

    # Given: at 1,769 MB (one full vCPU) a worker takes 1.1 ms an event; each event writes one tracking
    # log to the delivery's one key; the finisher takes 1 µs per event at 2 workers, 4 µs at 8 (and
    # writes one item per 1,000 events: 1 µs of its key's time per event); the plan takes 1 s
    runs = [_run(1, 800_000, 0.0), _run(2, 800_000, 0.8), _run(8, 800_000, 3.2)]

    # When a run's workers have a budget of 30 minutes from its start, invoked again while they have more
    paper = paper_figure(runs, memory_mb=1769, margin_s=60, budget_s=1800, step_s=900)

    sixteen, forty, sixty_four = paper["rows"]
    assert [row["workers"] for row in paper["rows"]] == [16, 40, 64]
    assert paper["hot_key"] == "logs d1" and paper["hot_per_event"] == pytest.approx(1.0)
    # Then the workers have the whole budget after the plan, not one 15-minute invocation (840 s) each
    assert sixteen["caps"]["workers"] == pytest.approx(16 * 1799 / 0.0011)
    assert forty["caps"]["workers"] == pytest.approx(40 * 1799 / 0.0011)
    assert sixteen["caps"]["key"] == pytest.approx(1000 * 1799)  # 1,000 writes a second on one key
    # And the finisher still has one invocation
    assert sixteen["caps"]["finisher"] == pytest.approx(840 / 0.000_008)  # 4 µs + 0.5 µs per worker past 8
    assert sixty_four["caps"]["finisher"] == pytest.approx(840 / 0.000_032)
    assert sixteen["events_per_hour"] == pytest.approx(1000 * 1799)
    # 20 million logs on one key take 20,000 s: no number of workers fits them in an hour
    assert sixteen["workers_s"] == pytest.approx(CAMPAIGN_EVENTS / 1000)
    assert not sixteen["fits"] and not forty["fits"] and not sixty_four["fits"]


def test_given_workers_bound_by_their_time_when_the_budget_is_put_on_paper_then_a_run_holds_more_than_one_invocation() -> (
    None
):
    from bench.fig11_workers import paper_figure

    # Given workers at 3.2 ms an event whose writes spread over many keys (none near its limit)
    runs = [_run(1, 800_000, 0.0), _run(2, 800_000, 0.8), _run(8, 800_000, 3.2)]
    for run in runs:
        for n, step in enumerate(run["steps"]):
            step.update(cpu_s=step["events"] * 0.0002, wait_s=step["events"] * 0.003)
            step["writes_by_key"] = {f"logs d1#{n}": step["events"] // 100}
    # When put on paper with a budget of 30 minutes and with one of 15 (about one invocation)
    long, short = (
        paper_figure(runs, memory_mb=1769, margin_s=60, budget_s=b, step_s=900) for b in (1800, 900)
    )
    # Then the workers' time bounds the hour, and twice the budget holds about twice the events
    forty = long["rows"][1]
    assert min(forty["caps"], key=forty["caps"].get) == "workers"
    assert forty["events_per_hour"] == pytest.approx(40 * 1799 / 0.0032)
    assert forty["events_per_hour"] / short["rows"][1]["events_per_hour"] == pytest.approx(1799 / 899)


def test_given_recipient_states_when_put_then_their_writes_count_under_each_recipients_own_partition() -> (
    None
):
    """The DynamoDB store writes a recipient's state at ``stored_recipient_key`` (the recipient's
    partition), not under the delivery's key it has in memory: the hottest key must say so."""
    store = LatencyAccountingStore()
    states = [
        RecipientStateModel(delivery_id="d1", sk=f"{RECIPIENT_STATE_PREFIX}u{n}", recipient_id=f"u{n}")
        for n in range(3)
    ]

    store.put_items(states)

    table = RecipientStateModel.Meta.table_name
    assert store.writes_by_key == {(table, stored_recipient_key("d1", f"u{n}")[0]): 1 for n in range(3)}


def test_given_person_states_when_put_then_their_writes_count_under_the_spread_person_partitions() -> None:
    """The DynamoDB store writes a person's state at ``stored_person_key`` (one of the delivery's
    PERSON_SPREAD person partitions), not under the delivery's key it has in memory."""
    store = LatencyAccountingStore()
    persons = [PersonStateModel(delivery_id="d1", sk=f"{PERSON_STATE_PREFIX}p{n}") for n in range(200)]

    store.put_items(persons)

    table = PersonStateModel.Meta.table_name
    expected: dict[tuple[str, str], int] = {}
    for n in range(200):
        key = (table, stored_person_key("d1", f"p{n}")[0])
        expected[key] = expected.get(key, 0) + 1
    assert store.writes_by_key == expected
    assert len(expected) == PERSON_SPREAD and ("d1", "d1") not in expected  # none under the delivery's key
    assert max(expected.values()) <= 2 * 200 / PERSON_SPREAD  # spread about evenly


def test_given_a_merge_in_slices_when_put_on_paper_then_its_longest_invocation_caps_and_its_path_takes_time() -> (
    None
):
    from bench.fig11_workers import CAMPAIGN_EVENTS, paper_figure

    # Given the runs above, where the merge of the runs with 2 and 8 workers is Close (0.1 s), 16
    # slices (the slowest 4 µs per event, above the 1 µs of the hottest key, at 2 and at 8 workers) and Finish (0.1 s) instead of one
    # finisher
    runs = [_run(1, 800_000, 0.0), _run(2, 800_000, 0.1), _run(8, 800_000, 0.1)]
    for run in runs[1:]:
        run["close"] = {"cpu_s": 0.1, "wait_s": 0.0, "writes_by_key": {}}
        run["slices"] = [
            {"cpu_s": 3.2 if k == 3 else 0.1, "wait_s": 0.0, "writes_by_key": {f"p d1#p{k}": 50}}
            for k in range(16)
        ]

    paper = paper_figure(runs, memory_mb=1769, margin_s=60, budget_s=1800, step_s=900)

    # Then each of the merge's invocations must fit in one: the slowest slice caps it
    sixteen = paper["rows"][0]
    assert sixteen["caps"]["finisher"] == pytest.approx(840 / (3.2 / 800_000))
    # And the run waits for Close + the slowest slice + Finish, the slices side by side
    assert sixteen["finisher_s"] == pytest.approx(CAMPAIGN_EVENTS * (0.1 + 3.2 + 0.1) / 800_000)
    # And the merge's hottest key sums the slices that write it at once (here each its own key)
    assert paper["finisher_key"] == "stats d1" and paper["finisher_hot_per_event"] == pytest.approx(
        800 / 800_000
    )
