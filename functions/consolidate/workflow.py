"""The tracking workflow: raw events in, tracking logs and indicators out, exactly once.

How exactly-once holds (see README "The tracking workflow"):

* One run at a time: a lock with an expiry in the workflow state item; every state write is
  conditional on still holding it.
* The run reads the 16 shards of the raw-events table in rounds, a batch of each shard per round,
  from its checkpoint up to the run's start. Each batch is computed (``batch.consolidate``) against
  the indicator items the run holds in memory: loaded once, updated batch after batch, written once
  per *flush*. A tracking log is a pure function of its raw event and tracked URL, so the logs of a
  batch are put straight away (a put repeated later is harmless).
* Checkpoints move only at a flush: the changed indicator items and the new checkpoint of every
  shard read since the previous flush are saved as the *pending batch*, applied as whole-item puts,
  then the checkpoints move and the pending batch is removed in one conditional update. A crash
  before a flush loses only memory: the next run reads those events again from the old checkpoints
  and counts them once. A crash after leaves a pending batch, which the next run replays before
  anything else; replaying puts is harmless. A run flushes when what it carries nears a bound (items,
  and the pending batch's encoded size against DynamoDB's 400 KB item limit), when its time runs low,
  and at its end.
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.models import Model

from functions.consolidate import batch, erasure, quarantine
from functions.consolidate.store import (
    LockLost,
    PendingBatch,
    Refused,
    Unreadable,
    WorkflowState,
    WorkflowStore,
    WriteRefused,
    raw_event,
    raw_key,
)
from functions.shared import raw_events, timeutil
from functions.shared.models import (
    QuarantineModel,
    RawEventModel,
    RunModel,
    TrackedUrlModel,
    TrackingLogModel,
)
from functions.shared.observability import logger

BATCH_SIZE = 100  # raw events read from one shard at a time
MAX_CARRIED_ITEMS = 10_000  # changed indicator items (and held logs) a run carries before it flushes
# The pending batch is an attribute of the workflow state item, which DynamoDB caps at 400 KB: flush
# once it is encoded past this, which leaves room for the batch that took it there.
MAX_PENDING_BYTES = 200_000
MEASURED_MARGIN = 0.2  # see _Carried.too_big
MAX_KNOWN_ITEMS = 50_000  # indicator items kept in memory after a flush, to spare reading them again
SAFETY_MARGIN_MS = 60_000  # stop taking new batches when less than this remains of the invocation
MAX_RUN_ERRORS = 20  # errors a run records (the run item stays small)


@dataclass(frozen=True)
class WorkflowConfig:
    log_ttl_days: int = 365
    late_event_grace_seconds: int = 300
    lock_seconds: int = 1200
    batch_size: int = BATCH_SIZE
    max_carried_items: int = MAX_CARRIED_ITEMS
    max_pending_bytes: int = MAX_PENDING_BYTES


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
            run.errors = [*run.errors, f"{type(error).__name__}: {error}"][:MAX_RUN_ERRORS]
            logger.exception("tracking workflow run failed", extra={"run_id": run_id})
            raise
        finally:
            run.finished_at = timeutil.iso(self._clock())
            self._store.save_run(run)
            self._store.release_lock(run_id)
        return run


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
        self._deleted_deliveries: set[str] = set()
        self._state: WorkflowState | None = None
        self._carried = _Carried()

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
        for shard, checkpoint in sorted(self._state.checkpoints.items()):
            self._consolidate_late_events(shard, checkpoint)
        upto = timeutil.iso(started) + "#~"  # every event whose time is not after the start
        finished = self._consolidate_shards(upto)
        self._flush()  # on an error, nothing: what the run carries is consolidated again next time
        if not finished:
            self._run.errors = [*self._run.errors, "stopped early to stay within the time limit"]
            logger.warning("tracking workflow stopped at a checkpoint before the time limit")
            return
        erasure.erase_requested(self._store)

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
                    behind[(event.delivery_id, event.sk)] = event
            if behind:
                logged = self._store.logged(behind)
                fresh = [event for key, event in behind.items() if key not in logged]
                if fresh:
                    self._renew_lock()
                    self._consolidate(fresh, logs_now=False)
                    self._flush()
            self._store.delete_fallback([m.receipt for m in messages])
            drained += len(messages)
        if drained:
            logger.info("drained raw events from the fallback queue", extra={"count": drained})

    def _consolidate_shards(self, upto: str) -> bool:
        """Read every shard up to ``upto`` in rounds; False when the time budget ran out first."""
        assert self._state is not None
        positions: dict[str, str | None] = {
            shard: self._state.checkpoints.get(shard) for shard in raw_events.shards()
        }
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
            logged = self._store.logged((e.delivery_id, e.sk) for e in events)
            late = [e for e in events if (e.delivery_id, e.sk) not in logged]
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
        loaded = self._carried.view(batch.state_keys(events), self._store.load_indicators)
        earlier = self._earlier_logs(batch.logs_to_recheck(events, loaded))
        if earlier:
            more = batch.recheck_keys(earlier.values()) - loaded.keys()
            loaded.update(self._carried.view(more, self._store.load_indicators))
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

    def _flush(self) -> None:
        """Write what the run carries, through a pending batch that also moves the checkpoints."""
        assert self._state is not None
        if self._carried.is_empty():
            return
        pending = self._carried.pending(self._state.batch_seq + 1)
        encoded = len(pending.encode())  # kept by the batch: saving it does not encode it again
        self._store.save_pending(self._owner, pending)
        self._finish(pending)
        self._carried.flushed(encoded)

    def _finish(self, pending: PendingBatch) -> None:
        """Apply a pending batch's writes (again, if need be) and move its checkpoints."""
        assert self._state is not None
        self._put(pending.items, seq=pending.seq)
        self._store.complete_pending(self._owner, pending)
        self._state.batch_seq = pending.seq
        self._state.pending = None
        self._state.checkpoints.update(pending.checkpoints)
        self._run.events_processed = int(self._run.events_processed) + pending.events

    def _renew_lock(self) -> None:
        self._store.renew_lock(self._owner, self._clock().timestamp(), self._config.lock_seconds)

    def _put(self, items: list[Any], seq: int | None = None) -> None:
        """Put items; quarantine those DynamoDB refuses for what they hold, and go on."""
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
                instead = (
                    None if key in bare_refused else "its bare tracking log (no url, label, client, amount)"
                )
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
    return (str(item.delivery_id), str(item.sk))


__all__ = ["LockLost", "TrackingWorkflow", "WorkflowConfig"]
