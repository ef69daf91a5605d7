"""The tracking workflow: raw events in, tracking logs and indicators out, exactly once.

How exactly-once holds (see README "The tracking workflow"):

* One run at a time: a lock with an expiry in the workflow state item; every state write is
  conditional on still holding it.
* A run (each worker, its group) reads the shards of the raw-events table (64 by default) in rounds,
  a batch of each shard per round, from its checkpoint up to the run's start. Each batch is computed (``batch.consolidate``) against
  the indicator items the run holds in memory: loaded once, updated batch after batch, written once
  per *flush*. A tracking log is a pure function of its raw event and tracked URL, so the logs of a
  batch are put straight away (a put repeated later is harmless).
* Checkpoints move only at a flush: the changed indicator items and the new checkpoint of every
  shard read since the previous flush are saved as the *pending batch*, applied as whole-item puts,
  then the checkpoints move and the pending batch is removed in one conditional update. The pending
  batch is stored in chunk items of the workflow table (``store.PendingChunks``), written first under
  keys no other batch uses; it exists the moment the state item (or the worker's slot) points at them,
  in one conditional update, and stops existing when the update that moves the checkpoints removes
  the pointer. The chunks are never deleted: they expire (TTL). A crash before a flush loses only
  memory: the next run reads those events again from the old checkpoints and counts them once
  (chunks written without a pointer are never read). A crash after leaves a pending batch, which the
  next run replays before anything else; replaying puts is harmless. A run flushes when what it
  carries nears a bound (``max_carried_items``, and the pending batch's encoded size,
  ``MAX_PENDING_BYTES``), when its time runs low, and at its end.
* Events may become visible a little after their timestamp (a slow write). Each run re-reads the
  last ``late_event_grace_seconds`` before every checkpoint and consolidates the events that have no
  tracking log yet, so such late events are counted by the next run, once. Behind a checkpoint, a
  tracking log means "counted": so the logs of late events, and of fallback-queue events behind a
  checkpoint, are not put straight away but go in the pending batch with their counts.
* A write DynamoDB refuses for what it holds (an item too large, an invalid value) would be refused
  again on every replay and halt the workflow for good. Such an item is quarantined instead (a
  ``QuarantineModel`` item in the workflow table, named in the run's errors and counted in its
  ``quarantined``) and the run goes on: a refused tracking log is replaced by its bare facts (so it
  still means "counted"), a refused indicator item is forgotten (the stored one stays, the next batch
  starts again from it), a refused fallback event is dropped from the queue. Everything else is
  written exactly once as before.
* The same holds for a raw event the workflow cannot read or consolidate (the raw-events table and
  the fallback queue may hold anything: a manual write, an older redirect's bug). Each item read is
  parsed on its own and checked (``batch.fault``) before any batch counts it: a batch updates the
  carried items in place, so it must not fail halfway. A poison event is quarantined with its item,
  key and error, once (a run that reads it again finds it kept: after a crash, in the late-event
  window, redelivered from the queue); it gets no tracking log and counts nowhere, and its shard's
  checkpoint moves past it with the batch it came in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pynamodb.models import Model

from functions.consolidate import batch, erasure, merge, quarantine
from functions.consolidate.store import (
    FINISH,
    MERGED,
    MERGING,
    PARTIAL_SPREAD,
    WORK,
    LockLost,
    PendingBatch,
    Refused,
    SavedSlice,
    Unreadable,
    WorkflowState,
    WorkflowStore,
    WriteRefused,
    decode_items,
    encode_items,
    raw_event,
    raw_key,
)
from functions.shared import raw_events, timeutil
from functions.shared.models import (
    RECIPIENT_LOG_PAGE_PREFIX,
    RECIPIENT_STATE_PREFIX,
    DeliveryStatsModel,
    QuarantineModel,
    RawEventModel,
    RunModel,
    TrackedUrlModel,
    TrackingLogModel,
)
from functions.shared.observability import logger

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
MEASURED_MARGIN = 0.2  # see _Carried.too_big
MAX_KNOWN_ITEMS = 50_000  # indicator items kept in memory after a flush, to spare reading them again
SAFETY_MARGIN_MS = 60_000  # stop taking new batches when less than this remains of the invocation
# How long after its start a run's workers take new batches (a worker stopped by its invocation's limit
# before then is invoked again): below the lock's time, leaving the finisher its invocation. The deploy
# sets its own (MSGTRACK_RUN_BUDGET_SECONDS, infra/constants.py RUN_BUDGET).
RUN_BUDGET_SECONDS = 900
MAX_RUN_ERRORS = 20  # errors a run records (the run item stays small)


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


class _Budget:
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


@dataclass(frozen=True)
class Plan:
    """What the planner decided: the run's groups of shards, one per worker (none when skipped)."""

    run_id: str
    trigger: str
    skip: bool
    groups: list[list[str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "trigger": self.trigger,
            "skip": self.skip,
            "groups": [{"worker": n, "shards": shards} for n, shards in enumerate(self.groups)],
        }


@dataclass
class WorkResult:
    """What one worker did in the run (over all its invocations so far). ``errors`` and ``quarantined``
    carry its notes to the finisher. ``more``: it stopped at its invocation's time limit with its group
    not drained while the run's budget is not spent, so it is to be invoked again."""

    worker: int
    shards: list[str]
    events_processed: int
    status: str  # succeeded, failed
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    quarantined: int = 0
    more: bool = False

    def as_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "worker": self.worker,
            "shards": self.shards,
            "events_processed": self.events_processed,
            "status": self.status,
        }
        if self.error is not None:
            answer["error"] = self.error
        if self.errors:
            answer["errors"] = self.errors
        if self.quarantined:
            answer["quarantined"] = self.quarantined
        answer["more"] = self.more
        return answer

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkResult:
        return cls(
            worker=int(data.get("worker", 0)),
            shards=[str(shard) for shard in data.get("shards") or []],
            events_processed=int(data.get("events_processed") or 0),
            status=str(data.get("status") or "failed"),
            error=data.get("error"),
            errors=[str(note) for note in data.get("errors") or []],
            quarantined=int(data.get("quarantined") or 0),
            more=data.get("more") is True,
        )


class TrackingWorkflow:
    """A run in steps (README "Scale-out"): ``plan`` takes the lock and splits the shards into
    groups, ``work`` consolidates one group (N of them in parallel), ``close`` closes the run for the
    workers, ``merge_slice`` merges one slice of what the workers share (16 of them in parallel),
    ``finish`` merges the statistics (and any slice that did not run), records the run and releases
    the lock. ``run`` does them all in one process."""

    def __init__(
        self,
        store: WorkflowStore,
        config: WorkflowConfig | None = None,
        clock: Callable[[], datetime] = timeutil.now,
    ) -> None:
        self._store = store
        self._config = config or WorkflowConfig()
        self._clock = clock

    def run(
        self,
        run_id: str,
        trigger: str,
        remaining_ms: Callable[[], int] | None = None,
        *,
        parallel: bool = False,
    ) -> RunModel:
        """Consolidate every raw event recorded before this run started; record the run."""
        plan = self.plan(run_id, trigger, remaining_ms)
        if plan.skip:
            return self._store_run_of(plan)
        failures: list[BaseException] = []

        def work(worker: int) -> WorkResult:
            try:
                return self.work(run_id, worker, plan.groups[worker], remaining_ms)
            except Exception as error:
                failures.append(error)
                return WorkResult(worker, plan.groups[worker], 0, "failed", _described(error))

        if parallel and len(plan.groups) > 1:
            with ThreadPoolExecutor(max_workers=len(plan.groups)) as pool:
                results = list(pool.map(work, range(len(plan.groups))))
        else:
            results = [work(worker) for worker in range(len(plan.groups))]
        try:
            slices = self.close(run_id)
            if parallel and slices:
                with ThreadPoolExecutor(max_workers=min(len(plan.groups), len(slices))) as pool:
                    list(pool.map(lambda spread: self.merge_slice(run_id, spread), slices))
            else:
                for spread in slices:
                    self.merge_slice(run_id, spread)
        except Exception as fault:
            # as the state machine does: a failed close or slice goes to Finish, which closes and
            # merges what is left itself, records the run and releases the lock whatever happens
            failures.append(fault)
        error = _described(failures[0]) if failures else None
        run = self.finish(run_id, results, error)
        if failures:
            raise failures[0]
        return run

    # --- plan -------------------------------------------------------------------------------

    def plan(self, run_id: str, trigger: str, remaining_ms: Callable[[], int] | None = None) -> Plan:
        started = self._clock()
        run = RunModel(
            sk=run_id, status="running", trigger=trigger, started_at=timeutil.iso(started), errors=[]
        )
        acquired = self._store.acquire_lock(run_id, started.timestamp(), self._config.lock_seconds)
        state = self._store.load_state()
        if not acquired and state.lock_owner != run_id:
            run.status = "skipped"
            run.finished_at = timeutil.iso(self._clock())
            run.errors = ["another run of the tracking workflow holds the lock"]
            self._store.save_run(run)
            logger.warning("tracking workflow run skipped: another run is active", extra={"run_id": run_id})
            return Plan(run_id, trigger, True, [])
        if state.run_id == run_id and state.phase == WORK:
            return Plan(run_id, trigger, False, state.groups)  # planned already: a retried plan step
        if state.run_id is not None and state.run_id != run_id and state.phase is not None:
            # A run whose finisher never ran or never finished: its workers' work is merged (once)
            # before anything else, and its record says it failed.
            self._finish_interrupted(state.run_id, run_id, state)
            state = self._store.load_state()
        self._store.save_run(run)
        planner = _Run(self._store, self._config, self._clock, run, _Budget(remaining_ms))
        planner.replay()
        groups = self._groups(state, started)
        planner.drain_fallback()
        drained = [sum(planner.drained.get(shard, 0) for shard in group) for group in groups]
        self._store.save_run(run)  # with what the planner quarantined, for the finisher to go on from
        self._store.open_run(run_id, trigger, timeutil.iso(started), groups, drained)
        logger.info("tracking workflow run planned", extra={"run_id": run_id, "workers": len(groups)})
        return Plan(run_id, trigger, False, groups)

    def _groups(self, state: WorkflowState, started: datetime) -> list[list[str]]:
        """The shards split into groups, one per worker; all in one group while a shard of an older
        sharding still holds events (its events of one recipient may be in any shard)."""
        current = raw_events.shards(self._config.raw_event_shards)
        older = sorted(({*state.checkpoints} | set(raw_events.legacy_shards())) - set(current))
        undrained = [shard for shard in older if not self._drained(shard, state, started)]
        if undrained:
            return [current + undrained]
        count = max(1, min(self._config.workers, len(current)))
        return [current[n::count] for n in range(count)]

    def _drained(self, shard: str, state: WorkflowState, started: datetime) -> bool:
        checkpoint = state.checkpoints.get(shard)
        if self._store.read_raw(shard, checkpoint, timeutil.iso(started) + "#~", 1):
            return False
        if checkpoint is None:
            return True
        grace = timedelta(seconds=self._config.late_event_grace_seconds)
        return timeutil.parse(checkpoint.split("#", 1)[0]) < started - grace

    # --- work -------------------------------------------------------------------------------

    def work(
        self,
        run_id: str,
        worker: int,
        shards: list[str],
        remaining_ms: Callable[[], int] | None = None,
        earlier: WorkResult | None = None,
    ) -> WorkResult:
        """Consolidate one group of shards up to the run's start, until the run's deadline. A retried
        worker goes on from its pending batch and checkpoints, so it counts nothing twice; a fault is
        raised (to be retried). A worker invoked again (``earlier``: what its previous invocations of
        the run returned) goes on the same way; its result holds their notes too."""
        state = self._store.load_state()
        if state.lock_owner != run_id or state.run_id != run_id or state.phase != WORK:
            return WorkResult(worker, shards, 0, "failed", f"run {run_id} is not open for work")
        known = next((group for group in state.groups if group == shards), None)
        if known is None or worker >= len(state.groups) or state.groups[worker] != shards:
            return WorkResult(
                worker, shards, 0, "failed", f"worker {worker} is not planned with these shards"
            )
        notes = [note for note in (earlier.errors if earlier else []) if note != STOPPED_EARLY]
        run = RunModel(sk=run_id, status="running", started_at=str(state.run_started), errors=notes)
        deadline = timeutil.parse(str(state.run_started)) + timedelta(seconds=self._config.run_budget_seconds)
        budget = _Budget(remaining_ms, deadline, self._clock)
        runner = _Run(
            self._store, self._config, self._clock, run, budget, worker=worker, partial=len(state.groups) > 1
        )
        quarantined = earlier.quarantined if earlier else 0
        try:
            finished = runner.work(shards, str(state.run_started) + "#~")
        except LockLost as error:
            return WorkResult(worker, shards, 0, "failed", _described(error), list(run.errors), quarantined)
        events = self._store.load_worker(worker).events + _at(state.drained, worker)
        return WorkResult(
            worker,
            shards,
            events,
            "succeeded",
            None if finished else STOPPED_EARLY,
            list(dict.fromkeys(run.errors)),
            quarantined + int(run.quarantined or 0),
            more=not finished and not budget.run_spent(),
        )

    # --- finish -----------------------------------------------------------------------------

    def finish(
        self, run_id: str, results: list[WorkResult] | list[dict[str, Any]], error: str | None = None
    ) -> RunModel:
        """Merge the workers' shared items, record the run (failed with ``error`` or a failed worker),
        release the lock. Whatever failed, what the workers flushed is kept and counted once."""
        work = [r if isinstance(r, WorkResult) else WorkResult.from_dict(r) for r in results]
        state = self._store.load_state()
        run = self._store.load_run(run_id) or RunModel(
            sk=run_id, trigger=state.trigger, started_at=timeutil.iso(self._clock())
        )
        run.status, run.errors = "running", list(run.errors or [])
        if state.lock_owner != run_id or state.run_id != run_id:
            run.status = "failed"
            run.errors = [f"run {run_id} no longer holds the tracking workflow lock"]
            run.finished_at = timeutil.iso(self._clock())
            self._store.save_run(run)
            return run
        try:
            counts = self._close(run_id, run_id, state, run)
        except Exception as fault:
            run.status = "failed"
            run.errors = [*run.errors, _described(fault)][:MAX_RUN_ERRORS]
            run.finished_at = timeutil.iso(self._clock())
            self._store.save_run(run)
            self._store.release_lock(run_id)
            raise
        by_worker = {result.worker: result for result in work}
        failed = [by_worker[n].error or "failed" for n in by_worker if by_worker[n].status != "succeeded"]
        missing = [n for n in range(len(state.groups)) if n not in by_worker]
        notes = [note for result in work for note in result.errors]
        stopped = [result.error for result in work if result.status == "succeeded" and result.error]
        run.workers = [
            {
                "shards": group,
                "events_processed": counts[n],
                "status": by_worker[n].status if n in by_worker else "failed",
            }
            for n, group in enumerate(state.groups)
        ]
        run.events_processed = sum(counts)
        run.quarantined = int(run.quarantined or 0) + sum(result.quarantined for result in work)
        errors = ([error] if error else []) + failed + [f"worker {n} did not report" for n in missing]
        # a worker's own notes already name its early stop: each text once
        run.errors = list(dict.fromkeys([*errors, *run.errors, *notes, *sorted(set(stopped))]))[
            :MAX_RUN_ERRORS
        ]
        run.status = "failed" if errors else "succeeded"
        if run.status == "succeeded" and not stopped:
            erasure.erase_requested(self._store)
        run.finished_at = timeutil.iso(self._clock())
        self._store.save_run(run)
        self._store.release_lock(run_id)
        if run.status == "failed":
            logger.error("tracking workflow run failed", extra={"run_id": run_id, "errors": run.errors})
        return run

    def _close(self, run_id: str, owner: str, state: WorkflowState, run: RunModel | None = None) -> list[int]:
        """Close the run ``run_id`` for its workers, apply their pending batches, merge their partial
        items (once); the events each worker consolidated. ``owner`` holds the lock."""
        run = run or RunModel(sk=run_id, status="failed", started_at=str(state.run_started), errors=[])
        self._store.renew_lock(owner, self._clock().timestamp(), self._config.lock_seconds)
        if state.phase == WORK:
            self._store.set_phase(owner, FINISH)
        groups = state.groups
        partial = len(groups) > 1
        finisher = _Run(self._store, self._config, self._clock, run, _Budget(None), owner=owner)
        for worker in range(len(groups)):
            self._replayer(run, run_id, owner, worker, partial).replay()
        if partial and state.phase != MERGED:
            if state.phase != MERGING:
                views: list[Model] = []
                corrections: dict[str, list[int]] = {}
                for spread in range(PARTIAL_SPREAD):  # each slice a step of its own unless it failed
                    slice_views, slice_corrections = self._merge_slice(run_id, len(groups), spread, finisher)
                    views += slice_views
                    for delivery_id, (found, human) in slice_corrections.items():
                        total = corrections.setdefault(delivery_id, [0, 0])
                        total[0], total[1] = total[0] + found, total[1] + human
                merged = merge.merge_stats(views, corrections, self._store.load_indicators)
                self._store.save_merge(owner, run_id, _pages(merged))
            for page in self._store.load_merge(run_id):
                finisher.put_merged(decode_items(page))
        if state.phase != MERGED:
            self._store.set_phase(owner, MERGED)
        if partial:
            for worker in range(len(groups)):
                self._store.delete_partials(run_id, worker)
            self._store.delete_slices(run_id)
            self._store.delete_merge(run_id)
        counts = []
        for worker in range(len(groups)):
            slot = self._store.load_worker(worker)
            counts.append((slot.events if slot.run_id == run_id else 0) + _at(state.drained, worker))
        return counts

    # --- the merge's slices (README "Scale-out") ------------------------------------------------

    def close(self, run_id: str) -> list[int]:
        """Close the run for its workers and apply the pending batches they left, so that the
        slices of the merge read every partial item; the slices to merge (none with one worker)."""
        state = self._store.load_state()
        if state.lock_owner != run_id or state.run_id != run_id or state.phase not in (WORK, FINISH):
            return []
        self._store.renew_lock(run_id, self._clock().timestamp(), self._config.lock_seconds)
        if state.phase == WORK:
            self._store.set_phase(run_id, FINISH)
        run = RunModel(sk=run_id, status="running", started_at=str(state.run_started), errors=[])
        for worker in range(len(state.groups)):
            self._replayer(run, run_id, run_id, worker, len(state.groups) > 1).replay()
        return list(range(PARTIAL_SPREAD)) if len(state.groups) > 1 else []

    def merge_slice(self, run_id: str, spread: int) -> None:
        """Merge slice ``spread`` of a closed run's partial items (every person, URL row, hour and
        click streams whose partial partition is ``spread``) and put them, once: the merge is saved
        first, and a retried slice puts the saved one again. The finisher merges the statistics."""
        state = self._store.load_state()
        if state.lock_owner != run_id or state.run_id != run_id or state.phase != FINISH:
            return  # not closed yet, or merged already: its partial items may be gone
        run = RunModel(sk=run_id, status="running", started_at=str(state.run_started), errors=[])
        writer = _Run(self._store, self._config, self._clock, run, _Budget(None), owner=run_id)
        self._merge_slice(run_id, len(state.groups), spread, writer)

    def _merge_slice(
        self, run_id: str, workers: int, spread: int, writer: _Run
    ) -> tuple[list[Model], dict[str, list[int]]]:
        """The slice merged, saved and put (each once); its statistics copies and person corrections."""
        saved = self._store.load_slice(run_id, spread)
        if saved is None:
            parts = [self._store.slice_partials(run_id, worker, spread) for worker in range(workers)]
            items, views, corrections = merge.merge_slice(parts, self._store.load_indicators)
            summary = json.dumps(
                {"views": [view.serialize() for view in views], "corrections": corrections}
            ).encode()
            self._store.save_slice(run_id, spread, _pages(items), summary)
            saved = SavedSlice(summary, put=False)
            # saved, the slice's partial items are needed no more: deleted here, side by side with
            # the other slices, rather than by the finisher (as many deletes as puts)
            self._store.delete_slice_partials(run_id, workers, spread)
        if not saved.put:
            for page in self._store.slice_pages(run_id, spread):
                writer.put_merged(decode_items(page))
            self._store.slice_put(run_id, spread)
        found = json.loads(saved.summary)
        stats: list[Model] = [DeliveryStatsModel.from_raw_data(view) for view in found["views"]]
        return stats, {str(d): [int(n) for n in c] for d, c in found["corrections"].items()}

    def _replayer(self, run: RunModel, run_id: str, owner: str, worker: int, partial: bool) -> _Run:
        return _Run(
            self._store,
            self._config,
            self._clock,
            run,
            _Budget(None),
            worker=worker,
            partial=partial,
            owner=owner,
            replaying_for=run_id,
        )

    def _finish_interrupted(self, run_id: str, owner: str, state: WorkflowState) -> None:
        run = self._store.load_run(run_id)
        if state.phase == MERGED and (run is None or run.status != "running"):
            return  # finished
        logger.warning("finishing an interrupted run", extra={"interrupted_run": run_id})
        counts = self._close(run_id, owner, state)
        if run is None or run.status != "running":
            return
        run.status = "failed"
        run.errors = [*(run.errors or []), f"interrupted; what its workers flushed was merged by run {owner}"]
        run.events_processed = sum(counts)
        run.workers = [
            {"shards": group, "events_processed": counts[n], "status": "failed"}
            for n, group in enumerate(state.groups)
        ]
        run.finished_at = timeutil.iso(self._clock())
        self._store.save_run(run)

    def _store_run_of(self, plan: Plan) -> RunModel:
        run = self._store.load_run(plan.run_id)
        assert run is not None  # the planner recorded the skipped run
        return run


STOPPED_EARLY = "stopped early to stay within the time limit"
MAX_PAGE_BYTES = 300_000  # a page of merged items, an item of the workflow table (400 KB at most)


def _pages(items: list[Model]) -> list[bytes]:
    """The merged items in pages under DynamoDB's item size."""
    pages: list[bytes] = []
    chunk = 200
    start = 0
    while start < len(items):
        page = encode_items(items[start : start + chunk])
        if len(page) > MAX_PAGE_BYTES and chunk > 1:
            chunk = max(1, chunk // 2)
            continue
        pages.append(page)
        start += chunk
    return pages


def _at(values: list[int], index: int) -> int:
    return values[index] if index < len(values) else 0


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class _Carried:
    """What the run has consolidated since its last flush, held in memory until the flush.

    ``items`` are the indicator items the run knows, as stored plus its changes since the flush
    (``batch.consolidate`` updates them in place); ``absent`` the keys it found missing.
    """

    def __init__(self) -> None:
        self.items: dict[batch.StateKey, Model] = {}
        self.absent: set[batch.StateKey] = set()
        self.changed: set[batch.StateKey] = set()
        # by key: a log rewritten by a later batch (the honeypot burst) is put once, as last computed
        self.held_logs: dict[batch.LogKey, TrackingLogModel] = {}
        self.checkpoints: dict[str, str] = {}
        self.events = 0
        self._measured = (0, 0, 0)  # (items and logs carried, events, encoded bytes) at the last measure
        self._bytes_per_entry: float | None = None  # encoded bytes per item or log, at the last flush

    def __len__(self) -> int:
        return len(self.changed) + len(self.held_logs)

    def is_empty(self) -> bool:
        return not (self.changed or self.held_logs or self.checkpoints or self.events)

    def view(
        self,
        keys: Iterable[batch.StateKey],
        load: Callable[[list[batch.StateKey]], Mapping[batch.StateKey, Model]],
    ) -> dict[batch.StateKey, Model]:
        """The items of ``keys`` that exist, loading those the run has not seen yet."""
        keys = list(keys)
        unknown = [key for key in keys if key not in self.items and key not in self.absent]
        if unknown:
            found = load(unknown)
            self.items.update(found)
            self.absent.update(key for key in unknown if key not in found)
        return {key: self.items[key] for key in keys if key in self.items}

    def take(self, outcome: batch.Outcome, *, hold_logs: bool) -> list[TrackingLogModel]:
        """Carry a batch's indicator items; its tracking logs to put now (none if held)."""
        logs: list[TrackingLogModel] = []
        for item in outcome.items:
            if isinstance(item, TrackingLogModel):
                logs.append(item)
                continue
            key = (str(item.delivery_id), str(item.sk))  # type: ignore[attr-defined]
            self.items[key] = item
            self.absent.discard(key)
            self.changed.add(key)
        self.events += outcome.events
        # Behind a checkpoint a tracking log means "counted as it says": a log rewritten with the
        # counts it moved goes with them through the pending batch.
        for log in outcome.rewritten:
            self.held_logs[_key(log)] = log
        if hold_logs:
            self.held_logs.update((_key(log), log) for log in logs)
            return []
        return logs

    def pending(self, seq: int) -> PendingBatch:
        items: list[Model] = [self.items[key] for key in sorted(self.changed)]
        return PendingBatch(seq, dict(self.checkpoints), self.events, items + list(self.held_logs.values()))

    def too_big(self, seq: int, max_bytes: int) -> bool:
        """Whether the pending batch is encoded past ``max_bytes``.

        Encoding all of it after every batch would cost more than the batches. After a flush, the run
        knows what an item or a log of its pending batches weighs encoded (the flush encodes its pending
        batch anyway), so it estimates from the count alone. Before its first flush it measures: again
        only once the items or the events carried have grown fourfold since the last measure, or when
        growing the last measure by as much as either (the items' sizes grow with both) passes the bound;
        a measure within ``MEASURED_MARGIN`` of the bound flushes already, or every batch after it would
        measure again.
        """
        if self._bytes_per_entry is not None:
            return len(self) * self._bytes_per_entry > max_bytes
        items, events, encoded = self._measured
        growth = max(len(self) / items, self.events / events) if items and events else float("inf")
        if growth < 4 and encoded * growth <= max_bytes:
            return False
        size = len(self.pending(seq).encode())
        self._measured = (len(self), self.events, size)
        return size > max_bytes * (1 - MEASURED_MARGIN)

    def forget(self, key: batch.StateKey) -> None:
        """The run's copy of this item was not written: the stored one is read again when next needed."""
        self.items.pop(key, None)
        self.absent.discard(key)

    def flushed(self, encoded_bytes: int) -> None:
        """The pending batch (``encoded_bytes`` long) is applied: the items as held are the stored ones."""
        if len(self):
            self._bytes_per_entry = encoded_bytes / len(self)
        self.changed.clear()
        self.held_logs.clear()
        self.checkpoints.clear()
        self.events = 0
        self._measured = (0, 0, 0)
        if len(self.items) > MAX_KNOWN_ITEMS:
            self.items.clear()
            self.absent.clear()


class _Run:
    """One step's work, holding the lock: the planner's (the fallback queue, the shared pending
    batch an older version left), a worker's (its group of shards, with its own pending batch) or the
    finisher's (a worker's pending batch again, the merged items).

    A worker of a run with several (``partial``) writes the items every recipient of a delivery adds
    to (statistics, URL rows, hours, click streams, persons) as its partial items of the run, which
    the finisher merges (``merge.py``); the state of its own recipients and their tracking logs it
    writes as they are.
    """

    def __init__(
        self,
        store: WorkflowStore,
        config: WorkflowConfig,
        clock: Callable[[], datetime],
        run: RunModel,
        budget: _Budget,
        *,
        worker: int | None = None,
        partial: bool = False,
        owner: str | None = None,
        replaying_for: str | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._run = run
        self._budget = budget
        self._worker = worker
        self._partial = partial
        self._lock_owner = owner or str(run.sk)
        self._run_id = replaying_for or str(run.sk)
        self._open_only = replaying_for is None  # a worker writes only while its run is open
        self._urls: dict[tuple[str, str], TrackedUrlModel | None] = {}
        self._loaded_deliveries: set[str] = set()
        self._deleted_deliveries: set[str] = set()
        self._state: WorkflowState | None = None
        self._carried = _Carried()
        self.drained: dict[str, int] = {}  # events consolidated from the fallback queue, by shard

    @property
    def _owner(self) -> str:
        return self._lock_owner

    def replay(self) -> None:
        """Apply the pending batch an interrupted step left (again, if need be)."""
        self._state = self._store.load_state()
        if self._worker is None:
            pending = self._state.pending
        else:
            slot = self._store.load_worker(self._worker)
            pending = slot.pending if slot.run_id == self._run_id else None
        if pending is not None:
            logger.info("replaying the pending batch of an interrupted step", extra={"seq": pending.seq})
            self._finish(pending)

    def work(self, shards: list[str], upto: str) -> bool:
        """Consolidate ``shards`` up to ``upto``; False when the time budget ran out first."""
        assert self._worker is not None
        self._store.start_worker(self._run_id, self._worker)
        self.replay()
        assert self._state is not None
        mine = set(shards)
        for shard, checkpoint in sorted(self._state.checkpoints.items()):
            if shard in mine:
                self._consolidate_late_events(shard, checkpoint)
        finished = self._consolidate_shards(upto, shards)
        self._flush()  # on an error, nothing: what the run carries is consolidated again next time
        if not finished:
            self._run.errors = [*self._run.errors, STOPPED_EARLY]
            logger.warning("tracking workflow stopped at a checkpoint before the time limit")
        return finished

    def put_merged(self, items: list[Model]) -> None:
        self._put(items)

    def drain_fallback(self) -> None:
        self._state = self._store.load_state()
        self._drain_fallback()

    def _drain_fallback(self) -> None:
        """Raw events the redirect handed to the fallback queue go back into the raw-events table.

        The put is of the very item the redirect tried to write, so it is harmless if that write
        landed after all. An event behind its shard's checkpoint will never be read from the table
        again: it is consolidated here, unless a tracking log shows it already was, and flushed
        before its message is deleted.
        """
        assert self._state is not None
        drained = 0
        while not self._budget.exhausted():
            messages = self._store.receive_fallback(10)
            if not messages:
                break
            behind: dict[tuple[str, str], RawEventModel] = {}
            stored: list[RawEventModel | Unreadable] = []
            refused: list[Unreadable] = []
            for message in messages:
                if message.error is not None:
                    refused.append(Unreadable(*_body_key(message.item), message.item, message.error))
                    continue
                try:
                    self._store.put_raw(message.item)
                except WriteRefused as error:
                    refused.append(Unreadable(*raw_key(message.item), message.item, str(error)))
                    continue
                stored.append(raw_event(message.item))
            self._quarantine_raw(refused)
            for event in self._readable(stored):
                checkpoint = self._state.checkpoints.get(str(event.shard))
                if checkpoint is not None and event.sk <= checkpoint:
                    behind[batch.log_key(event)] = event
            if behind:
                logged = self._store.logged(behind)
                fresh = [event for key, event in behind.items() if key not in logged]
                if fresh:
                    self._renew_lock()
                    self._consolidate(fresh, logs_now=False)
                    self._flush()
                    for event in fresh:
                        self.drained[str(event.shard)] = self.drained.get(str(event.shard), 0) + 1
            self._store.delete_fallback([m.receipt for m in messages])
            drained += len(messages)
        if drained:
            logger.info("drained raw events from the fallback queue", extra={"count": drained})

    def _consolidate_shards(self, upto: str, shards: list[str]) -> bool:
        """Read ``shards`` up to ``upto`` in rounds; False when the time budget ran out first."""
        assert self._state is not None
        positions: dict[str, str | None] = {shard: self._state.checkpoints.get(shard) for shard in shards}
        while positions:
            self._renew_lock()
            for shard, after in list(positions.items()):
                if self._budget.exhausted():
                    return False
                read = self._store.read_raw(shard, after, upto, self._config.batch_size)
                if not read:
                    del positions[shard]
                    continue
                positions[shard] = read[-1].sk
                events = self._readable(read)
                if events:
                    self._consolidate(events, logs_now=True)
                self._carried.checkpoints[shard] = read[-1].sk  # past the quarantined events too
                self._flush_if_full()
        return True

    def _consolidate_late_events(self, shard: str, checkpoint: str) -> None:
        """Events timed before the checkpoint that became visible after it was taken."""
        at = timeutil.parse(checkpoint.split("#", 1)[0])
        after = timeutil.iso(at - timedelta(seconds=self._config.late_event_grace_seconds))
        while True:
            read = self._store.read_raw(shard, after, checkpoint, self._config.batch_size)
            if not read:
                return
            after = read[-1].sk
            events = self._readable(read)
            if not events:
                continue
            logged = self._store.logged(batch.log_key(e) for e in events)
            late = [e for e in events if batch.log_key(e) not in logged]
            if late:
                logger.info("consolidating late raw events", extra={"shard": shard, "count": len(late)})
                self._renew_lock()
                self._consolidate(late, logs_now=False)
                self._flush_if_full()

    def _readable(self, read: list[RawEventModel | Unreadable]) -> list[RawEventModel]:
        """The raw events the workflow can consolidate; it quarantines the others (once), so that one
        poison event does not fail every run: its checkpoint moves past it like past any other."""
        events: list[RawEventModel] = []
        poison: list[Unreadable] = []
        for entry in read:
            if isinstance(entry, Unreadable):
                poison.append(entry)
                continue
            error = batch.fault(entry, self._config.log_ttl_days)
            if error is None:
                events.append(entry)
            else:
                poison.append(
                    Unreadable(str(entry.shard), str(entry.sk), entry.serialize(null_check=False), error)
                )
        self._quarantine_raw(poison)
        return events

    def _consolidate(self, events: list[RawEventModel], *, logs_now: bool) -> None:
        """Count ``events`` in the carried items; put their tracking logs now or hold them for the flush."""
        self._load_urls(events)
        loaded = self._carried.view(batch.state_keys(events), self._load_indicators)
        earlier = self._earlier_logs(batch.logs_to_recheck(events, loaded))
        if earlier:
            more = batch.recheck_keys(earlier.values()) - loaded.keys()
            loaded.update(self._carried.view(more, self._load_indicators))
        domains = self._domains(events, loaded)
        outcome = batch.consolidate(
            events,
            self._urls,
            loaded,
            domains,
            self._config.log_ttl_days,
            self._deleted_deliveries,
            earlier,
        )
        logs = self._carried.take(outcome, hold_logs=not logs_now)
        if logs:
            self._put(logs)

    def _earlier_logs(self, keys: set[batch.LogKey]) -> dict[batch.LogKey, TrackingLogModel]:
        """The tracking logs a honeypot hit may reclassify: those held since the last flush as held,
        the others as stored (a log not found is gone: expired or erased)."""
        if not keys:
            return {}
        held = self._carried.held_logs
        found = {key: held[key] for key in keys if key in held}
        stored = sorted(keys - found.keys())
        if stored:
            found.update(self._store.load_logs(stored))
        return found

    def _flush_if_full(self) -> None:
        assert self._state is not None
        if len(self._carried) >= self._config.max_carried_items or self._carried.too_big(
            self._state.batch_seq + 1, self._config.max_pending_bytes
        ):
            self._flush()

    def _load_indicators(self, keys: list[batch.StateKey]) -> dict[batch.StateKey, Model]:
        """Indicator items as this step knows them: a worker's partial items first (a retried worker
        goes on from what it flushed), the stored ones otherwise."""
        if not self._partial:
            return dict(self._store.load_indicators(keys))
        shared = [key for key in keys if not _owned(key)]
        found = self._store.load_partials(self._run_id, self._worker or 0, shared) if shared else {}
        rest = [key for key in keys if key not in found]
        if rest:
            found.update(self._store.load_indicators(rest))
        return found

    def _flush(self) -> None:
        """Write what the run carries, through a pending batch that also moves the checkpoints."""
        assert self._state is not None
        if self._carried.is_empty():
            return
        pending = self._carried.pending(self._next_seq())
        encoded = len(pending.encode())  # kept by the batch: saving it does not encode it again
        if self._worker is None:
            self._store.save_pending(self._owner, pending)
        else:
            self._store.save_worker_pending(self._owner, self._worker, pending)
        self._finish(pending)
        self._carried.flushed(encoded)

    def _next_seq(self) -> int:
        assert self._state is not None
        if self._worker is None:
            return self._state.batch_seq + 1
        return self._store.load_worker(self._worker).seq + 1

    def _finish(self, pending: PendingBatch) -> None:
        """Apply a pending batch's writes (again, if need be) and move its checkpoints."""
        assert self._state is not None
        self._put(pending.items, seq=pending.seq)
        if self._worker is None:
            self._store.complete_pending(self._owner, pending)
            self._state.batch_seq = pending.seq
            self._state.pending = None
        else:
            self._store.complete_worker_pending(self._owner, self._worker, pending, open_only=self._open_only)
        self._state.checkpoints.update(pending.checkpoints)
        self._run.events_processed = int(self._run.events_processed) + pending.events

    def _renew_lock(self) -> None:
        self._store.renew_lock(self._owner, self._clock().timestamp(), self._config.lock_seconds)

    def _put(self, items: list[Any], seq: int | None = None) -> None:
        """Put items; quarantine those DynamoDB refuses for what they hold, and go on."""
        if self._partial:
            shared = [
                item for item in items if not isinstance(item, TrackingLogModel) and not _owned(_key(item))
            ]
            if shared:
                self._store.put_partials(self._run_id, self._worker or 0, shared)
                items = [item for item in items if isinstance(item, TrackingLogModel) or _owned(_key(item))]
        refused = self._store.put_items(items)
        if refused:
            self._quarantine(refused, seq)

    def _quarantine(self, refused: list[Refused], seq: int | None) -> None:
        # Behind a checkpoint a tracking log means "counted": a refused one's bare facts keep meaning it.
        logs = [entry.item for entry in refused if isinstance(entry.item, TrackingLogModel)]
        bare_refused = (
            {_key(entry.item) for entry in self._store.put_items([quarantine.bare_log(log) for log in logs])}
            if logs
            else set()
        )
        kept: list[QuarantineModel] = []
        for entry in refused:
            key = _key(entry.item)
            if isinstance(entry.item, TrackingLogModel):
                instead = None if key in bare_refused else "its bare tracking log (no url, label, amount)"
                suffix = ""  # one per event, however often it is refused
            else:
                self._carried.forget(key)
                instead = None
                suffix = f"#{seq}"  # one per pending batch: its replay rewrites the same
            model = type(entry.item).__name__
            kept.append(
                self._quarantined(entry.item.serialize(), model, (*key, suffix), entry.error, instead)
            )
        self._keep(kept)

    def _quarantine_raw(self, poison: list[Unreadable]) -> None:
        """Keep raw events the workflow cannot consolidate or write, each once: a run that reads one
        again (after a crash, in the late-event window, redelivered) finds it kept already."""
        if not poison:
            return
        table = quarantine.table_of(RawEventModel.__name__)
        # The same message may come twice in one receive; DynamoDB refuses a read naming a key twice.
        by_key = {quarantine.key_of(table, (p.shard, p.sk)): p for p in poison}
        kept = self._store.in_quarantine(by_key)
        self._keep(
            [
                self._quarantined(p.item, RawEventModel.__name__, (p.shard, p.sk, ""), p.error, None)
                for key, p in by_key.items()
                if key not in kept
            ]
        )

    def _quarantined(
        self, data: dict[str, Any], model: str, key: tuple[str, str, str], error: str, instead: str | None
    ) -> QuarantineModel:
        return quarantine.kept(data, model, key, error, instead, run_id=self._owner, at=self._clock())

    def _keep(self, quarantined: list[QuarantineModel]) -> None:
        if not quarantined:
            return
        self._store.quarantine(quarantined)
        self._run.quarantined = int(self._run.quarantined or 0) + len(quarantined)
        for item in quarantined:
            logger.error(
                "quarantined an item the workflow could not write or read",
                extra={
                    "table": item.table,
                    "key": item.key,
                    "error": item.error,
                    "bytes": int(item.item_bytes),
                },
            )
        notes = [f"quarantined {item.table} item {item.key}: {item.error[:200]}" for item in quarantined]
        self._run.errors = [*self._run.errors, *notes][:MAX_RUN_ERRORS]

    def _load_urls(self, events: Iterable[RawEventModel]) -> None:
        """The tracked URLs of each delivery seen for the first time in this run, and whether it is
        deleted (its record says so: a delivery without links is deleted too)."""
        new = {e.delivery_id for e in events} - self._loaded_deliveries
        if not new:
            return
        for delivery_id in sorted(new):
            for url in self._store.tracked_urls(delivery_id):
                self._urls[(delivery_id, str(url.url_id))] = url
        self._deleted_deliveries |= self._store.deleted_deliveries(sorted(new))
        self._loaded_deliveries |= new

    def _domains(
        self, events: list[RawEventModel], loaded: Mapping[batch.StateKey, object]
    ) -> dict[tuple[str, str], str | None]:
        """Email domains of recipients seen for the first time (for the domain breakdown)."""
        wanted: dict[str, set[str]] = {}
        for event in events:
            if not event.proof and batch.recipient_key(event.delivery_id, event.recipient_id) not in loaded:
                wanted.setdefault(event.delivery_id, set()).add(event.recipient_id)
        domains: dict[tuple[str, str], str | None] = {}
        for delivery_id, recipient_ids in wanted.items():
            for recipient_id, domain in self._store.message_domains(delivery_id, recipient_ids).items():
                domains[(delivery_id, recipient_id)] = domain
        return domains


def _body_key(item: dict[str, Any]) -> tuple[str, str]:
    """The quarantine key of a fallback message whose body is no raw event: the same body, the same key."""
    body = str(item.get("body", {}).get("S", ""))
    return ("fallback-queue", hashlib.sha256(body.encode()).hexdigest()[:32])


def _key(item: Any) -> tuple[str, str]:
    """An item's table key: (partition, sk) for a tracking log, (delivery_id, sk) for the others."""
    if isinstance(item, TrackingLogModel):
        return (str(item.partition), str(item.sk))
    return (str(item.delivery_id), str(item.sk))


def _owned(key: batch.StateKey) -> bool:
    """Whether an indicator item belongs to one recipient (and so to the one worker of its shard): their
    state, or a page of log keys it spilled."""
    return key[1].startswith((RECIPIENT_STATE_PREFIX, RECIPIENT_LOG_PAGE_PREFIX))


__all__ = ["LockLost", "TrackingWorkflow", "WorkflowConfig"]
