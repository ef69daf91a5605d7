"""Figure 11, the tracking workflow with N workers: each worker's throughput and the split of the work.

Each run consolidates the same seeded campaign of a million events over 64 raw-event shards, in the
steps the Step Functions state machine (and ``local/state_machine.py``) runs: ``plan``, one
``work`` step per group of shards, ``close``, one ``merge_slice`` step per slice of the merge, ``finish``
with the workers' results. The steps are the
consolidation function's own (``TrackingWorkflow.plan``, ``.work``, ``.finish``), called in one
interpreter one after another, each step timed on its own with ``time.process_time``: so a worker's
CPU time is its own, whatever else runs on the machine. The store is the in-memory one of figure 4
(``bench/memory_store.py``) counting the DynamoDB requests ``DynamoWorkflowStore`` would make for each
call; a step's wait for DynamoDB is those requests times figure 4's per-request latencies, on a virtual
clock (nothing sleeps), requests the store sends at once (a put's BatchWriteItem requests) waited for
as one. A worker's throughput is its events / (its CPU time + its wait).

From the measurements, on paper: how many events a run with 16, 40 (the deploy's most) and 64 workers
consolidates in an hour on Lambda, each worker invoked again while it has more within the run's budget,
and whether a 10-million-recipient campaign's 20 million events fit.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from bench.common import (
    LAMBDA_FULL_VCPU_MB,
    LATENCY_MS,
    OTHER_LATENCY_MS,
    Figure,
    Table,
    X,
    command_for,
    configure_environment,
    configured_memory,
    deployed_constants,
    latency_s,
    measured_json,
    standalone,
    times,
    us,
)
from functions.consolidate.config import WORKFLOW_TIMEOUT_SECONDS

EVENTS = 1_000_000
# Fewer events for a quick look on a busy machine (the figure says how many it ran); `make bench` runs EVENTS.
EVENTS_OVERRIDE = "MSGTRACK_BENCH_WORKERS_EVENTS"
SHARDS = 64  # MSGTRACK_RAW_EVENT_SHARDS as deployed
WORKERS = (1, 2, 4, 8)
# Two runs at a time (this machine has two cores), each lane about the same work.
LANES = ((1, 8), (2, 4))
DELIVERY = "dbenchworkrs"
RUN_ID = "bench-workers"
MIN_SHARE = 0.8  # every worker's throughput at least this share of a lone worker's
MAX_SKEW = 1.2  # the largest worker's events at most this many times the mean
PAPER_WORKERS = (16, 40, 64)
# The deploy's most workers (an inline Map runs at most 40 iterations at once) and a run's budget for
# its workers (MSGTRACK_RUN_BUDGET_SECONDS), as infra/constants.py sets them.
DEPLOY_MAX_WORKERS = int(deployed_constants().get("MAX_WORKFLOW_WORKERS", 40))
RUN_BUDGET_S = int(deployed_constants().get("RUN_BUDGET_SECONDS", 1800))
# Each step's invocation as deployed: the merge's slices and Finish fit in one.
STEP_S = WORKFLOW_TIMEOUT_SECONDS
CAMPAIGN_EVENTS = 20_000_000  # a 10-million-recipient campaign's first hour
HOUR_S = 3600
KEY_WRITES_PER_S = 1000  # DynamoDB's write units a second on one partition key (a write of ≤ 1 KB is one)

Result = TypeVar("Result")


# --- one run, in its own interpreter ------------------------------------------------------------


def _timed(store: Any, step: Callable[[], Result]) -> tuple[Result, dict[str, Any]]:
    """Run one step; its CPU time and the DynamoDB requests it made, with their wait (requests sent at
    once waited for as one)."""
    before, waited, written = dict(store.requests), dict(store.waits), dict(store.writes_by_key)
    wall, cpu = time.perf_counter(), time.process_time()
    value = step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    requests = {
        name: n - before.get(name, 0) for name, n in store.requests.items() if n > before.get(name, 0)
    }
    writes = {
        f"{table} {key}": n - written.get((table, key), 0)
        for (table, key), n in store.writes_by_key.items()
        if n > written.get((table, key), 0)
    }
    wait = latency_s({name: n - waited.get(name, 0) for name, n in store.waits.items()})
    return value, {
        "cpu_s": cpu,
        "wall_s": wall,
        "requests": requests,
        "wait_s": wait,
        "time_s": cpu + wait,
        "writes_by_key": writes,
    }


def measure_runs(events: int, workers: tuple[int, ...], shards: int = SHARDS) -> list[dict[str, Any]]:
    """Seed a campaign of ``events`` once, then one run (plan, work, finish) per number of workers,
    each on a store of its own that shares the seeded events."""
    from bench.campaign import Campaign
    from bench.memory_store import LatencyAccountingStore

    campaign = Campaign(DELIVERY, events)
    seeded = LatencyAccountingStore()
    seeding = time.perf_counter()
    seeded.seed_campaign(campaign, shards)
    seeding = time.perf_counter() - seeding
    # The seeded events stand for the database, not the function's heap: keep the collector off them.
    gc.collect()
    gc.freeze()
    runs = []
    for n in workers:
        runs.append({"seed_s": seeding, **_run(campaign, seeded.sharing_seed(), n, shards)})
        gc.collect()  # the previous run's store is the database of a run that is over
    return runs


def _run(campaign: Any, store: Any, workers: int, shards: int) -> dict[str, Any]:
    from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig

    workflow = TrackingWorkflow(
        store,
        WorkflowConfig(workers=workers, raw_event_shards=shards),
        clock=lambda: campaign.end + timedelta(hours=1),
    )
    plan, planning = _timed(store, lambda: workflow.plan(RUN_ID, "bench"))
    results, steps = [], []
    for worker, group in enumerate(plan.groups):
        result, step = _timed(store, lambda: workflow.work(RUN_ID, worker, group))  # noqa: B023
        if result.status != "succeeded" or result.error:
            raise RuntimeError(f"worker {worker} of {workers}: {result.status} {result.error}")
        results.append(result)
        steps.append({"worker": worker, "shards": len(group), "events": result.events_processed, **step})
    partials = sum(len(items) for items in store.partials.values())  # what the finisher merges
    # Close, then the slices of the merge (a Map state: side by side on Lambda, one after another here,
    # each timed alone), then Finish (the statistics)
    spreads, closing = _timed(store, lambda: workflow.close(RUN_ID))
    slices = []
    for spread in spreads:
        _, merging = _timed(store, lambda: workflow.merge_slice(RUN_ID, spread))  # noqa: B023
        slices.append({"slice": spread, **merging})
    run, finishing = _timed(store, lambda: workflow.finish(RUN_ID, results))
    if run.status != "succeeded" or int(run.events_processed) != campaign.events:
        raise RuntimeError(f"the run {run.status} with {run.events_processed} of {campaign.events} events")
    return {
        "events": campaign.events,
        "workers": workers,
        "shards": shards,
        "plan": planning,
        "steps": steps,
        "close": closing,
        "slices": slices,
        "finish": {**finishing, "partial_items": partials},
        "stats": store.stats(DELIVERY),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def throughput(step: dict[str, Any]) -> float:
    """Events per second of a worker: its events over its CPU time and its wait for DynamoDB."""
    return float(step["events"] / step["time_s"])


def skew(run: dict[str, Any]) -> float:
    """The largest worker's events over the mean."""
    events = [step["events"] for step in run["steps"]]
    return max(events) / (sum(events) / len(events))


# --- the figure -------------------------------------------------------------------------------


def _lane(events: int, workers: tuple[int, ...], runs: list[dict[str, Any]]) -> None:
    measured = measured_json(
        "fig11_workers",
        "--runs",
        str(events),
        *map(str, workers),
        failed=f"the runs with {workers} workers failed",
    )
    runs.extend(measured or [])


def _lambda_time(step: dict[str, Any], scale: float) -> float:
    """A step's time on Lambda: its CPU time at Lambda's vCPU share, plus its wait."""
    return float(step["cpu_s"] * scale + step["wait_s"])


def _merging(run: dict[str, Any], scale: float) -> tuple[float, float]:
    """The merge's seconds on Lambda: its longest invocation (Close, a slice or Finish: each must fit
    in one) and its critical path (Close + the slowest slice + Finish, the slices side by side)."""
    finish = _lambda_time(run["finish"], scale)
    slices = [_lambda_time(step, scale) for step in run.get("slices", [])]
    close = _lambda_time(run["close"], scale) if "close" in run else 0.0
    return max([close, *slices, finish]), close + max(slices, default=0.0) + finish


def _merge_writes(run: dict[str, Any]) -> dict[str, int]:
    """The merge's writes by key: the slices run at once, so their writes to a key add up."""
    together: dict[str, int] = {}
    for step in [*run.get("slices", []), run["finish"]]:
        for key, writes in step["writes_by_key"].items():
            together[key] = together.get(key, 0) + writes
    return together


def _hottest(writes: dict[str, int]) -> tuple[str, int]:
    """The partition key written most (``"table key"``) and its writes."""
    return max(writes.items(), key=lambda pair: pair[1], default=("none", 0))


def paper_figure(
    runs: list[dict[str, Any]],
    memory_mb: int,
    margin_s: float,
    budget_s: float = RUN_BUDGET_S,
    step_s: float = STEP_S,
) -> dict[str, Any]:
    """Events per hour at more workers, and the 20-million-event campaign, from the measured runs.

    Assumptions (stated in the figure): every worker at the slowest per-worker rate measured, its CPU at
    Lambda's vCPU share; a worker's share as uneven as the most uneven split measured; one run an hour,
    its workers taking batches from the end of the plan until the run's budget (``budget_s`` after its
    start) is spent, each invoked again while it stops at its invocation's limit; the workers' writes to
    one partition key at most 1,000 a second together, in the proportion to the events measured with
    the most workers; the finisher one invocation (``step_s`` less the safety margin), its time per
    event of the run growing with the workers along the line through the runs with the fewest and the
    most workers (more than one).
    """
    scale = max(1.0, LAMBDA_FULL_VCPU_MB / memory_mb)
    per_event = max(_lambda_time(step, scale) / step["events"] for run in runs for step in run["steps"])
    uneven = max(skew(run) for run in runs)
    work_s = step_s - margin_s
    several = sorted((run for run in runs if run["workers"] > 1), key=lambda run: run["workers"])
    widest = several[-1]
    together: dict[str, int] = {}  # the workers run at once: their writes to a key add up
    for step in widest["steps"]:
        for key, writes in step["writes_by_key"].items():
            together[key] = together.get(key, 0) + writes
    hot_key, hot_writes = _hottest(together)
    hot_per_event = hot_writes / widest["events"]
    finisher_key, finisher_writes = _hottest(_merge_writes(widest))
    finisher_hot_per_event = finisher_writes / widest["events"]
    # the merge's seconds per event of the run, lines in the workers (a + b * N): its longest
    # invocation (the cap) and its critical path (the run's time)
    (n0, f0, p0), (n1, f1, p1) = [
        (run["workers"], *(seconds / run["events"] for seconds in _merging(run, scale)))
        for run in (several[0], widest)
    ]
    slope = (f1 - f0) / (n1 - n0) if n1 != n0 else 0.0
    path_slope = (p1 - p0) / (n1 - n0) if n1 != n0 else 0.0
    plan_s = max(_lambda_time(run["plan"], scale) for run in runs)
    workers_time_s = budget_s - plan_s  # the workers' time in a run: the budget counts from its start
    rows = []
    for n in PAPER_WORKERS:
        finisher_per_event = max(f1, f1 + slope * (n - n1), finisher_hot_per_event / KEY_WRITES_PER_S)
        caps = {
            "workers": n * workers_time_s / (per_event * uneven),  # until the largest share fills the budget
            "key": KEY_WRITES_PER_S * workers_time_s / hot_per_event if hot_per_event else float("inf"),
            "finisher": work_s / finisher_per_event if finisher_per_event else float("inf"),
        }
        workers_s = max(
            CAMPAIGN_EVENTS / n * uneven * per_event, CAMPAIGN_EVENTS * hot_per_event / KEY_WRITES_PER_S
        )
        path_per_event = max(p1, p1 + path_slope * (n - n1), finisher_per_event)
        finisher_s = CAMPAIGN_EVENTS * path_per_event
        run_s = plan_s + workers_s + finisher_s
        rows.append(
            {
                "workers": n,
                "key_writes_per_s": hot_per_event * n / per_event,  # every worker at its pace
                "caps": caps,
                "events_per_hour": min(caps.values()),
                "workers_s": workers_s,
                "finisher_s": finisher_s,
                "run_s": run_s,
                # each of the merge's invocations (Close, a slice, Finish) within one invocation's time
                "fits": workers_s <= workers_time_s
                and CAMPAIGN_EVENTS * finisher_per_event <= work_s
                and run_s <= HOUR_S,
            }
        )
    return {
        "vcpu_scale": scale,
        "per_event_s": per_event,
        "uneven": uneven,
        "plan_s": plan_s,
        "budget_s": budget_s,
        "workers_time_s": workers_time_s,
        "hot_key": hot_key,
        "hot_per_event": hot_per_event,
        "finisher_key": finisher_key,
        "finisher_hot_per_event": finisher_hot_per_event,
        "finisher_slope": slope,
        "widest": widest["workers"],
        "rows": rows,
    }


def _bound(paper: dict[str, Any], row: dict[str, Any]) -> str:
    """What holds a run back first, in words."""
    first = min(row["caps"], key=lambda name: row["caps"][name])
    return {
        "workers": f"the run's {paper['budget_s'] / 60:.0f}-minute budget for its workers",
        "key": f"the partition key `{paper['hot_key']}`",
        "finisher": "the finisher's one invocation",
    }[first]


def _workers(n: int) -> str:
    return f"{n} worker" + ("s" if n > 1 else "")


def _requests(step: dict[str, Any]) -> str:
    return f"{sum(step['requests'].values()):,}"


def measure(inputs: dict[str, Figure]) -> Figure:
    configure_environment()
    from functions.consolidate.workflow import SAFETY_MARGIN_MS

    memory_mb = configured_memory()["workflow"]
    lanes_runs: list[list[dict[str, Any]]] = [[] for _ in LANES]
    events = int(os.environ.get(EVENTS_OVERRIDE) or EVENTS)
    lanes = [
        threading.Thread(target=_lane, args=(events, lane, runs))
        for lane, runs in zip(LANES, lanes_runs, strict=True)
    ]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    runs = sorted((run for runs in lanes_runs for run in runs), key=lambda run: run["workers"])
    if [run["workers"] for run in runs] != list(WORKERS):
        raise RuntimeError("a run failed; run `python -m bench.fig11_workers --runs EVENTS WORKERS...`")
    events = int(runs[0]["events"])

    lone = throughput(runs[0]["steps"][0])
    shares = {run["workers"]: min(throughput(step) for step in run["steps"]) / lone for run in runs[1:]}
    skews = {run["workers"]: skew(run) for run in runs}
    same = all(run["stats"] == runs[0]["stats"] for run in runs)
    paper = paper_figure(runs, memory_mb, SAFETY_MARGIN_MS / 1000)
    fits = {row["workers"]: row["fits"] for row in paper["rows"]}
    kept = all(share >= MIN_SHARE for share in shares.values())
    even = all(value <= MAX_SKEW for value in skews.values())
    met = events >= EVENTS and kept and even and same and fits[DEPLOY_MAX_WORKERS]

    summary_rows = []
    for run in runs:
        shares_of = [step["events"] for step in run["steps"]]
        rates = [throughput(step) for step in run["steps"]]
        slowest = max(run["steps"], key=lambda step: step["time_s"])
        summary_rows.append(
            [
                str(run["workers"]),
                f"{min(shares_of):,} / {sum(shares_of) / len(shares_of):,.0f} / {max(shares_of):,}",
                times(skews[run["workers"]]),
                f"{min(rates):,.0f} to {max(rates):,.0f}",
                times(shares.get(run["workers"], 1.0)),
                f"{slowest['time_s']:,.1f} s ({slowest['cpu_s']:,.1f} s CPU + {slowest['wait_s']:,.1f} s wait)",
                f"{run['plan']['time_s']:,.1f} s",
                f"{run['finish']['time_s']:,.1f} s ({run['finish']['cpu_s']:,.1f} s CPU + "
                f"{run['finish']['wait_s']:,.1f} s wait)",
            ]
        )
    worker_rows = [
        [
            str(run["workers"]),
            str(step["worker"]),
            str(step["shards"]),
            f"{step['events']:,}",
            us(step["cpu_s"] / step["events"]),
            _requests(step),
            us(step["wait_s"] / step["events"]),
            f"{throughput(step):,.0f}",
        ]
        for run in runs
        for step in run["steps"]
    ]
    by_n = paper["rows"]

    def row(label: str, value: Callable[[dict[str, Any]], str]) -> list[str]:
        return [label, *(value(r) for r in by_n)]

    paper_rows = [
        row(
            f"a worker's time per event on Lambda at {memory_mb} MB (CPU {X} {paper['vcpu_scale']:.2f} + wait), "
            f"the slowest measured; shares up to {times(paper['uneven'])} the mean",
            lambda r: us(paper["per_event_s"]),
        ),
        row(
            f"events the workers consolidate within the run's budget ({paper['budget_s']:,.0f} s from its start, "
            f"{paper['workers_time_s']:,.0f} s after the plan; a worker stopped by its invocation's {STEP_S / 60:.0f} minutes "
            "is invoked again)",
            lambda r: f"{r['caps']['workers']:,.0f}",
        ),
        row(
            f"events the hottest partition key takes meanwhile (`{paper['hot_key']}`: "
            f"{paper['hot_per_event']:.2f} writes per event at {paper['widest']} workers, "
            f"{KEY_WRITES_PER_S:,} a second)",
            lambda r: f"{r['caps']['key']:,.0f}",
        ),
        row(
            f"writes a second the workers send that key at their pace (DynamoDB takes {KEY_WRITES_PER_S:,})",
            lambda r: f"{r['key_writes_per_s']:,.0f}",
        ),
        row(
            f"events the merge takes, each slice and Finish in one invocation (`{paper['finisher_key']}`: "
            f"{paper['finisher_hot_per_event']:.2f} writes per event)",
            lambda r: f"{r['caps']['finisher']:,.0f}",
        ),
        row(
            "**events per hour** (one run an hour: the least of the three)",
            lambda r: f"**{r['events_per_hour']:,.0f}**",
        ),
        row(
            f"{CAMPAIGN_EVENTS:,} events in one run: plan + workers + finisher",
            lambda r: (
                f"{paper['plan_s']:,.1f} + {r['workers_s']:,.0f} + {r['finisher_s']:,.0f} s: "
                + ("**fits in one hour**" if r["fits"] else "**does not fit**")
            ),
        ),
    ]
    latencies = ", ".join(f"{name} {ms:g} ms" for name, ms in LATENCY_MS.items())
    notes = [
        f"Two interpreters ({' and '.join(' then '.join(map(_workers, lane)) for lane in LANES)}) each "
        f"seed {events:,} events of `bench/campaign.py` ({events // 3:,} recipients) over {SHARDS} raw-event "
        "shards once, then run the steps of each run one after another, every run on a store of its own: "
        "`plan`, each worker's `work` over its group of shards, `close`, each of the 16 slices of the merge "
        "(`merge_slice`, timed one by one), `finish` with the workers' results, as the state machine calls them. Every step is timed on its own with `process_time`; the two interpreters run at "
        "once on this 2-core machine, beside other figures, which does not change a step's CPU time. "
        f"A step's *wait* is the DynamoDB requests `DynamoWorkflowStore` would make for its store calls "
        f"(`LatencyAccountingStore` in `bench/memory_store.py`), waited for one after another but for the writes, at "
        f"figure 4's typical "
        f"in-region latencies ({latencies}; any other request, the workers' TransactWriteItems and the "
        f"fallback queue's ReceiveMessage, {OTHER_LATENCY_MS:g} ms); a call's BatchWriteItem requests (the partial "
        "items' too, 25 items of any partitions to a request) go 4 at a time, as the store sends them, each "
        "group waited for as one (its slowest request). "
        "Throughput = events ÷ (CPU + wait).",
        (
            f"Cross-check: the runs with {', '.join(map(str, WORKERS))} workers end with identical delivery "
            "statistics."
            if same
            else "**Cross-check failed:** the runs do not end with the same delivery statistics."
        ),
        f"Kept: every worker's throughput at 2, 4 and 8 workers is at least {times(min(shares.values()))} a lone "
        f"worker's ({lone:,.0f} events/s; target {times(MIN_SHARE)}). Even: the largest worker holds at most "
        f"{times(max(skews.values()))} the mean (target {times(MAX_SKEW)}): recipients spread over the shards by "
        "a hash, the shards over the workers round robin. The finisher merges the workers' partial items "
        "(statistics, URL rows, hours, click streams, persons); with one worker there are none.",
        "On paper: a run plans, starts N workers at once (the Map state), each a Lambda invocation of at "
        f"most {STEP_S / 60:.0f} minutes that stops taking batches {SAFETY_MARGIN_MS / 1000:.0f} s before the end and is "
        "invoked again for its group while it has work left, until the run's budget "
        f"(`RUN_BUDGET_SECONDS`, {paper['budget_s'] / 60:.0f} minutes from the run's start) is spent, then "
        "closes the run and merges in 16 slices side by side (a second Map state), then finishes: the merge "
        "takes Close + the slowest slice + Finish. A worker's CPU is scaled to Lambda's vCPU share at the "
        f"configured memory (one vCPU at {LAMBDA_FULL_VCPU_MB} MB, as figure 4); its wait is as measured. The "
        "events per hour assume one run an hour (the schedule) whose largest worker takes batches for the whole "
        "budget (each new invocation's start, a few seconds, and its re-read of the late-event window are left "
        "out); runs started back to back would do more. The merge's time (its longest invocation, and Close + "
        "the slowest slice + Finish) is taken as measured per event of the run, growing with the workers along "
        f"the line through the runs with 2 and 8 workers ({us(paper['finisher_slope'])} per event per worker "
        "for the longest invocation), and each of its invocations must fit in one. "
        "A partition key takes about 1,000 writes a second: the workers' writes to the key they write most "
        "(in the proportion measured with the most workers) cap the events of a run's invocations, as the "
        "finisher's writes to its own hottest key cap what it merges. Raw-event shards cap the workers at "
        f"64, and the deploy at {DEPLOY_MAX_WORKERS} (`workflow_workers`: an inline Map state runs at most 40 "
        "iterations at once), so 64 workers would need a distributed Map; the target is judged at "
        f"{DEPLOY_MAX_WORKERS}.",
    ]
    return Figure(
        number=11,
        title="Tracking workflow with N workers",
        target=(
            f"at {EVENTS:,} events with 2, 4 and 8 workers: every worker ≥ {times(MIN_SHARE)} a lone worker's "
            f"throughput, the largest ≤ {times(MAX_SKEW)} the mean; on paper, {CAMPAIGN_EVENTS:,} events "
            f"consolidated within an hour by {DEPLOY_MAX_WORKERS} workers (the deploy's most)"
        ),
        status=Figure.verdict(met),
        headline=(
            f"at {events:,} events workers keep ≥ {times(min(shares.values()))} a lone worker's throughput, "
            f"the largest at most "
            f"{times(max(skews.values()))} the mean; on paper "
            + ", ".join(
                f"{row['events_per_hour']:,.0f} events per hour with {row['workers']}"
                for row in paper["rows"]
            )
            + f"; {CAMPAIGN_EVENTS:,} events "
            + ("fit" if fits[DEPLOY_MAX_WORKERS] else "do not fit")
            + f" in one hour with {DEPLOY_MAX_WORKERS} (first bound: "
            + _bound(paper, next(r for r in paper["rows"] if r["workers"] == DEPLOY_MAX_WORKERS))
            + ")"
        ),
        command=command_for("fig11_workers"),
        tables=[
            Table(
                [
                    "workers",
                    "events per worker (min / mean / max)",
                    "largest ÷ mean",
                    "throughput per worker (events/s)",
                    "slowest ÷ lone worker",
                    "slowest worker (the run's critical path)",
                    "plan",
                    "finisher",
                ],
                summary_rows,
            ),
            Table(
                [
                    "workers",
                    "worker",
                    "shards",
                    "events",
                    "CPU per event",
                    "DynamoDB requests",
                    "wait per event",
                    "events/s",
                ],
                worker_rows,
            ),
            Table(
                [
                    "on paper: a run with N workers on Lambda against DynamoDB",
                    *(f"{n} workers" for n in PAPER_WORKERS),
                ],
                paper_rows,
            ),
        ],
        notes=notes,
        data={"runs": runs, "paper": paper, "workflow_memory_mb": memory_mb},
    )


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--runs":
        configure_environment()
        print(json.dumps(measure_runs(int(sys.argv[2]), tuple(map(int, sys.argv[3:])))))
    else:
        standalone(measure)
