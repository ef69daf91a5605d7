"""An in-memory WorkflowStore with the DynamoDB store's semantics, and faults on demand."""

from __future__ import annotations

import bisect
import copy
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from pynamodb.models import Model

from functions.consolidate.batch import StateKey
from functions.consolidate.store import (
    MAX_CHUNK_BYTES,
    MERGING,
    WORK,
    LockLost,
    PendingBatch,
    PendingChunks,
    Refused,
    SavedSlice,
    Unreadable,
    WorkerState,
    WorkflowState,
    WriteRefused,
    decode_items,
    encode_items,
    indicator_model,
    partial_key,
    partial_spread,
    raw_event,
)
from functions.shared import fallback, raw_events
from functions.shared.fallback import FallbackMessage
from functions.shared.limits import DYNAMODB_ITEM_LIMIT, item_size
from functions.shared.models import (
    MESSAGE_PREFIX,
    RECIPIENT_LOG_PAGE_PREFIX,
    RECIPIENT_STATE_PREFIX,
    ErasureModel,
    MessageModel,
    QuarantineModel,
    RawEventModel,
    RecipientLogPageModel,
    RunModel,
    TrackedUrlModel,
    TrackingLogModel,
)
from functions.shared.raw_events import RawEvent
from functions.shared.tables import tracking_log_partition


class Crash(RuntimeError):
    """An injected fault: the process dies here."""


def refused_by_dynamodb(data: dict[str, Any]) -> str | None:
    """What DynamoDB answers a put of this item (its low-level form) for what it holds, if anything."""
    if item_size(data) > DYNAMODB_ITEM_LIMIT:
        return "ValidationException: Item size has exceeded the maximum allowed size"
    return None


def _copy(item: Model) -> Any:
    return type(item).from_raw_data(item.serialize())


class FakeWorkflowStore:
    def __init__(self) -> None:
        self.raw: dict[str, list[RawEventModel]] = {}
        self.raw_items: dict[str, list[dict[str, Any]]] = {}  # items that are no raw event (no model)
        self.logs: dict[tuple[str, str], TrackingLogModel] = {}
        self.indicators: dict[StateKey, Model] = {}
        self.urls: dict[str, list[TrackedUrlModel]] = {}
        self.messages: dict[tuple[str, str], MessageModel] = {}
        self.runs: dict[str, RunModel] = {}
        self.lock_owner: str | None = None
        self.lock_expires = 0.0
        self.checkpoints: dict[str, str] = {}
        self.batch_seq = 0
        # The pending batches: their chunk items by key, and where the state item points
        self.chunk_bytes = MAX_CHUNK_BYTES
        self.chunks: dict[str, bytes] = {}
        self.state_pending: PendingChunks | None = None
        self.pending_sizes: list[int] = []  # encoded size of every pending batch saved
        self.calls: dict[str, int] = {}
        self.writes: dict[tuple[str, str], int] = {}  # puts of each item, tracking logs and indicators
        self.fault: Callable[[str, int], bool] = lambda operation, count: False
        self.fallback: dict[str, dict[str, Any] | str] = {}  # an item, or a message body as SQS holds it
        self.erasures_pending: dict[str, ErasureModel] = {}
        self.erasures_done: dict[str, ErasureModel] = {}
        self._fallback_seq = 0
        self.die_on_fault = True  # after a fault every call fails: nothing runs after a crash
        self.dead = False
        # What DynamoDB refuses for what it holds (a ValidationException): items too large by default.
        self.refuse: Callable[[dict[str, Any]], str | None] = refused_by_dynamodb
        self.quarantined: dict[str, QuarantineModel] = {}
        self.deleted_deliveries_at: dict[str, str] = {}
        # the open run and its workers (workflow.py, "Scale-out")
        self.run_id: str | None = None
        self.run_trigger: str | None = None
        self.run_started: str | None = None
        self.groups: list[list[str]] = []
        self.phase: str | None = None
        self.drained: list[int] = []
        self.plan_quarantined = 0
        self.planning_quarantined = 0  # the planners' count since the last run opened
        self.merge_outcome = b""
        self.workers: dict[int, dict[str, Any]] = {}  # run_id, seq, events, pending (PendingChunks)
        self.partials: dict[tuple[str, int], dict[str, bytes]] = {}
        self.reads_at_once = 0  # load_partials_and_indicators: two reads the DynamoDB store sends together
        self.merges: dict[str, list[bytes]] = {}
        self.slices: dict[tuple[str, int], dict[str, Any]] = {}  # the saved slices of a run's merge
        self._guard = threading.RLock()  # workers call from threads; a call is atomic, as in DynamoDB

    @property
    def pending(self) -> PendingChunks | None:
        """Any pending batch left: the shared one or a worker's."""
        return self.state_pending or next(
            (slot["pending"] for slot in self.workers.values() if slot.get("pending")), None
        )

    def _call(self, operation: str) -> None:
        with self._guard:
            if self.dead:
                raise Crash("the process is dead")
            self.calls[operation] = self.calls.get(operation, 0) + 1
            if self.fault(operation, self.calls[operation]):
                self.dead = self.die_on_fault
                raise Crash(f"injected fault in {operation} (call {self.calls[operation]})")

    def restart(self) -> None:
        """A new process: the injected fault is gone, the data stays."""
        self.dead = False
        self.fault = lambda operation, count: False
        self.calls = {}

    # --- seeding --------------------------------------------------------------------------------

    def add_raw(self, event: RawEvent, ttl_days: int = 30) -> RawEventModel:
        item = raw_events.to_item(event, ttl_days)
        model = RawEventModel.from_raw_data(item)
        shard = self.raw.setdefault(str(model.shard), [])
        bisect.insort(shard, model, key=lambda m: str(m.sk))
        return model

    def add_raw_item(self, item: dict[str, Any]) -> None:
        """An item written to the raw-events table by anything (a manual write, an older redirect)."""
        read = raw_event(item)
        if isinstance(read, RawEventModel):
            try:
                read.serialize()  # a model that does not write back as it was read is kept as read
            except ValueError:
                read = Unreadable(str(read.shard), str(read.sk), item, "")
        if isinstance(read, Unreadable):
            shard_items = self.raw_items.setdefault(read.shard, [])
            if all(existing["sk"] != item["sk"] for existing in shard_items):
                bisect.insort(shard_items, item, key=lambda i: str(i["sk"]["S"]))
            return
        shard = self.raw.setdefault(str(read.shard), [])
        if all(existing.sk != read.sk for existing in shard):
            bisect.insort(shard, read, key=lambda m: str(m.sk))

    def add_url(self, url: TrackedUrlModel) -> None:
        self.urls.setdefault(str(url.delivery_id), []).append(url)

    def add_message(self, message: MessageModel) -> None:
        self.messages[(str(message.delivery_id), str(message.sk))] = message

    def delete_delivery(self, delivery_id: str, at: str = "2026-11-23T09:30:00.000Z") -> None:
        """What the API does: the delivery record and every tracked URL of it are marked deleted."""
        self.deleted_deliveries_at[delivery_id] = at
        for url in self.urls.get(delivery_id, []):
            url.deleted_at = at

    # --- WorkflowStore --------------------------------------------------------------------------

    def acquire_lock(self, owner: str, now: float, ttl_seconds: int) -> bool:
        self._call("acquire_lock")
        if self.lock_owner is not None and self.lock_expires >= now:
            return False
        self.lock_owner, self.lock_expires = owner, now + ttl_seconds
        return True

    def _require(self, owner: str) -> None:
        if self.lock_owner != owner:
            raise LockLost(owner)

    def renew_lock(self, owner: str, now: float, ttl_seconds: int) -> None:
        self._call("renew_lock")
        self._require(owner)
        self.lock_expires = now + ttl_seconds

    def release_lock(self, owner: str) -> None:
        self._call("release_lock")
        if self.lock_owner == owner:
            self.lock_owner = None

    def load_state(self) -> WorkflowState:
        self._call("load_state")
        return WorkflowState(
            dict(self.checkpoints),
            self.batch_seq,
            self._pending_of(self.state_pending),
            lock_owner=self.lock_owner,
            run_id=self.run_id,
            run_started=self.run_started,
            trigger=self.run_trigger,
            groups=[list(group) for group in self.groups],
            phase=self.phase,
            drained=list(self.drained),
            plan_quarantined=self.plan_quarantined,
            merge_outcome=self.merge_outcome,
        )

    def open_run(
        self,
        owner: str,
        trigger: str,
        started: str,
        groups: list[list[str]],
        drained: list[int],
    ) -> None:
        self._call("open_run")
        self._require(owner)
        self.run_id, self.run_trigger, self.run_started = owner, trigger, started
        self.groups, self.phase, self.drained = [list(g) for g in groups], WORK, list(drained)
        self.plan_quarantined, self.planning_quarantined = self.planning_quarantined, 0
        self.merge_outcome = b""

    def set_phase(self, owner: str, phase: str, outcome: bytes | None = None) -> None:
        self._call("set_phase")
        self._require(owner)
        self.phase = phase
        if outcome is not None:
            self.merge_outcome = outcome

    def start_worker(self, owner: str, worker: int) -> WorkerState:
        self._call("start_worker")
        with self._guard:
            slot = self.workers.setdefault(
                worker, {"run_id": None, "seq": 0, "events": 0, "quarantined": 0, "pending": None}
            )
            if slot["run_id"] != owner:
                slot.update(run_id=owner, events=0, quarantined=0)
        return self._worker_state(worker)

    def _worker_state(self, worker: int) -> WorkerState:
        slot = self.workers.get(worker, {})
        return WorkerState(
            slot.get("run_id"),
            int(slot.get("seq", 0)),
            int(slot.get("events", 0)),
            self._pending_of(slot.get("pending")),
            int(slot.get("quarantined", 0)),
        )

    def _save_chunks(self, owner: str, step: str, pending: PendingBatch) -> PendingChunks:
        """The pending batch's chunk items, written one by one (a crash may leave some of them)."""
        pointer, chunks = PendingChunks.of(owner, step, pending, self.chunk_bytes)
        for key, chunk in zip(pointer.chunk_keys(), chunks, strict=True):
            self._call("put_pending_chunk")
            if len(chunk) > DYNAMODB_ITEM_LIMIT:  # what DynamoDB answers (ValidationException)
                raise ValueError(f"Item size has exceeded the maximum allowed size ({len(chunk):,} bytes)")
            self.chunks[key] = chunk
        self.pending_sizes.append(len(pending.encode()))
        return pointer

    def _pending_of(self, pointer: PendingChunks | None) -> PendingBatch | None:
        if pointer is None:
            return None
        self._call("load_pending_chunks")
        return pointer.batch([self.chunks[key] for key in pointer.chunk_keys() if key in self.chunks])

    def load_worker(self, worker: int) -> WorkerState:
        self._call("load_worker")
        return self._worker_state(worker)

    def _require_open(self, owner: str, open_only: bool) -> None:
        self._require(owner)
        if open_only and (self.run_id != owner or self.phase != WORK):
            raise LockLost(f"run {owner} is closed")

    def save_worker_pending(self, owner: str, worker: int, pending: PendingBatch) -> None:
        pointer = self._save_chunks(owner, f"worker{worker}", pending)
        self._call("save_worker_pending")
        with self._guard:
            self._require_open(owner, True)
            self.workers[worker].update(pending=pointer, pending_seq=pending.seq)

    def complete_worker_pending(
        self, owner: str, worker: int, pending: PendingBatch, *, open_only: bool, quarantined: int = 0
    ) -> None:
        self._call("complete_worker_pending")
        with self._guard:
            slot = self.workers[worker]
            if slot.get("pending") is None or slot.get("pending_seq") != pending.seq:
                return  # completed already
            self._require_open(owner, open_only)
            self.checkpoints.update(pending.checkpoints)
            slot.update(
                seq=pending.seq,
                events=slot["events"] + pending.events,
                quarantined=int(slot.get("quarantined", 0)) + quarantined,
                pending=None,
                pending_seq=None,
            )

    def put_partials(self, run_id: str, worker: int, items: list[Model]) -> None:
        with self._guard:
            for item in items:
                self._call("put_partial")
                key = (str(item.delivery_id), str(item.sk))  # type: ignore[attr-defined]
                self.partials.setdefault((run_id, worker), {})[partial_key(key)] = encode_items([item])

    def load_partials(self, run_id: str, worker: int, keys: Iterable[StateKey]) -> dict[StateKey, Model]:
        self._call("load_partials")
        stored = self.partials.get((run_id, worker), {})
        found: dict[StateKey, Model] = {}
        for key in keys:
            if partial_key(key) in stored:
                found[key] = decode_items(stored[partial_key(key)])[0]
        return found

    def load_partials_and_indicators(
        self, run_id: str, worker: int, partial_keys: list[StateKey], keys: list[StateKey]
    ) -> tuple[dict[StateKey, Model], dict[StateKey, Model]]:
        self.reads_at_once += 1
        return self.load_partials(run_id, worker, partial_keys), self.load_indicators(keys)

    def save_merge(self, owner: str, run_id: str, pages: list[bytes]) -> None:
        self._call("save_merge")
        self._require(owner)
        self.merges[run_id] = list(pages)
        self.phase = MERGING

    def load_merge(self, run_id: str) -> list[bytes]:
        self._call("load_merge")
        return list(self.merges.get(run_id, []))

    def delete_merge(self, run_id: str) -> None:
        self._call("delete_merge")
        self.merges.pop(run_id, None)

    def slice_partials(self, run_id: str, worker: int, spread: int) -> list[Model]:
        self._call("slice_partials")
        stored = sorted(self.partials.get((run_id, worker), {}).items())
        return [decode_items(blob)[0] for key, blob in stored if partial_spread(key) == spread]

    def save_slice(self, run_id: str, spread: int, pages: list[bytes], summary: bytes) -> None:
        self._call("save_slice")
        self.slices[(run_id, spread)] = {"pages": list(pages), "summary": summary, "put": False}

    def load_slice(self, run_id: str, spread: int) -> SavedSlice | None:
        self._call("load_slice")
        saved = self.slices.get((run_id, spread))
        return (
            None if saved is None else SavedSlice(saved["summary"], saved["put"], saved.get("outcome", b""))
        )

    def slice_pages(self, run_id: str, spread: int) -> list[bytes]:
        self._call("slice_pages")
        return list(self.slices[(run_id, spread)]["pages"])

    def slice_put(self, run_id: str, spread: int, outcome: bytes) -> None:
        self._call("slice_put")
        self.slices[(run_id, spread)].update(put=True, outcome=outcome)

    def delete_slice_partials(self, run_id: str, workers: int, spread: int) -> None:
        self._call("delete_slice_partials")
        for worker in range(workers):
            stored = self.partials.get((run_id, worker), {})
            # list(): copied at once (under the GIL), as slices running in parallel delete their keys
            for key in [key for key in list(stored) if partial_spread(key) == spread]:
                del stored[key]
            if not stored:  # as in DynamoDB, a worker whose partial items are all deleted has none
                self.partials.pop((run_id, worker), None)

    def delete_slices(self, run_id: str) -> None:
        self._call("delete_slices")
        for key in [key for key in self.slices if key[0] == run_id]:
            del self.slices[key]

    def save_pending(self, owner: str, pending: PendingBatch) -> None:
        pointer = self._save_chunks(owner, "planner", pending)
        self._call("save_pending")
        self._require(owner)
        self.state_pending = pointer

    def complete_pending(self, owner: str, pending: PendingBatch, quarantined: int = 0) -> None:
        self._call("complete_pending")
        self._require(owner)
        self.planning_quarantined += quarantined
        self.batch_seq = pending.seq
        self.checkpoints.update(pending.checkpoints)
        self.state_pending = None

    def save_run(self, run: RunModel) -> None:
        self._call("save_run")
        self.runs[str(run.sk)] = _copy(run)

    def load_run(self, run_id: str) -> RunModel | None:
        self._call("load_run")
        found = self.runs.get(run_id)
        return _copy(found) if found is not None else None

    def read_raw(
        self, shard: str, after: str | None, upto: str, limit: int
    ) -> list[RawEventModel | Unreadable]:
        self._call("read_raw")

        def wanted(sk: str) -> bool:
            return (after is None or sk > after) and sk <= upto

        # Copied after the key filter: a copy per stored event and read made the fake quadratic.
        read: list[RawEventModel | Unreadable] = [
            _copy(e) for e in self.raw.get(shard, []) if wanted(str(e.sk))
        ]
        read += [
            raw_event(copy.deepcopy(i)) for i in self.raw_items.get(shard, []) if wanted(str(i["sk"]["S"]))
        ]
        read.sort(key=lambda entry: str(entry.sk))
        # as the DynamoDB-backed store: it queries while it has fewer than ``limit`` (an int, at least 1)
        if limit < 1:
            raise ValueError(f"ValidationException: Limit {limit!r} is not a positive number")
        return read[:limit]

    def in_quarantine(self, keys: Iterable[str]) -> set[str]:
        self._call("in_quarantine")
        keys = list(keys)
        if len(set(keys)) != len(keys):  # what DynamoDB answers to a BatchGetItem naming a key twice
            raise ValueError("ValidationException: Provided list of item keys contains duplicates")
        return {key for key in keys if key in self.quarantined}

    def logged(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        self._call("logged")
        return {key for key in keys if key in self.logs}

    def log(self, delivery_id: str, sk: str) -> TrackingLogModel | None:
        """The tracking log of ``delivery_id`` with sort key ``sk``, in whichever partition it is."""
        return next(
            (log for log in self.logs.values() if (log.delivery_id, log.sk) == (delivery_id, sk)), None
        )

    def load_logs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]:
        self._call("load_logs")
        keys = list(keys)
        if len(set(keys)) != len(keys):  # what DynamoDB answers to a BatchGetItem naming a key twice
            raise ValueError("ValidationException: Provided list of item keys contains duplicates")
        return {key: _copy(self.logs[key]) for key in keys if key in self.logs}

    def tracked_urls(self, delivery_id: str) -> list[TrackedUrlModel]:
        self._call("tracked_urls")
        return [_copy(u) for u in self.urls.get(delivery_id, [])]

    def message_domains(self, delivery_id: str, recipient_ids: Iterable[str]) -> dict[str, str | None]:
        self._call("message_domains")
        found = {}
        for recipient_id in recipient_ids:
            message = self.messages.get((delivery_id, MESSAGE_PREFIX + recipient_id))
            if message is not None:
                found[recipient_id] = message.email_domain
        return found

    def load_indicators(self, keys: Iterable[StateKey]) -> dict[StateKey, Model]:
        self._call("load_indicators")
        return {key: _copy(self.indicators[key]) for key in keys if key in self.indicators}

    def put_items(self, items: Iterable[Model]) -> list[Refused]:
        refused = []
        for item in items:
            self._call("put_item")
            key = _table_key(item)
            reason = self.refuse(item.serialize())
            if reason is not None:
                refused.append(Refused(item, reason))
                continue
            self.writes[key] = self.writes.get(key, 0) + 1
            if isinstance(item, TrackingLogModel):
                self.logs[key] = _copy(item)
            else:
                indicator_model(key[1])  # only indicator items go to the indicators table
                self.indicators[key] = _copy(item)
        return refused

    def quarantine(self, items: Iterable[QuarantineModel]) -> None:
        for item in items:
            self._call("quarantine")
            self.quarantined[str(item.sk)] = _copy(item)

    def quarantine_counted(self, owner: str, worker: int | None, items: list[QuarantineModel]) -> None:
        """The items kept and counted in one transaction (the DynamoDB store's chunks are one here)."""
        self._call("quarantine_counted")
        with self._guard:
            if worker is None:
                self._require(owner)
                self.planning_quarantined += len(items)
            else:
                self._require_open(owner, True)
                slot = self.workers[worker]
                if slot["run_id"] != owner:
                    raise LockLost(f"worker {worker} serves run {slot['run_id']}")
                slot["quarantined"] += len(items)
            for item in items:
                self.quarantined[str(item.sk)] = _copy(item)

    def deleted_deliveries(self, delivery_ids: Iterable[str]) -> set[str]:
        self._call("deleted_deliveries")
        return {delivery_id for delivery_id in delivery_ids if delivery_id in self.deleted_deliveries_at}

    def receive_fallback(self, limit: int) -> list[FallbackMessage]:
        self._call("receive_fallback")
        # like SQS: nothing is hidden between receives here, so a crash redelivers everything; at most
        # 10 messages a receive, as the DynamoDB-backed store asks for (``min(limit, 10)``)
        return [
            FallbackMessage(receipt, item) if isinstance(item, dict) else fallback.decode(receipt, item)
            for receipt, item in list(self.fallback.items())[: min(limit, 10)]
        ]

    def put_raw(self, item: dict[str, Any]) -> None:
        self._call("put_raw")
        try:
            reason = self.refuse(item)
        except (AttributeError, TypeError, ValueError) as error:  # not attribute values: boto3 refuses it
            reason = f"ParamValidationError: {error}"
        keys = [item.get(name) for name in ("shard", "sk")]
        if reason is None and not all(isinstance(k, dict) and k.get("S") and len(k) == 1 for k in keys):
            reason = "ValidationException: One or more parameter values were invalid: key attributes"
        if reason is not None:
            raise WriteRefused(reason)
        self.add_raw_item(item)

    def delete_fallback(self, receipts: list[str]) -> None:
        self._call("delete_fallback")
        for receipt in receipts:
            self.fallback.pop(receipt, None)

    def send_fallback(self, event: RawEvent, ttl_days: int = 30) -> None:
        """What the redirect does when DynamoDB refuses the raw event."""
        self._fallback_seq += 1
        self.fallback[f"m{self._fallback_seq}"] = raw_events.to_item(event, ttl_days)

    def request_erasure(self, recipient_id: str, erasure_id: str = "e-1") -> None:
        self.erasures_pending[erasure_id] = ErasureModel(
            sk=erasure_id, recipient_id=recipient_id, requested_at="2026-11-23T10:00:00.000Z"
        )

    def pending_erasures(self) -> list[ErasureModel]:
        self._call("pending_erasures")
        return [_copy(e) for e in self.erasures_pending.values()]

    def recipient_state_keys(self, recipient_id: str) -> list[tuple[str, str]]:
        self._call("recipient_state_keys")
        return self._state_keys_of(recipient_id)

    def _state_keys_of(self, recipient_id: str) -> list[tuple[str, str]]:
        return sorted(
            key
            for key, item in self.indicators.items()
            if key[1].startswith((RECIPIENT_STATE_PREFIX, RECIPIENT_LOG_PAGE_PREFIX))
            and getattr(item, "recipient_id", None) == recipient_id
        )

    def recipient_log_keys(self, recipient_id: str) -> list[tuple[str, str]]:
        """From the recipient's state items, as the DynamoDB store reads them."""
        self._call("recipient_log_keys")
        keys = []
        for delivery_id, sk in self._state_keys_of(recipient_id):
            if not sk.startswith(RECIPIENT_STATE_PREFIX):
                continue  # a page of log keys: read with its state below
            state = self.indicators[(delivery_id, sk)]
            if getattr(state, "logs_overflow", None):
                keys += [
                    key
                    for key, log in self.logs.items()
                    if log.recipient_id == recipient_id and log.delivery_id == delivery_id
                ]
            else:
                partition = tracking_log_partition(delivery_id, recipient_id)
                listed = set((getattr(state, "logs", None) or "").split())
                for page in self._pages_of(delivery_id, recipient_id):
                    listed |= set(page.log_keys())
                keys += [(partition, log_sk) for log_sk in sorted(listed)]
        return keys

    def _pages_of(self, delivery_id: str, recipient_id: str) -> list[RecipientLogPageModel]:
        return [
            item
            for (delivery, sk), item in self.indicators.items()
            if delivery == delivery_id
            and sk.startswith(RECIPIENT_LOG_PAGE_PREFIX)
            and isinstance(item, RecipientLogPageModel)
            and item.recipient_id == recipient_id
        ]

    def recipient_raw_keys(self, recipient_id: str) -> list[tuple[str, str]]:
        self._call("recipient_raw_keys")
        return [
            (shard, str(e.sk))
            for shard, events in self.raw.items()
            for e in events
            if e.recipient_id == recipient_id
        ]

    def delete_logs(self, keys: Iterable[tuple[str, str]]) -> None:
        for key in keys:
            self._call("delete_item")
            self.logs.pop(key, None)

    def delete_raw(self, keys: Iterable[tuple[str, str]]) -> None:
        for shard, sk in keys:
            self._call("delete_item")
            self.raw[shard] = [e for e in self.raw.get(shard, []) if e.sk != sk]

    def delete_indicators(self, keys: Iterable[tuple[str, str]]) -> None:
        for key in keys:
            self._call("delete_item")
            self.indicators.pop(key, None)

    def complete_erasure(self, pending: ErasureModel, done: ErasureModel) -> None:
        self._call("complete_erasure")
        self.erasures_done[str(done.sk)] = _copy(done)
        self.erasures_pending.pop(str(pending.sk), None)

    # --- reading results --------------------------------------------------------------------------

    def stats(self, delivery_id: str) -> dict[str, int]:
        item = self.indicators.get((delivery_id, "stats"))
        names = (
            "opens",
            "total_opens",
            "clicks",
            "person_clicks",
            "total_clicks",
            "opt_outs",
            "mirror_page_views",
        )
        return {name: int(getattr(item, name)) if item else 0 for name in names}

    def snapshot(self) -> dict[str, Any]:
        """Everything a report could read: equal snapshots mean equal reports."""
        return {
            "logs": sorted((k, json.dumps(v.serialize(), sort_keys=True)) for k, v in self.logs.items()),
            "indicators": sorted(
                (k, json.dumps(_stable(v.serialize()), sort_keys=True)) for k, v in self.indicators.items()
            ),
        }


def _stable(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data.pop("updated_at", None)
    if "urls" in data:
        data["urls"] = {"SS": sorted(data["urls"]["SS"])}
    return data


def _table_key(item: Model) -> tuple[str, str]:
    """Its key in its table: a tracking log's hash key is its partition, an indicator's its delivery."""
    if isinstance(item, TrackingLogModel):
        return (str(item.partition), str(item.sk))
    return (str(item.delivery_id), str(item.sk))  # type: ignore[attr-defined]
