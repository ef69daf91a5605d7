"""Figure 8, local stack: requests per second and latency of ``/r/{token}`` on loopback.

The local stack starts in this process as ``msgtrack serve`` runs it (``bench.local_stack``: moto
server, the local API Gateway, the same handlers), on free loopback ports. A delivery is registered and
one recipient's message rendered through the API; then ``bench.loadgen``, in its own process, sends a
bounded number of GETs to one of the message's tracked links. A figure to catch regressions of the
local stack, not a cloud figure: every click also crosses loopback HTTP to moto. Requests per second
and latencies follow whatever else the machine runs; the stack's CPU per request (this process's CPU
time over the run) does not, so it tells a slower stack from a busier machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    Figure,
    Table,
    bench_environment,
    command_for,
    configure_environment,
    load_average,
    ms,
    percentile,
    standalone,
)
from bench.local_stack import first_links, running_local_stack

REQUESTS = 1500
SECONDS = 20.0
CONCURRENCY = (1, 4)
IDLE_SECONDS = 3.0
NEWSLETTER = Path(__file__).resolve().parent / "corpus" / "summit-lisboa-invitation.html"


def _tracked_link(base_url: str) -> str:
    [link] = first_links(
        base_url,
        {"label": "Bench load", "html": NEWSLETTER.read_text(), "track_opens": True},
        [{"id": "cust-00000001", "email": "ana@example.org", "fields": {}}],
    )
    return link


def _load(url: str, concurrency: int, requests: int, seconds: float) -> dict[str, Any]:
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            url,
            "--requests",
            str(requests),
            "--concurrency",
            str(concurrency),
            "--seconds",
            str(seconds),
        ],
        cwd=REPO,
        env=bench_environment(),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return dict(json.loads(finished.stdout))


def _idle_cpu_per_second() -> float:
    """The CPU the idle stack spends a second: its pollers (events out, held events, deliveries), once
    the warm-up's raw events are handed on."""
    time.sleep(IDLE_SECONDS)
    started, cpu = time.perf_counter(), time.process_time()
    time.sleep(IDLE_SECONDS)
    return (time.process_time() - cpu) / (time.perf_counter() - started)


def _measured_load(url: str, concurrency: int, idle_cpu_per_s: float) -> dict[str, Any]:
    """A load run, and the CPU this process (the whole local stack) spent serving it, beyond what the
    idle stack would have spent over the same time."""
    started = time.process_time()
    run = _load(url, concurrency, REQUESTS, SECONDS)
    spent = time.process_time() - started - idle_cpu_per_s * run["elapsed_s"]
    return {**run, "stack_cpu_s": max(0.0, spent)}


def measure(inputs: dict[str, Figure]) -> Figure:
    configure_environment()
    with running_local_stack() as base_url:
        url = _tracked_link(base_url)
        _load(url, 1, 50, 10)  # warm: the handler imported, clients built, the target cached
        load = load_average()
        idle = _idle_cpu_per_second()
        runs = {concurrency: _measured_load(url, concurrency, idle) for concurrency in CONCURRENCY}

    rows = []
    for concurrency, run in runs.items():
        latencies = run["latencies_s"]
        rows.append(
            [
                str(concurrency),
                f"{run['requests']:,}",
                f"{run['elapsed_s']:.1f} s",
                f"{run['requests'] / run['elapsed_s']:,.0f}",
                ms(percentile(latencies, 0.5)),
                ms(percentile(latencies, 0.99)),
                ms(run["stack_cpu_s"] / run["requests"]),
                ", ".join(f"{status}: {n:,}" for status, n in sorted(run["statuses"].items())),
            ]
        )
    single = runs[CONCURRENCY[0]]
    rps = single["requests"] / single["elapsed_s"]
    return Figure(
        number=8,
        title="Local stack",
        target="none: a regression figure for `msgtrack serve` on loopback, not a cloud figure",
        status="info",
        headline=(
            f"{rps:,.0f} requests/s, p50 {ms(percentile(single['latencies_s'], 0.5))}, "
            f"p99 {ms(percentile(single['latencies_s'], 0.99))} for `/r/{{token}}` (1 connection); "
            f"the stack's CPU {ms(single['stack_cpu_s'] / single['requests'])} per request"
        ),
        command=command_for("fig8_local_stack"),
        tables=[
            Table(
                [
                    "connections",
                    "requests",
                    "took",
                    "requests/s",
                    "p50",
                    "p99",
                    "stack CPU per request",
                    "statuses",
                ],
                rows,
                caption=f"Each run stops after {REQUESTS:,} requests or {SECONDS:.0f} s; keep-alive connections.",
            )
        ],
        notes=[
            "Each click runs the redirect handler in the local gateway's process and writes its raw event to "
            "moto's server over loopback HTTP (moto answers a PutItem in a few ms). The local stack runs each "
            "function as one container, one invocation at a time, as a Lambda function with reserved "
            "concurrency 1 would: more connections queue rather than add throughput, which the p99 shows.",
            "*Stack CPU per request* is the CPU time of the process that runs the whole stack (the gateway, "
            "the handlers, moto's server, the events-out pollers; not the load generator) over the run, less "
            f"what the idle stack spends over as long ({ms(idle)} a second, its pollers: measured for "
            f"{IDLE_SECONDS:.0f} s before the runs), per request. The machine's other work slows requests/s "
            "and latencies much more than this: compare it across runs to tell a regression of the local "
            f"stack from a busy machine (load average here: {load}).",
        ],
        data={str(c): {k: v for k, v in run.items() if k != "latencies_s"} for c, run in runs.items()},
    )


if __name__ == "__main__":
    standalone(measure)
