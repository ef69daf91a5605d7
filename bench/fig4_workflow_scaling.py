"""Figure 4, tracking workflow throughput and scaling: 10k and 100k events on moto and in memory.

Every run is one ``TrackingWorkflow.run`` over a seeded campaign, in a fresh interpreter: on moto with
the DynamoDB store (``DynamoWorkflowStore``, PynamoDB and boto3 as in AWS), and in memory with the tests'
store made to hold many events (``bench.memory_store``). The same logic runs in both; the two end
with identical indicators, which the figure checks. The moto runs and the in-memory runs go in two
lanes at once (this machine has two cores); each run reports its own CPU time, moto's share apart.

From the moto runs' CPU per event outside moto (msgtrack, PynamoDB, botocore) and their requests per
event, the figure computes how many events one 15-minute invocation can consolidate against DynamoDB's
latencies, on paper.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import threading
import time
from datetime import timedelta
from typing import Any

from bench.common import (
    INVOCATION_SECONDS,
    LAMBDA_FULL_VCPU_MB,
    LATENCY_MS,
    Figure,
    Table,
    command_for,
    configure_environment,
    configured_memory,
    count,
    latency_s,
    measured_json,
    ratio,
    standalone,
    times,
    us,
)

MOTO_SIZES = (10_000, 100_000)
MEMORY_SIZES = (10_000, 100_000)  # a million: figure 11's lone worker
REPEATS = {10_000: 3}  # short runs are the noisiest: the median of three (the others run once)
DELIVERY = "dbenchcampgn"
LINEAR = 1.25  # CPU per event at the largest run within this factor of the smallest: linear growth


# --- one run, in its own interpreter ------------------------------------------------------------


def _workflow(store: Any, campaign: Any) -> Any:
    from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig

    return TrackingWorkflow(store, WorkflowConfig(), clock=lambda: campaign.end + timedelta(hours=1))


def _run_on_moto(events: int) -> dict[str, Any]:
    from bench.campaign import Campaign
    from bench.ledger import RequestLedger, Totals
    from bench.memory_store import STAT_NAMES
    from bench.moto_backend import MotoClock, local_dynamodb, seed_campaign
    from functions.consolidate.store import DynamoWorkflowStore
    from functions.shared.models import STATS_SK, DeliveryStatsModel

    campaign = Campaign(DELIVERY, events)
    with local_dynamodb():
        seed_campaign(campaign)
        ledger, moto = RequestLedger(units=False), MotoClock()
        with ledger.recording(), moto.measuring():
            workflow = _workflow(DynamoWorkflowStore(), campaign)
            wall, cpu = time.perf_counter(), time.process_time()
            run = workflow.run("bench-run", "bench")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stats = DeliveryStatsModel.get(DELIVERY, STATS_SK)
        totals = Totals.of(ledger.requests)
        return {
            "store": "moto",
            "events": int(run.events_processed),
            "wall_s": wall,
            "cpu_s": cpu,
            "moto_cpu_s": moto.seconds,
            "requests": {name.split(":", 1)[1]: n for name, n in totals.by_operation.items()},
            "stats": {name: int(getattr(stats, name)) for name in STAT_NAMES},
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def _run_in_memory(events: int) -> dict[str, Any]:
    from bench.campaign import Campaign
    from bench.memory_store import ScalableWorkflowStore

    campaign = Campaign(DELIVERY, events)
    store = ScalableWorkflowStore()
    store.seed_campaign(campaign)
    # The seeded events stand for the database, not the function's heap: keep the collector off them.
    gc.collect()
    gc.freeze()
    workflow = _workflow(store, campaign)
    wall, cpu = time.perf_counter(), time.process_time()
    run = workflow.run("bench-run", "bench")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    from bench.capacity import item_size

    largest: dict[str, int] = {}  # the biggest indicator item of each kind, as DynamoDB would size it
    for item in store.consolidated():
        sort_key = str(item.sk)  # type: ignore[attr-defined]
        kind = sort_key.split("#", 1)[0] + ("#" if "#" in sort_key else "")
        largest[kind] = max(largest.get(kind, 0), item_size(item.serialize()))
    return {
        "store": "memory",
        "events": int(run.events_processed),
        "largest_items": largest,
        "wall_s": wall,
        "cpu_s": cpu,
        "moto_cpu_s": 0.0,
        "requests": dict(store.calls),
        "stats": store.stats(DELIVERY),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _one_run(store: str, events: int) -> None:
    configure_environment()
    result = _run_on_moto(events) if store == "moto" else _run_in_memory(events)
    print(json.dumps(result))


# --- the figure -------------------------------------------------------------------------------


def _lane(runs: list[tuple[str, int]], results: list[dict[str, Any]]) -> None:
    for store, events in runs:
        run = measured_json(
            "fig4_workflow_scaling",
            "--one",
            store,
            str(events),
            failed=f"the {store} run of {events:,} events failed",
        )
        if run is None:
            return
        results.append(run)


def _plan(store: str, sizes: tuple[int, ...]) -> list[tuple[str, int]]:
    return [(store, events) for events in sizes for _ in range(REPEATS.get(events, 1))]


def _medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per size: the one with the median CPU per event when a size ran more than once."""
    by_size: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        by_size.setdefault(run["events"], []).append(run)
    chosen = []
    for events in sorted(by_size):
        ordered = sorted(by_size[events], key=lambda run: (run["cpu_s"] - run["moto_cpu_s"]) / events)
        chosen.append({**ordered[len(ordered) // 2], "repeats": len(ordered)})
    return chosen


def paper_figure(run: dict[str, Any], memory_mb: int, margin_s: float) -> dict[str, float]:
    events = run["events"]
    cpu_per_event = (run["cpu_s"] - run["moto_cpu_s"]) / events
    lambda_cpu_per_event = cpu_per_event * max(1.0, LAMBDA_FULL_VCPU_MB / memory_mb)
    latency_per_event = latency_s(run["requests"]) / events
    per_event = lambda_cpu_per_event + latency_per_event
    return {
        "cpu_per_event_s": cpu_per_event,
        "lambda_cpu_per_event_s": lambda_cpu_per_event,
        "latency_per_event_s": latency_per_event,
        "per_event_s": per_event,
        "events_per_invocation": (INVOCATION_SECONDS - margin_s) / per_event,
    }


def _growth_note(growth: dict[str, float], memory_runs: list[dict[str, Any]]) -> str:
    from functions.consolidate.workflow import MAX_CARRIED_ITEMS, MAX_PENDING_BYTES

    largest = memory_runs[-1].get("largest_items", {})
    sizes = ", ".join(
        f"`{kind}` {size / 1024:.1f} KB"
        for kind, size in sorted(largest.items(), key=lambda pair: -pair[1])[:3]
    )
    verdict = (
        "linear in the events"
        if max(growth.values()) <= LINEAR
        else f"**more than linear** (over {times(LINEAR)})"
    )
    per_event = [run["cpu_s"] / run["events"] for run in memory_runs]
    steps = ", ".join(
        f"{memory_runs[n]['events']:,} to {memory_runs[n + 1]['events']:,} {times(per_event[n + 1] / per_event[n])}"
        for n in range(len(memory_runs) - 1)
    )
    return (
        f"CPU per event (outside moto) grows {times(growth['moto'])} from {MOTO_SIZES[0]:,} to {MOTO_SIZES[-1]:,} "
        f"events on moto and {times(growth['memory'])} from {MEMORY_SIZES[0]:,} to {MEMORY_SIZES[-1]:,} in memory "
        f"({steps}): {verdict}. Each batch reads and writes only the items its events touch; what grows is the size of the "
        "delivery-level items every batch touches, until their caps (click streams keep at most "
        f"1,000 paths). The biggest items at {MEMORY_SIZES[-1]:,} events: {sizes}. The run carries the indicator "
        "items across batches and serializes them for a pending batch and a put once per flush (when what it "
        f"carries nears {MAX_CARRIED_ITEMS:,} items or a {MAX_PENDING_BYTES / 1_000_000:g} MB pending batch), not once "
        "per batch. A million events in memory are figure 11's run with one worker (its CPU per event is in that "
        "figure's table of workers)."
        + ("" if max(growth.values()) <= LINEAR else _why_not_linear(memory_runs))
    )


def _why_not_linear(memory_runs: list[dict[str, Any]]) -> str:
    flushes = ", ".join(
        f"{run['requests'].get('save_pending', 0):,} at {run['events']:,} events" for run in memory_runs
    )
    return (
        f" **Why it is not linear:** flushes in memory: {flushes}. The smallest run fits in one flush, at its "
        "end; the larger ones flush on the way, each flush encoding its pending batch once and estimating "
        "the next from it. With the garbage collector off, a profile puts 10,000 and 100,000 events within "
        "2 % of each other: growth beyond that comes from full collections walking every live object (the "
        "in-memory store moves what it keeps out of their sight, `bench/memory_store.py`) or from the "
        "machine's load during the run. **What would close it:** if the workflow's own heap is the cause, "
        "lower `MAX_KNOWN_ITEMS` in `functions/consolidate/workflow.py` (items kept across flushes)."
    )


def _paper_note(
    paper: dict[str, float], moto_runs: list[dict[str, Any]], memory_runs: list[dict[str, Any]]
) -> str:
    client = {run["events"]: (run["cpu_s"] - run["moto_cpu_s"]) / run["events"] for run in moto_runs}
    logic = {run["events"]: run["cpu_s"] / run["events"] for run in memory_runs}
    size = max(set(client) & set(logic))
    waiting = paper["latency_per_event_s"] / paper["per_event_s"]
    return (
        "The paper figure assumes one request after another and typical p50 "
        f"latencies; DynamoDB's own throughput is not the limit at this rate. Waiting for DynamoDB is "
        f"{100 * waiting:.0f} % of an event's time, counted one request after another: an upper bound, as "
        "`functions/consolidate/store.py` issues the BatchWriteItem requests of a put 4 at a time; querying "
        "the shards of a round concurrently would cut the rest. Of the CPU, at "
        f"{size:,} events PynamoDB and botocore add {us(client[size] - logic[size])} per event to the workflow's "
        f"own {us(logic[size])} ({times(client[size] / logic[size])}): every item read or written is serialized "
        "or parsed, and each flush's pending copy once more."
    )


def measure(inputs: dict[str, Figure]) -> Figure:
    configure_environment()
    from functions.consolidate.workflow import SAFETY_MARGIN_MS

    memory_mb = configured_memory()["workflow"]
    moto_runs: list[dict[str, Any]] = []
    memory_runs: list[dict[str, Any]] = []
    lanes = [
        threading.Thread(target=_lane, args=(_plan("moto", MOTO_SIZES), moto_runs)),
        threading.Thread(target=_lane, args=(_plan("memory", MEMORY_SIZES), memory_runs)),
    ]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    moto_runs, memory_runs = _medians(moto_runs), _medians(memory_runs)
    if len(moto_runs) != len(MOTO_SIZES) or len(memory_runs) != len(MEMORY_SIZES):
        raise RuntimeError("a workflow run failed; run `python -m bench.fig4_workflow_scaling --one STORE N`")

    same = {run["events"]: run["stats"] for run in memory_runs}
    agree = all(run["stats"] == same.get(run["events"]) for run in moto_runs)
    complete = all(run["events"] in MOTO_SIZES + MEMORY_SIZES for run in moto_runs + memory_runs)

    def per_event(run: dict[str, Any]) -> float:
        return (run["cpu_s"] - run["moto_cpu_s"]) / run["events"]

    growth = {
        store: ratio(per_event(runs[-1]), per_event(runs[0]))
        for store, runs in (("moto", moto_runs), ("memory", memory_runs))
    }
    linear = all(value <= LINEAR for value in growth.values())
    paper = paper_figure(moto_runs[-1], memory_mb, SAFETY_MARGIN_MS / 1000)

    rows = []
    for run in moto_runs + memory_runs:
        outside = run["cpu_s"] - run["moto_cpu_s"]
        rows.append(
            [
                "moto (DynamoDB store)" if run["store"] == "moto" else "in memory",
                count(run["events"]),
                f"{run['wall_s']:,.1f} s",
                f"{run['events'] / run['wall_s']:,.0f}",
                us(run["cpu_s"] / run["events"]),
                us(run["moto_cpu_s"] / run["events"]) if run["store"] == "moto" else "—",
                us(outside / run["events"]),
                f"{run['max_rss_mb']:,.0f} MB",
            ]
        )
    paper_rows = [
        [
            "CPU per event outside moto (msgtrack, PynamoDB, botocore), this machine",
            us(paper["cpu_per_event_s"]),
        ],
        [
            f"the same on Lambda at {memory_mb} MB ({memory_mb / LAMBDA_FULL_VCPU_MB:.2f} vCPU)",
            us(paper["lambda_cpu_per_event_s"]),
        ],
        [
            "DynamoDB waiting per event: requests per event times latency ("
            + ", ".join(
                f"{name} {ms:g} ms" for name, ms in LATENCY_MS.items() if name in moto_runs[-1]["requests"]
            )
            + ")",
            us(paper["latency_per_event_s"]),
        ],
        ["one event, sequential", us(paper["per_event_s"])],
        [
            f"events one 15-minute invocation consolidates (900 s minus {SAFETY_MARGIN_MS / 1000:.0f} s safety margin)",
            f"**{paper['events_per_invocation']:,.0f}**",
        ],
    ]
    notes = [
        "Each run is a fresh interpreter: seed the campaign, then time one `TrackingWorkflow.run` (wall clock "
        "and `process_time`); "
        + ", ".join(f"{events:,}-event runs are repeated {n} times" for events, n in REPEATS.items())
        + " and the median run is shown. *In moto* is CPU spent inside moto's request handling (`BotocoreStubber`), "
        "which is emulation, not work AWS would bill; *outside moto* is msgtrack's code with PynamoDB and "
        "botocore building and parsing every request. The in-memory store hands indicator items over by "
        "reference, so its rows are the workflow's own logic (with its pending-batch encoding). The two "
        "lanes (moto, in memory) run at the same time on this 2-core machine, and `make bench` runs other "
        "figures beside them, so wall-clock rates are lower than alone; CPU per event is not affected.",
        (
            f"Cross-check: at {' and '.join(f'{n:,}' for n in MOTO_SIZES)} events moto and the in-memory store end "
            "with identical delivery indicators."
            if agree and complete
            else "**Cross-check failed:** moto and the in-memory store do not end with the same indicators."
        ),
        _growth_note(growth, memory_runs),
        _paper_note(paper, moto_runs, memory_runs),
    ]
    met = linear and agree and complete
    return Figure(
        number=4,
        title="Tracking workflow throughput and scaling",
        target=(
            f"linear growth (CPU per event at the largest run within {times(LINEAR)} of the smallest); events per "
            "15-minute invocation on paper"
        ),
        status=Figure.verdict(met),
        headline=(
            f"{us(per_event(moto_runs[-1]))} CPU per event at {MOTO_SIZES[-1]:,} events on moto, "
            f"{us(per_event(memory_runs[-1]))} at {MEMORY_SIZES[-1]:,} in memory; about "
            f"{paper['events_per_invocation']:,.0f} events per 15-minute invocation"
        ),
        command=command_for("fig4_workflow_scaling"),
        tables=[
            Table(
                [
                    "store",
                    "events",
                    "run",
                    "events/s",
                    "CPU per event",
                    "in moto",
                    "outside moto",
                    "peak memory",
                ],
                rows,
            ),
            Table(["paper figure: one 15-minute invocation against DynamoDB", "value"], paper_rows),
        ],
        notes=notes,
        data={
            "moto_runs": moto_runs,
            "memory_runs": memory_runs,
            "paper": paper,
            "workflow_memory_mb": memory_mb,
        },
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        _one_run(sys.argv[2], int(sys.argv[3]))
    else:
        standalone(measure)
