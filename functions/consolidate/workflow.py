"""The tracking workflow: raw events in, tracking logs and indicators out, exactly once.

Its steps are here (plan, work, close, merge a slice, finish: ``TrackingWorkflow``); a step's work on
the stores is ``runner.py``, what it carries in memory between flushes ``carried.py``, the settings
and a step's time ``config.py``.

How exactly-once holds (see README "The tracking workflow"):

* One run at a time: a lock with an expiry in the workflow state item; every state write is
  conditional on still holding it.
* A run (each worker, its group) reads the shards of the raw-events table (64 by default) in rounds,
  a batch of each shard per round, from its checkpoint up to the run's start. Each batch is computed
  (``batch.consolidate``) against the indicator items the run holds in memory: loaded once, updated
  batch after batch, written once per *flush*. A tracking log is a pure function of its raw event and
  tracked URL, so the logs of a batch are put straight away (a put repeated later is harmless).
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
  ``quarantined``, once: a step's count is saved with what makes it durable, a worker's with its pending
  batches, the merge's with its phase ``merged``, a raw event's kept from behind its checkpoint with its
  quarantine item (one transaction: a retry finds it kept and skips it), the planners' until the next
  run opens, and the record's count is set from them) and the run
  goes on: a refused tracking log is replaced by its bare facts (so it
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

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pynamodb.models import Model

from functions.consolidate import erasure, merge
from functions.consolidate.carried import MAX_KNOWN_ITEMS
from functions.consolidate.config import (
    BATCH_SIZE,
    MAX_CARRIED_ITEMS,
    MAX_PENDING_BYTES,
    MAX_RUN_ERRORS,
    RUN_BUDGET_SECONDS,
    SAFETY_MARGIN_MS,
    STOPPED_EARLY,
    Budget,
    WorkflowConfig,
)
from functions.consolidate.runner import StepRun
from functions.consolidate.store import (
    FINISH,
    MERGED,
    MERGING,
    PARTIAL_SPREAD,
    WORK,
    LockLost,
    SavedSlice,
    WorkflowState,
    WorkflowStore,
    decode_items,
    encode_items,
)
from functions.shared import log_chains, raw_events, timeutil
from functions.shared.models import DeliveryStatsModel, RunModel
from functions.shared.observability import logger


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
    """What one worker did in the run (over all its invocations so far). ``errors`` carry its notes to
    the finisher; ``events_processed`` and ``quarantined`` are its slot's counts, which the finisher
    reads from the slot itself (so does the next run's planner, finishing a run whose Finish never ran). ``more``: it stopped at its invocation's time limit with its group
    not drained while the run's budget is not spent, so it is to be invoked again; ``next_shard``: the
    shard its next invocation goes on at (its rounds go on where they stopped, rather than starting
    again at the group's first shard, so that no shard of the group lags)."""

    worker: int
    shards: list[str]
    events_processed: int
    status: str  # succeeded, failed
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    quarantined: int = 0
    more: bool = False
    next_shard: str | None = None

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
        if self.next_shard is not None:
            answer["next_shard"] = self.next_shard
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
            next_shard=str(data["next_shard"]) if data.get("next_shard") is not None else None,
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
        before = self._store.load_state()
        acquired = self._store.acquire_lock(run_id, started.timestamp(), self._config.lock_seconds)
        state = self._store.load_state()
        if acquired and before.lock_owner not in (None, run_id, state.run_id):
            # the lock's last holder never opened its run: its planner died (and its retries)
            self._fail_unopened(before.lock_owner, run_id)
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
        planner = StepRun(self._store, self._config, self._clock, run, Budget(remaining_ms))
        planner.replay()
        groups = self._groups(state, started)
        planner.drain_fallback()
        drained = [sum(planner.drained.get(shard, 0) for shard in group) for group in groups]
        # with the planner's notes, for the finisher to go on from; its count is not the record's: what
        # it quarantined is counted by the run that opens next (this one, unless it dies first)
        run.quarantined = 0
        self._store.save_run(run)
        # the run counts what the planners quarantined since the last run opened, as they saved it
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
        # Raw shard n feeds log chain n % LOG_CHAINS (both are the crc32 of delivery and recipient,
        # modulo their count, each a power of two), so shards n and n + LOG_CHAINS go to one worker:
        # no two workers write one chain. Older shards (above) may feed any chain, whichever worker
        # writes it too: the chain puts are conditional on each item's version, so a conflict is
        # read and merged again (``log_chain_store.write_logs``), never lost; they run alone anyway.
        lanes = min(len(current), log_chains.LOG_CHAINS)
        count = max(1, min(self._config.workers, lanes))
        return [
            [shard for n, shard in enumerate(current) if n % lanes % count == group] for group in range(count)
        ]

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
        budget = Budget(remaining_ms, deadline, self._clock)
        runner = StepRun(
            self._store, self._config, self._clock, run, budget, worker=worker, partial=len(state.groups) > 1
        )
        try:
            finished = runner.work(
                shards, str(state.run_started) + "#~", earlier.next_shard if earlier else None
            )
        except LockLost as error:
            quarantined = earlier.quarantined if earlier else 0
            return WorkResult(worker, shards, 0, "failed", _described(error), list(run.errors), quarantined)
        slot = self._store.load_worker(worker)  # what the worker counted in the run, all invocations
        return WorkResult(
            worker,
            shards,
            slot.events + _at(state.drained, worker),
            "succeeded",
            None if finished else STOPPED_EARLY,
            list(dict.fromkeys(run.errors)),
            slot.quarantined,
            more=not finished and not budget.run_spent(),
            next_shard=None if finished else runner.next_shard,
        )

    # --- finish -----------------------------------------------------------------------------

    def finish(
        self, run_id: str, results: list[WorkResult] | list[dict[str, Any]], error: str | None = None
    ) -> RunModel:
        """Merge the workers' shared items, record the run (failed with ``error`` or a failed worker),
        release the lock. Whatever failed, what the workers flushed is kept and counted once."""
        return self.finish_step(run_id, results, error).run

    def finish_step(
        self, run_id: str, results: list[WorkResult] | list[dict[str, Any]], error: str | None = None
    ) -> Finished:
        """``finish``, saying whether it recorded the run now or found it recorded already."""
        work = [r if isinstance(r, WorkResult) else WorkResult.from_dict(r) for r in results]
        state = self._store.load_state()
        run = self._store.load_run(run_id) or self._record_lost(run_id, state)
        if state.lock_owner != run_id or state.run_id != run_id:
            if run.status in ("succeeded", "failed") and run.finished_at:
                # recorded already (a retried Finish, or the next run's planner finished it)
                return Finished(run, recorded_now=False)
            run.status = "failed"
            lost = f"run {run_id} no longer holds the tracking workflow lock"
            run.errors = [*(run.errors or []), *([error] if error else []), lost][-MAX_RUN_ERRORS:]
            run.finished_at = timeutil.iso(self._clock())
            self._store.save_run(run)
            return Finished(run, recorded_now=True)
        run.status, run.errors = "running", list(run.errors or [])
        try:
            closed = self._close(run_id, run_id, state, run)
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
                "events_processed": closed.events[n],
                "status": by_worker[n].status if n in by_worker else "failed",
            }
            for n, group in enumerate(state.groups)
        ]
        run.events_processed = sum(closed.events)
        run.quarantined = closed.quarantined  # set from the durable counts: a retry writes the same
        errors = ([error] if error else []) + failed + [f"worker {n} did not report" for n in missing]
        # a worker's own notes already name its early stop: each text once
        run.errors = list(
            dict.fromkeys([*errors, *run.errors, *notes, *closed.notes, *sorted(set(stopped))])
        )[:MAX_RUN_ERRORS]
        run.status = "failed" if errors else "succeeded"
        if run.status == "succeeded" and not stopped:
            erasure.erase_requested(self._store)
        run.finished_at = timeutil.iso(self._clock())
        self._store.save_run(run)
        self._store.release_lock(run_id)
        if run.status == "failed":
            logger.error("tracking workflow run failed", extra={"run_id": run_id, "errors": run.errors})
        return Finished(run, recorded_now=True)

    def _record_lost(self, run_id: str, state: WorkflowState) -> RunModel:
        """The record of a run whose own is missing (deleted by hand): its trigger and start as the
        workflow's state holds them while it names the run, else unknown and now."""
        if state.run_id == run_id and state.run_started:
            return RunModel(sk=run_id, trigger=state.trigger, started_at=str(state.run_started))
        return RunModel(sk=run_id, started_at=timeutil.iso(self._clock()))

    def _close(self, run_id: str, owner: str, state: WorkflowState, run: RunModel | None = None) -> _Closed:
        """Close the run ``run_id`` for its workers, apply their pending batches, merge their partial
        items (once); what each worker consolidated, and what the run quarantined. ``owner`` holds
        the lock.

        Every count is read from where it is durable, so that any retry or takeover reads the same:
        the planner's in the state item, each worker's in its slot (moved with its pending batches),
        the merge's (its slices' put marks and the finisher's own puts) saved with the phase
        ``merged``, before the slices are deleted."""
        run = run or RunModel(sk=run_id, status="failed", started_at=str(state.run_started), errors=[])
        self._store.renew_lock(owner, self._clock().timestamp(), self._config.lock_seconds)
        if state.phase == WORK:
            self._store.set_phase(owner, FINISH)
        groups = state.groups
        partial = len(groups) > 1
        for worker in range(len(groups)):
            self._replayer(run, run_id, owner, worker, partial).replay()
        outcome = state.merge_outcome
        if state.phase != MERGED:
            outcome = self._merge(run_id, owner, state) if partial else _outcome(0, [])
            self._store.set_phase(owner, MERGED, outcome)
        if partial:  # each slice deleted its partial items before it was marked put (``_merge_slice``)
            self._store.delete_slices(run_id)
            self._store.delete_merge(run_id)
        merged = json.loads(outcome or b"{}")  # merged by an older version: nothing quarantined
        events, quarantined = [], state.plan_quarantined + int(merged.get("quarantined") or 0)
        for worker in range(len(groups)):
            slot = self._store.load_worker(worker)
            mine = slot.run_id == run_id
            events.append((slot.events if mine else 0) + _at(state.drained, worker))
            quarantined += slot.quarantined if mine else 0
        return _Closed(events, quarantined, [str(note) for note in merged.get("errors") or []])

    def _merge(self, run_id: str, owner: str, state: WorkflowState) -> bytes:
        """Merge the workers' partial items (the slices not merged yet, then the statistics) and put
        them; what their puts quarantined, as a slice's put mark says it."""
        groups = state.groups
        # each slice a step of its own unless it failed; saved, a slice is only read here
        slices = [self._merge_slice(run_id, owner, len(groups), spread) for spread in range(PARTIAL_SPREAD)]
        writes = RunModel(sk=run_id, status="running", errors=[])
        finisher = StepRun(self._store, self._config, self._clock, writes, Budget(None), owner=owner)
        if state.phase != MERGING:
            views: list[Model] = [view for merged in slices for view in merged.views]
            corrections: dict[str, list[int]] = {}
            for merged_slice in slices:
                for delivery_id, (found, human) in merged_slice.corrections.items():
                    total = corrections.setdefault(delivery_id, [0, 0])
                    total[0], total[1] = total[0] + found, total[1] + human
            merged = merge.merge_stats(views, corrections, self._store.load_indicators)
            self._store.save_merge(owner, run_id, _pages(merged))
        for page in self._store.load_merge(run_id):
            finisher.put_merged(decode_items(page))
        return _outcome(
            sum(merged_slice.quarantined for merged_slice in slices) + int(writes.quarantined or 0),
            [note for merged_slice in slices for note in merged_slice.notes] + list(writes.errors),
        )

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
        self._merge_slice(run_id, run_id, len(state.groups), spread)

    def _merge_slice(self, run_id: str, owner: str, workers: int, spread: int) -> _MergedSlice:
        """The slice merged, saved and put (each once); its statistics copies and person corrections,
        and what its put quarantined: saved with the mark that it was put, so that the finisher counts
        it once however often the slice was tried (``owner`` holds the lock)."""
        saved = self._store.load_slice(run_id, spread)
        if saved is None:
            parts = [self._store.slice_partials(run_id, worker, spread) for worker in range(workers)]
            items, views, corrections = merge.merge_slice(parts, self._store.load_indicators)
            summary = json.dumps(
                {"views": [view.serialize() for view in views], "corrections": corrections}
            ).encode()
            self._store.save_slice(run_id, spread, _pages(items), summary)
            saved = SavedSlice(summary, put=False)
        outcome = saved.outcome
        if not saved.put:
            # Saved, the slice's partial items are needed no more: deleted here, side by side with the
            # other slices, and again by a retry until the slice is marked put, so that a slice marked
            # put has none left and the finisher deletes no partial partition (it would query 16 per
            # worker, most of them emptied here already).
            self._store.delete_slice_partials(run_id, workers, spread)
            # A put refused is quarantined under the same key at every try: only the count of the try
            # that marks the slice put reaches the run.
            notes = RunModel(sk=run_id, status="running", errors=[])
            writer = StepRun(self._store, self._config, self._clock, notes, Budget(None), owner=owner)
            for page in self._store.slice_pages(run_id, spread):
                writer.put_merged(decode_items(page))
            outcome = _outcome(int(notes.quarantined or 0), list(notes.errors))
            self._store.slice_put(run_id, spread, outcome)
        found = json.loads(saved.summary)
        put = json.loads(outcome or b"{}")  # a slice marked put by an older version: nothing quarantined
        return _MergedSlice(
            [DeliveryStatsModel.from_raw_data(view) for view in found["views"]],
            {str(d): [int(n) for n in c] for d, c in found["corrections"].items()},
            int(put.get("quarantined") or 0),
            [str(note) for note in put.get("errors") or []],
        )

    def _replayer(self, run: RunModel, run_id: str, owner: str, worker: int, partial: bool) -> StepRun:
        return StepRun(
            self._store,
            self._config,
            self._clock,
            run,
            Budget(None),
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
        closed = self._close(run_id, owner, state)
        if run is None:
            return
        # Its record counts what its steps did, whoever finishes it: a run still running (its
        # execution stopped before Finish) or one whose Finish failed before its merge.
        errors = [*(run.errors or []), *closed.notes]
        if run.status == "running":
            errors.append(f"interrupted; what its workers flushed was merged by run {owner}")
            run.finished_at = timeutil.iso(self._clock())
            run.workers = [
                {"shards": group, "events_processed": closed.events[n], "status": "failed"}
                for n, group in enumerate(state.groups)
            ]
        run.status = "failed"
        run.errors = list(dict.fromkeys(errors))[-MAX_RUN_ERRORS:]
        run.events_processed = sum(closed.events)
        run.quarantined = closed.quarantined
        self._store.save_run(run)

    def _fail_unopened(self, run_id: str, owner: str) -> None:
        """A run whose planner died before it opened the run (its workers never started, what it
        quarantined is counted by the next run to open): its record, left running, says it failed."""
        run = self._store.load_run(run_id)
        if run is None or run.status != "running":
            return
        logger.warning("a run's planner stopped before it opened the run", extra={"interrupted_run": run_id})
        run.status = "failed"
        run.finished_at = timeutil.iso(self._clock())
        run.errors = [
            *(run.errors or []),
            f"interrupted while planning, before its workers started; run {owner} took the lock after it expired",
        ][-MAX_RUN_ERRORS:]
        self._store.save_run(run)

    def _store_run_of(self, plan: Plan) -> RunModel:
        run = self._store.load_run(plan.run_id)
        assert run is not None  # the planner recorded the skipped run
        return run


@dataclass(frozen=True)
class Finished:
    """What a Finish step did: the run's record, and whether this Finish completed it. False: a retried
    Finish found it recorded and its lock released already (by an earlier try, or by the next run's
    planner), so the run's metrics are not emitted again. A Finish that died after saving the record
    but before releasing the lock emitted nothing: its retry completes it and emits them."""

    run: RunModel
    recorded_now: bool


@dataclass(frozen=True)
class _Closed:
    """A closed run's counts, as durable: the events of each worker, the items the run quarantined
    (planner, workers, merge) and the merge's notes of them."""

    events: list[int]
    quarantined: int
    notes: list[str]


def _outcome(quarantined: int, notes: list[str]) -> bytes:
    """What a merge's puts quarantined, as saved (a slice's put mark, the merged phase)."""
    return json.dumps({"quarantined": quarantined, "errors": notes}).encode()


@dataclass(frozen=True)
class _MergedSlice:
    """A slice of the merge as saved: what the finisher merges and counts of it."""

    views: list[Model]
    corrections: dict[str, list[int]]
    quarantined: int
    notes: list[str]


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


__all__ = [
    "BATCH_SIZE",
    "MAX_CARRIED_ITEMS",
    "MAX_KNOWN_ITEMS",
    "MAX_PENDING_BYTES",
    "RUN_BUDGET_SECONDS",
    "SAFETY_MARGIN_MS",
    "STOPPED_EARLY",
    "Finished",
    "LockLost",
    "Plan",
    "TrackingWorkflow",
    "WorkResult",
    "WorkflowConfig",
]
