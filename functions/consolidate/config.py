"""The tracking workflow's settings and a step's time (README "The tracking workflow", "Scale-out")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from functions.shared import timeutil

BATCH_SIZE = 100  # raw events read from one shard at a time
MAX_CARRIED_ITEMS = 10_000  # changed indicator items (and held logs) a run carries before it flushes
# The pending batch is stored in chunk items of at most 300 KB (``store.MAX_CHUNK_BYTES``), so no item
# limit bounds it; each flush rewrites every indicator item it carries, so the fewer flushes the
# fewer write units. A run flushes once its pending batch is encoded past this: 2 MB is 7 chunks, one
# BatchWriteItem request (25 items, 16 MB) to save and one BatchGetItem (100 keys, 16 MB) to replay,
# each chunk under its own key (300 write units, well under a key's 1,000 a second); decoded it is
# about 8 times as large (16 MB of JSON), far under a 1,024 MB function, and replayed in about a
# second. In practice ``MAX_CARRIED_ITEMS`` comes first: figure 3's 10,000-event run carries 5,660
# items in 316 KB (10,000 such items: about 560 KB).
MAX_PENDING_BYTES = 2_000_000
SAFETY_MARGIN_MS = 60_000  # stop taking new batches when less than this remains of the invocation
# How long after its start a run's workers take new batches (a worker stopped by its invocation's limit
# before then is invoked again): below the lock's time, leaving the finisher its invocation. The deploy
# sets its own (MSGTRACK_RUN_BUDGET_SECONDS, infra/constants.py RUN_BUDGET).
RUN_BUDGET_SECONDS = 900
# Each step of a run is one invocation of the consolidation function at Lambda's longest: the deploy's
# function timeout (infra/constants.py) and the local stack's containers (local/stack.py) read it.
WORKFLOW_TIMEOUT_SECONDS = 900
# A worker or a slice of the merge that raised or ran out of time is tried this many times more: the
# state machine's Retry on States.TaskFailed in AWS (infra/workflow_state_machine.py) and the local
# stack's stand-in for it (local/state_machine.py). Their work is idempotent, so a retry counts nothing twice.
WORKER_RETRY_ATTEMPTS = 1
MAX_RUN_ERRORS = 20  # errors a run records (the run item stays small)
STOPPED_EARLY = "stopped early to stay within the time limit"


@dataclass(frozen=True)
class WorkflowConfig:
    log_ttl_days: int = 365
    late_event_grace_seconds: int = 300
    lock_seconds: int = 1200
    batch_size: int = BATCH_SIZE
    max_carried_items: int = MAX_CARRIED_ITEMS
    max_pending_bytes: int = MAX_PENDING_BYTES
    workers: int = 1  # groups of shards a run is split into, consolidated in parallel
    raw_event_shards: int | None = None  # None: the deploy-time setting (MSGTRACK_RAW_EVENT_SHARDS)
    # a run's workers stop taking batches this long after its start
    run_budget_seconds: int = RUN_BUDGET_SECONDS

    def __post_init__(self) -> None:
        if not 0 < self.run_budget_seconds < self.lock_seconds:
            raise ValueError(
                f"a run's budget ({self.run_budget_seconds} s) must be positive and shorter than its lock "
                f"({self.lock_seconds} s): a worker still taking batches must still hold the lock"
            )


class Budget:
    """An invocation's time (``remaining_ms``) and, for a worker, its run's deadline."""

    def __init__(
        self,
        remaining_ms: Callable[[], int] | None,
        deadline: datetime | None = None,
        clock: Callable[[], datetime] = timeutil.now,
    ) -> None:
        self._remaining_ms = remaining_ms
        self._deadline = deadline
        self._clock = clock

    def exhausted(self) -> bool:
        return self.invocation_spent() or self.run_spent()

    def invocation_spent(self) -> bool:
        return self._remaining_ms is not None and self._remaining_ms() < SAFETY_MARGIN_MS

    def run_spent(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline
