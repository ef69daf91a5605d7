"""One step's work on the stores, holding the lock: reading raw events, consolidating them in memory,
flushing through pending batches, quarantining what DynamoDB refuses (``workflow.py`` says why)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pynamodb.models import Model

from functions.consolidate import batch, quarantine
from functions.consolidate.carried import Carried, item_key
from functions.consolidate.config import MAX_RUN_ERRORS, STOPPED_EARLY, Budget, WorkflowConfig
from functions.consolidate.store import (
    PendingBatch,
    Refused,
    Unreadable,
    WorkflowState,
    WorkflowStore,
    WriteRefused,
    raw_event,
    raw_key,
)
from functions.shared import timeutil
from functions.shared.models import (
    RECIPIENT_LOG_PAGE_PREFIX,
    RECIPIENT_STATE_PREFIX,
    QuarantineModel,
    RawEventModel,
    RunModel,
    TrackedUrlModel,
    TrackingLogModel,
)
from functions.shared.observability import logger


class StepRun:
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
        budget: Budget,
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
        self._carried = Carried()
        self._applied: int | None = None  # items quarantined applying the pending batch at hand
        self.drained: dict[str, int] = {}  # events consolidated from the fallback queue, by shard
        self.next_shard: str | None = None  # where the rounds stopped, for the next invocation

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

    def work(self, shards: list[str], upto: str, start_at: str | None = None) -> bool:
        """Consolidate ``shards`` up to ``upto``, the rounds starting at ``start_at`` (where an earlier
        invocation's stopped); False when the time budget ran out first."""
        assert self._worker is not None
        self._store.start_worker(self._run_id, self._worker)
        self.replay()
        assert self._state is not None
        mine = set(shards)
        for shard, checkpoint in sorted(self._state.checkpoints.items()):
            if shard in mine:
                self._consolidate_late_events(shard, checkpoint)
        if start_at in mine:
            at = shards.index(start_at)
            shards = shards[at:] + shards[:at]
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
                    refused.append(Unreadable(*body_key(message.item), message.item, message.error))
                    continue
                try:
                    self._store.put_raw(message.item)
                except WriteRefused as error:
                    refused.append(Unreadable(*raw_key(message.item), message.item, str(error)))
                    continue
                stored.append(raw_event(message.item))
            self._quarantine_raw(refused)
            # An event ahead of its shard's checkpoint is read from the table by a worker, which
            # quarantines it if it is poison: counted by the step that moves the checkpoint past it.
            for event in self._readable([entry for entry in stored if self._behind(entry)]):
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

    def _behind(self, entry: RawEventModel | Unreadable) -> bool:
        assert self._state is not None
        checkpoint = self._state.checkpoints.get(str(entry.shard))
        return checkpoint is not None and str(entry.sk) <= checkpoint

    def _consolidate_shards(self, upto: str, shards: list[str]) -> bool:
        """Read ``shards`` up to ``upto`` in rounds; False when the time budget ran out first."""
        assert self._state is not None
        positions: dict[str, str | None] = {shard: self._state.checkpoints.get(shard) for shard in shards}
        while positions:
            self._renew_lock()
            for shard, after in list(positions.items()):
                if self._budget.exhausted():
                    self.next_shard = shard
                    return False
                read = self._store.read_raw(shard, after, upto, self._config.batch_size)
                if not read:
                    del positions[shard]
                    continue
                positions[shard] = read[-1].sk
                events = self._readable(read, ahead=True)
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

    def _readable(
        self, read: list[RawEventModel | Unreadable], *, ahead: bool = False
    ) -> list[RawEventModel]:
        """The raw events the workflow can consolidate; it quarantines the others (once), so that one
        poison event does not fail every run: its checkpoint moves past it like past any other.
        ``ahead``: read ahead of their checkpoint (``_quarantine_raw``)."""
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
        self._quarantine_raw(poison, ahead=ahead)
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
        shared = [key for key in keys if not owned(key)]
        if not shared:
            return dict(self._store.load_indicators(keys))
        # Both reads at once, rather than the stored items only once the partial ones are known: the
        # stored item of a key found among the partial ones is read for nothing, but not waited for.
        found, stored = self._store.load_partials_and_indicators(
            self._run_id, self._worker or 0, shared, keys
        )
        return {**stored, **found}

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
        self._applied = 0
        self._put(pending.items, seq=pending.seq)
        applied, self._applied = self._applied, None
        if self._worker is None:
            self._store.complete_pending(self._owner, pending, pending.quarantined + applied)
            self._state.batch_seq = pending.seq
            self._state.pending = None
        else:
            self._store.complete_worker_pending(
                self._owner,
                self._worker,
                pending,
                open_only=self._open_only,
                quarantined=pending.quarantined + applied,
            )
        self._state.checkpoints.update(pending.checkpoints)
        self._run.events_processed = int(self._run.events_processed) + pending.events

    def _renew_lock(self) -> None:
        self._store.renew_lock(self._owner, self._clock().timestamp(), self._config.lock_seconds)

    def _put(self, items: list[Any], seq: int | None = None) -> None:
        """Put items; quarantine those DynamoDB refuses for what they hold, and go on."""
        if self._partial:
            shared = [
                item for item in items if not isinstance(item, TrackingLogModel) and not owned(item_key(item))
            ]
            if shared:
                self._store.put_partials(self._run_id, self._worker or 0, shared)
                items = [
                    item for item in items if isinstance(item, TrackingLogModel) or owned(item_key(item))
                ]
        refused = self._store.put_items(items)
        if refused:
            self._quarantine(refused, seq)

    def _quarantine(self, refused: list[Refused], seq: int | None) -> None:
        # Behind a checkpoint a tracking log means "counted": a refused one's bare facts keep meaning it.
        logs = [entry.item for entry in refused if isinstance(entry.item, TrackingLogModel)]
        bare_refused = (
            {
                item_key(entry.item)
                for entry in self._store.put_items([quarantine.bare_log(log) for log in logs])
            }
            if logs
            else set()
        )
        kept: list[QuarantineModel] = []
        for entry in refused:
            key = item_key(entry.item)
            if isinstance(entry.item, TrackingLogModel):
                instead = None if key in bare_refused else "its bare tracking log (no url, label, amount)"
                suffix = ""  # one per event, however often it is refused
            else:
                self._carried.forget(key)
                instead = None
                # one per pending batch (its replay rewrites the same), or per run's merge: a merged
                # item refused again by a later run is kept beside this one, and counted in each
                suffix = f"#{seq}" if seq is not None else f"#merged#{self._run_id}"
            model = type(entry.item).__name__
            kept.append(
                self._quarantined(entry.item.serialize(), model, (*key, suffix), entry.error, instead)
            )
        self._keep(kept)

    def _quarantine_raw(self, poison: list[Unreadable], *, ahead: bool = False) -> None:
        """Keep raw events the workflow cannot consolidate or write, each once: a run that reads one
        again (in the late-event window, redelivered) finds it kept already.

        Read ahead of its checkpoint (``ahead``), a poison event is kept and counted whether or not it
        is kept already: no completed flush has moved past it, so no run counted it (one that kept it
        crashed before its flush), and the flush that moves past it counts it (once). Behind its
        checkpoint (the late-event window, the fallback queue), kept means counted: it is kept and
        counted in one transaction (``quarantine_counted``), so a step that crashed after keeping it
        has counted it, and a retry that finds it kept counts it no more."""
        if not poison:
            return
        table = quarantine.table_of(RawEventModel.__name__)
        # The same message may come twice in one receive; DynamoDB refuses a read naming a key twice.
        by_key = {quarantine.key_of(table, (p.shard, p.sk)): p for p in poison}
        kept = set() if ahead else self._store.in_quarantine(by_key)
        self._keep(
            [
                self._quarantined(p.item, RawEventModel.__name__, (p.shard, p.sk, ""), p.error, None)
                for key, p in by_key.items()
                if key not in kept
            ],
            counted=not ahead,
        )

    def _quarantined(
        self, data: dict[str, Any], model: str, key: tuple[str, str, str], error: str, instead: str | None
    ) -> QuarantineModel:
        return quarantine.kept(data, model, key, error, instead, run_id=self._owner, at=self._clock())

    def _keep(self, quarantined: list[QuarantineModel], *, counted: bool = False) -> None:
        """Keep items in quarantine. ``counted``: their count is saved with them (the worker's slot or
        the planners' count); otherwise it is durable only with the pending batch that holds it:
        applying one, or the next one to be flushed."""
        if not quarantined:
            return
        if counted:
            self._store.quarantine_counted(self._owner, self._worker, quarantined)
        else:
            self._store.quarantine(quarantined)
            if self._applied is not None:
                self._applied += len(quarantined)
            else:
                self._carried.quarantined += len(quarantined)
        # the step's own tally: the merge's writers (each slice's, the finisher's) save it with their
        # put marks; a planner's or a worker's is not read (their counts are made durable above)
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


def body_key(item: dict[str, Any]) -> tuple[str, str]:
    """The quarantine key of a fallback message whose body is no raw event: the same body, the same key."""
    body = str(item.get("body", {}).get("S", ""))
    return ("fallback-queue", hashlib.sha256(body.encode()).hexdigest()[:32])


def owned(key: batch.StateKey) -> bool:
    """Whether an indicator item belongs to one recipient (and so to the one worker of its shard): their
    state, or a page of log keys it spilled."""
    return key[1].startswith((RECIPIENT_STATE_PREFIX, RECIPIENT_LOG_PAGE_PREFIX))
