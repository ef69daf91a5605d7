"""The local stand-in for the tracking workflow's Step Functions state machine.

It calls the consolidation function's steps exactly as the state machine in AWS does (README
"Scale-out"): ``plan``, then one ``work`` step per group of shards in parallel (a Map state: each
worker in a container of its own, a failed attempt retried, a worker that says it has ``more`` invoked
again for its group with the notes and the shard to go on at it returned), then ``finish`` with the workers' results, and with
the error when a worker failed for good. Between the two, ``close`` and one ``merge_slice`` step per
slice of the merge in parallel (another Map state; a slice that fails for good is merged by ``finish``).
"""

from __future__ import annotations

import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from functions.consolidate.config import WORKER_RETRY_ATTEMPTS
from local.context import LocalFunction

WORK_ATTEMPTS = 1 + WORKER_RETRY_ATTEMPTS  # like the Map states' Retry: the first attempt and the retries


class LocalStateMachine:
    """``invoke(event)`` runs a whole execution; ``containers`` run the work steps side by side."""

    name = "msgtrack-tracking-workflow-state-machine"

    def __init__(self, containers: list[LocalFunction], attempts: int = WORK_ATTEMPTS) -> None:
        if not containers:
            raise ValueError("the state machine needs at least one container of the consolidation function")
        self.containers = containers
        self._attempts = attempts

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        started: dict[str, Any] = {"step": "plan"}
        for name in ("run_id", "trigger"):
            if isinstance(event.get(name), str):
                started[name] = event[name]
        plan = self.containers[0].invoke(started)
        if plan["skip"]:
            return {"run_id": plan["run_id"], "status": "skipped", "events_processed": 0}
        groups = plan["groups"]
        failures: list[dict[str, str]] = []

        def invoke(step: dict[str, Any]) -> dict[str, Any] | None:
            container = self.containers[step["worker"] % len(self.containers)]
            for attempt in range(1, self._attempts + 1):
                try:
                    return dict(container.invoke(step))
                except Exception as error:
                    print(
                        f"[{self.name}] worker {step['worker']} attempt {attempt} failed:\n"
                        f"{traceback.format_exc()}",
                        file=sys.stderr,
                    )
                    last = {"Error": type(error).__name__, "Cause": str(error)}
            failures.append(last)
            return None

        def work(group: dict[str, Any]) -> dict[str, Any] | None:
            result = invoke({"step": "work", "run_id": plan["run_id"], **group})
            while result is not None and result.get("more") is True:  # the Choice "More to do?"
                carried: dict[str, Any] = {n: result[n] for n in ("errors", "next_shard") if n in result}
                result = invoke({"step": "work", "run_id": plan["run_id"], **group, **carried})
            return result

        with ThreadPoolExecutor(max_workers=max(1, min(len(groups), len(self.containers)))) as pool:
            results = [result for result in pool.map(work, groups) if result is not None]
        self._merge_slices(plan["run_id"])
        finish: dict[str, Any] = {"step": "finish", "run_id": plan["run_id"], "workers": results}
        if failures:
            finish["error"] = failures[0]
        return dict(self.containers[0].invoke(finish))

    def _merge_slices(self, run_id: str) -> None:
        closed = self.containers[0].invoke({"step": "close", "run_id": run_id})

        def merge(n: int, spread: int) -> None:
            container = self.containers[n % len(self.containers)]
            for attempt in range(1, self._attempts + 1):
                try:
                    container.invoke({"step": "merge_slice", "run_id": run_id, "slice": spread})
                    return
                except Exception:
                    print(
                        f"[{self.name}] slice {spread} attempt {attempt} failed:\n{traceback.format_exc()}",
                        file=sys.stderr,
                    )

        slices = [int(entry["slice"]) for entry in closed.get("slices", [])]
        with ThreadPoolExecutor(max_workers=max(1, min(len(slices), len(self.containers)))) as pool:
            list(pool.map(merge, range(len(slices)), slices))
