"""The tracking workflow: raw events in, tracking logs and indicators out, exactly once.

How exactly-once holds (see README "The tracking workflow"):

* One run at a time: a lock with an expiry in the workflow state item; every state write is
  conditional on still holding it.
* Each shard of the raw-events table is read from its checkpoint up to the run's start, in batches.
  A batch's writes are computed first (``batch.consolidate``), saved as the *pending batch*, then
  applied as whole-item puts, then the checkpoint moves and the pending batch is removed in one
  conditional update. A crash anywhere leaves either nothing or a pending batch, which the next run
  replays before anything else; replaying puts is harmless.
* Events may become visible a little after their timestamp (a slow write). Each run re-reads the
  last ``late_event_grace_seconds`` before every checkpoint and consolidates the events that have no
  tracking log yet, so such late events are counted by the next run, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.consolidate import batch, erasure
from functions.consolidate.store import LockLost, PendingBatch, WorkflowState, WorkflowStore
from functions.shared import raw_events, timeutil
from functions.shared.models import RawEventModel, RunModel, TrackedUrlModel
from functions.shared.observability import logger

BATCH_SIZE = 100
SAFETY_MARGIN_MS = 60_000  # stop taking new batches when less than this remains of the invocation


@dataclass(frozen=True)
class WorkflowConfig:
    log_ttl_days: int = 365
    late_event_grace_seconds: int = 300
    lock_seconds: int = 1200
    batch_size: int = BATCH_SIZE


class _Budget:
    def __init__(self, remaining_ms: Callable[[], int] | None) -> None:
        self._remaining_ms = remaining_ms

    def exhausted(self) -> bool:
        return self._remaining_ms is not None and self._remaining_ms() < SAFETY_MARGIN_MS


class TrackingWorkflow:
    def __init__(
        self,
        store: WorkflowStore,
        config: WorkflowConfig | None = None,
        clock: Callable[[], datetime] = timeutil.now,
    ) -> None:
        self._store = store
        self._config = config or WorkflowConfig()
        self._clock = clock

    def run(self, run_id: str, trigger: str, remaining_ms: Callable[[], int] | None = None) -> RunModel:
        """Consolidate every raw event recorded before this run started; record the run."""
        started = self._clock()
        run = RunModel(
            sk=run_id, status="running", trigger=trigger, started_at=timeutil.iso(started), errors=[]
        )
        if not self._store.acquire_lock(run_id, started.timestamp(), self._config.lock_seconds):
            run.status = "skipped"
            run.finished_at = timeutil.iso(self._clock())
            run.errors = ["another run of the tracking workflow holds the lock"]
            self._store.save_run(run)
            logger.warning("tracking workflow run skipped: another run is active", extra={"run_id": run_id})
            return run
        self._store.save_run(run)
        try:
            _Run(self._store, self._config, self._clock, run, _Budget(remaining_ms)).execute(started)
            run.status = "succeeded"
        except Exception as error:
            run.status = "failed"
            run.errors = [*run.errors, f"{type(error).__name__}: {error}"][:20]
            logger.exception("tracking workflow run failed", extra={"run_id": run_id})
            raise
        finally:
            run.finished_at = timeutil.iso(self._clock())
            self._store.save_run(run)
            self._store.release_lock(run_id)
        return run


class _Run:
    """One run's work, holding the lock."""

    def __init__(
        self,
        store: WorkflowStore,
        config: WorkflowConfig,
        clock: Callable[[], datetime],
        run: RunModel,
        budget: _Budget,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._run = run
        self._budget = budget
        self._urls: dict[tuple[str, str], TrackedUrlModel | None] = {}
        self._loaded_deliveries: set[str] = set()
        self._state: WorkflowState | None = None

    @property
    def _owner(self) -> str:
        return str(self._run.sk)

    def execute(self, started: datetime) -> None:
        self._state = self._store.load_state()
        if self._state.pending is not None:
            logger.info(
                "replaying the pending batch of an interrupted run", extra={"seq": self._state.pending.seq}
            )
            self._finish(self._state.pending)
        self._drain_fallback()
        upto = timeutil.iso(started) + "#~"  # every event whose time is not after the start
        for shard in raw_events.shards():
            if not self._consolidate_shard(shard, upto):
                self._run.errors = [*self._run.errors, "stopped early to stay within the time limit"]
                logger.warning("tracking workflow stopped at a checkpoint before the time limit")
                return
        erasure.erase_requested(self._store)

    def _drain_fallback(self) -> None:
        """Raw events the redirect handed to the fallback queue go back into the raw-events table.

        The put is of the very item the redirect tried to write, so it is harmless if that write
        landed after all. An event behind its shard's checkpoint will never be read from the table
        again: it is consolidated here, unless a tracking log shows it already was.
        """
        assert self._state is not None
        drained = 0
        while not self._budget.exhausted():
            messages = self._store.receive_fallback(10)
            if not messages:
                break
            behind: dict[tuple[str, str], RawEventModel] = {}
            for message in messages:
                self._store.put_raw(message.item)
                event = RawEventModel.from_raw_data(message.item)
                checkpoint = self._state.checkpoints.get(str(event.shard))
                if checkpoint is not None and event.sk <= checkpoint:
                    behind[(event.delivery_id, event.sk)] = event
            if behind:
                logged = self._store.logged(behind)
                fresh = [event for key, event in behind.items() if key not in logged]
                if fresh:
                    self._consolidate("fallback", fresh, None)
            self._store.delete_fallback([m.receipt for m in messages])
            drained += len(messages)
        if drained:
            logger.info("drained raw events from the fallback queue", extra={"count": drained})

    def _consolidate_shard(self, shard: str, upto: str) -> bool:
        assert self._state is not None
        checkpoint = self._state.checkpoints.get(shard)
        if checkpoint is not None:
            self._consolidate_late_events(shard, checkpoint)
        while not self._budget.exhausted():
            events = self._store.read_raw(shard, checkpoint, upto, self._config.batch_size)
            if not events:
                return True
            checkpoint = events[-1].sk
            self._consolidate(shard, events, checkpoint)
        return False

    def _consolidate_late_events(self, shard: str, checkpoint: str) -> None:
        """Events timed before the checkpoint that became visible after it was taken."""
        at = timeutil.parse(checkpoint.split("#", 1)[0])
        after = timeutil.iso(at - timedelta(seconds=self._config.late_event_grace_seconds))
        while True:
            events = self._store.read_raw(shard, after, checkpoint, self._config.batch_size)
            if not events:
                return
            after = events[-1].sk
            logged = self._store.logged((e.delivery_id, e.sk) for e in events)
            late = [e for e in events if (e.delivery_id, e.sk) not in logged]
            if late:
                logger.info("consolidating late raw events", extra={"shard": shard, "count": len(late)})
                self._consolidate(shard, late, None)

    def _consolidate(self, shard: str, events: list[RawEventModel], checkpoint: str | None) -> None:
        assert self._state is not None
        self._store.renew_lock(self._owner, self._clock().timestamp(), self._config.lock_seconds)
        self._load_urls(events)
        keys = batch.state_keys(events)
        loaded = self._store.load_indicators(keys)
        domains = self._domains(events, loaded)
        outcome = batch.consolidate(events, self._urls, loaded, domains, self._config.log_ttl_days)
        pending = PendingBatch(self._state.batch_seq + 1, shard, checkpoint, outcome.events, outcome.items)
        self._store.save_pending(self._owner, pending)
        self._finish(pending)

    def _finish(self, pending: PendingBatch) -> None:
        """Apply a pending batch's writes (again, if need be) and move its shard's checkpoint."""
        assert self._state is not None
        self._store.put_items(pending.items)
        self._store.complete_pending(self._owner, pending)
        self._state.batch_seq = pending.seq
        self._state.pending = None
        if pending.checkpoint is not None:
            self._state.checkpoints[pending.shard] = pending.checkpoint
        self._run.events_processed = int(self._run.events_processed) + pending.events

    def _load_urls(self, events: Iterable[RawEventModel]) -> None:
        for delivery_id in {e.delivery_id for e in events} - self._loaded_deliveries:
            for url in self._store.tracked_urls(delivery_id):
                self._urls[(delivery_id, str(url.url_id))] = url
            self._loaded_deliveries.add(delivery_id)

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


__all__ = ["LockLost", "TrackingWorkflow", "WorkflowConfig"]
