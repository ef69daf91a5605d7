"""What the tracking workflow reads and writes, behind one interface.

``DynamoWorkflowStore`` is the real one; ``tests/fakes_workflow.py`` holds an in-memory twin for unit
tests and fault injection. Every write of a batch is a whole-item put, so repeating one is harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import boto3
from botocore.exceptions import ParamValidationError
from pynamodb.models import Model

from functions.consolidate.batch import StateKey
from functions.consolidate.erasure import ErasureStore
from functions.shared import fallback, limits, log_chain_store, models, raw_events, recipient_logs
from functions.shared.fallback import FallbackMessage
from functions.shared.models import (
    HOUR_PREFIX,
    MESSAGE_PREFIX,
    PERSON_STATE_PREFIX,
    RECIPIENT_STATE_PREFIX,
    STATE_PK,
    STATE_SK,
    STATS_SK,
    URL_STATS_PREFIX,
    MessageModel,
    RawEventModel,
    RunModel,
    TrackedUrlModel,
    TrackingLogModel,
)
from functions.shared.tables import RAW_EVENTS, WORKFLOW

_MODELS_BY_NAME: dict[str, type[Model]] = {m.__name__: m for m in models.ALL_MODELS}


BATCH_WRITE_ITEMS = 25  # DynamoDB's limit on one BatchWriteItem request
BATCH_GET_KEYS = 100  # DynamoDB's limit on one BatchGetItem request
WRITERS = 4  # BatchWriteItem requests in flight at once (PynamoDB keeps a botocore session per thread)


@dataclass(frozen=True)
class Refused:
    """An item DynamoDB refused for what it is (too large, an invalid value), not for the moment:
    putting it again would fail again."""

    item: Model
    error: str


@dataclass(frozen=True)
class Unreadable:
    """A raw-events item that is not a raw event the workflow can read (an attribute missing, of the
    wrong DynamoDB type, or holding what no event holds): the workflow quarantines it and goes on."""

    shard: str
    sk: str
    item: dict[str, Any]  # its attribute values, as stored
    error: str


def raw_event(item: dict[str, Any]) -> RawEventModel | Unreadable:
    """The raw event a raw-events item holds, or why it holds none."""
    try:
        return RawEventModel.from_raw_data(item)
    except Exception as error:  # whatever the item holds, the run goes on without it
        return Unreadable(*raw_key(item), item, f"{type(error).__name__}: {error}"[:1_000])


def raw_key(item: Any) -> tuple[str, str]:
    """A raw-events item's shard and sort key, or as much of them as an item that is not one says."""
    return (_key_text(item, "shard"), _key_text(item, "sk"))


def _key_text(item: Any, name: str) -> str:
    """A key attribute's string, or as much of it as an item that is not one says."""
    value = item.get(name) if isinstance(item, dict) else None
    if isinstance(value, dict) and isinstance(value.get("S"), str):
        return str(value["S"])
    if isinstance(value, str):
        return value[:200]
    return json.dumps(value, default=str)[:200] if value is not None else ""


class WriteRefused(RuntimeError):
    """DynamoDB refused this one write for what it holds (a ValidationException)."""


def refusal(error: BaseException) -> str | None:
    """What DynamoDB said when it refused a write for what it holds; None for any other failure."""
    code = getattr(error, "cause_response_code", None)  # PynamoDB's PutError
    if code is None:
        code = getattr(error, "response", {}).get("Error", {}).get("Code")  # botocore's ClientError
    if code != "ValidationException":
        return None
    message = getattr(error, "cause_response_message", None) or str(error)
    return f"ValidationException: {message}"[:1_000]


Request = TypeVar("Request")
Answer = TypeVar("Answer")


def _sent_at_once(send: Callable[[Request], Answer], requests: list[Request]) -> list[Answer]:
    """Each request sent, up to ``WRITERS`` in flight at once; their answers in order. When one fails,
    the others still land (every write here is an idempotent whole-item put or delete, a read changes
    nothing) and the first failure is raised."""
    if len(requests) <= 1:
        return [send(request) for request in requests]
    with ThreadPoolExecutor(max_workers=min(WRITERS, len(requests))) as writers:
        return list(writers.map(send, requests))


def _batch_put(model: type[Model], items: list[Model]) -> list[Refused]:
    """One BatchWriteItem request; when DynamoDB refuses it for an item it holds (the whole request is
    refused then), each item is put on its own to tell the refused ones from the others."""
    try:
        with model.batch_write() as batch:
            for item in items:
                batch.save(item)
    except Exception as error:
        if refusal(error) is None:
            raise
        return [refused for item in items if (refused := _put_alone(item)) is not None]
    return []


def _put_alone(item: Model) -> Refused | None:
    try:
        item.save()
    except Exception as error:
        reason = refusal(error)
        if reason is None:
            raise
        return Refused(item, reason)
    return None


TRANSACTION_ITEMS = 98  # DynamoDB's 100 actions per transaction, less the count and the check
TRANSACTION_BYTES = 3_000_000  # of its 4 MB, with a margin for the attributes beside the kept item


def _transaction_chunks(items: list[models.QuarantineModel]) -> list[list[models.QuarantineModel]]:
    """The items in chunks one transaction takes, by count and by size."""
    chunks: list[list[models.QuarantineModel]] = []
    size = 0
    for item in items:
        grows = len(item.item) + 2_000
        if not chunks or len(chunks[-1]) == TRANSACTION_ITEMS or size + grows > TRANSACTION_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += grows
    return chunks


class LockLost(RuntimeError):
    """Another run holds the workflow lock: this run must stop writing."""


class TransactionsConflicting(RuntimeError):
    """DynamoDB cancelled a transaction for a conflict (another write on one of its items in flight)
    every time it was tried: nothing of it was written; the step fails and is retried."""


# Codes of a cancelled transaction's reasons that say nothing about its conditions: another transaction
# or write on one of its items was in flight (workers' transactions all touch the state item), or
# DynamoDB throttled one of them. Tried again, it goes through; any other code (ConditionalCheckFailed:
# the run is closed, the lock lost, the batch completed already) is the caller's to read.
TRANSIENT_CANCELLATIONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
TRANSACTION_TRIES = 8
TRANSACTION_BACKOFF_SECONDS = 0.025  # the first wait at most; each next one twice as long (full jitter)


def transact(client: Any, actions: list[Any], sleep: Callable[[float], None] = time.sleep) -> None:
    """``TransactWriteItems``, tried again while DynamoDB cancels it only for conflicts or throttling
    (botocore does not: a cancelled transaction is an answer, not an error). Raises the
    cancellation when a condition failed, ``TransactionsConflicting`` when conflicts outlast the tries."""

    def only_transient(error: Exception) -> bool:
        if not isinstance(error, client.exceptions.TransactionCanceledException):
            return False
        codes = {reason.get("Code") for reason in error.response.get("CancellationReasons", [])}
        return bool(codes & TRANSIENT_CANCELLATIONS) and not codes - TRANSIENT_CANCELLATIONS - {"None", None}

    _tried_through_conflicts(
        lambda: client.transact_write_items(TransactItems=actions), only_transient, "a transaction", sleep
    )


def _tried_through_conflicts(
    write: Callable[[], object],
    conflicted: Callable[[Exception], bool],
    what: str,
    sleep: Callable[[float], None],
) -> None:
    """``write``, tried again after a jittered wait while it fails only because another write on its
    items was in flight (``conflicted``); any other error is the caller's to read."""
    for attempt in range(TRANSACTION_TRIES):
        try:
            write()
            return
        except Exception as error:
            if not conflicted(error):
                raise
            if attempt == TRANSACTION_TRIES - 1:
                raise TransactionsConflicting(
                    f"{what} conflicted {TRANSACTION_TRIES} times (the last cancelled for {_reasons(error)})"
                ) from error
            sleep(random.uniform(0, TRANSACTION_BACKOFF_SECONDS * 2**attempt))


def _reasons(error: Exception) -> str:
    """What DynamoDB said of a cancelled write: its transaction's reasons, or its error code."""
    answer = getattr(error, "response", None) or {}
    codes = [str(r.get("Code")) for r in answer.get("CancellationReasons", ()) if r.get("Code") != "None"]
    return ", ".join(codes) or str(answer.get("Error", {}).get("Code") or type(error).__name__)


@dataclass
class PendingBatch:
    """A flush whose writes are decided but maybe not all applied: replayed until completed.

    It holds the indicator items the run changed since its previous flush (plus the tracking logs of
    late and fallback events, which must not exist before their counts do) and the checkpoint each
    shard read since then moves to, so the counts and the checkpoints move together.
    """

    seq: int
    checkpoints: dict[str, str]  # shard -> its new checkpoint; shards not named stay where they are
    events: int
    items: list[Model] = field(default_factory=list)
    # items quarantined before the flush (tracking logs, poison events of the batches it moves past),
    # counted for the run when the batch is completed
    quarantined: int = 0
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def encode(self) -> bytes:
        """The compressed document, encoded once: a pending batch's items do not change once it is
        made (the run makes a new one for every flush)."""
        if self._encoded is None:
            self._encoded = self._encode()
        return self._encoded

    def _encode(self) -> bytes:
        document = {
            "seq": self.seq,
            "checkpoints": self.checkpoints,
            "events": self.events,
            "items": [[type(item).__name__, item.serialize()] for item in self.items],
        }
        if self.quarantined:
            document["quarantined"] = self.quarantined
        return zlib.compress(json.dumps(document, separators=(",", ":")).encode(), level=6)

    @classmethod
    def decode(cls, blob: bytes) -> PendingBatch:
        document = json.loads(zlib.decompress(blob))
        items = [_MODELS_BY_NAME[name].from_raw_data(data) for name, data in document["items"]]
        checkpoints = document.get("checkpoints")
        if checkpoints is None:  # left by a version that moved one shard's checkpoint per batch
            checkpoints = {document["shard"]: document["checkpoint"]} if document.get("checkpoint") else {}
        return cls(
            document["seq"], checkpoints, document["events"], items, int(document.get("quarantined", 0))
        )


# A pending batch is stored in chunk items of the workflow table, each well under DynamoDB's 400 KB
# item limit, written before the state item (or worker slot) points at them. Nothing deletes them:
# they expire (the table's TTL) this long after, days after any replay can need them (the lock
# expires within the hour and the next scheduled run replays), so no write unit is spent on it.
# A worker's partial items expire likewise: the merge's slices delete them, but those a run left
# behind (an older version's, across a deploy mid-run) would otherwise stay for good.
MAX_CHUNK_BYTES = limits.ITEM_BUDGET
PENDING_TTL_SECONDS = 7 * 86_400
PENDING_CHUNK_SK = "chunk"


def _expiry() -> dict[str, dict[str, str]]:
    """The workflow table's TTL attribute of an item written now: it expires PENDING_TTL_SECONDS on."""
    ttl = WORKFLOW.ttl_attribute
    assert ttl is not None
    return {ttl: {"N": str(int(time.time()) + PENDING_TTL_SECONDS)}}


@dataclass(frozen=True)
class PendingChunks:
    """Where a pending batch is stored: ``count`` chunk items, keyed ``<at>#<n>`` (each under its own
    partition key, so a flush of megabytes is not capped by one key's 1,000 write units a second).

    ``at`` names the step that saved it (lock owner, planner or worker, seq) and ends with a digest of
    the encoded batch: a replayed or stale writer of the same seq writes other keys unless it writes
    the very same batch, so chunks of two batches never mix, and the reader checks the digest.
    """

    at: str
    count: int

    @classmethod
    def of(
        cls, owner: str, step: str, pending: PendingBatch, chunk_bytes: int
    ) -> tuple[PendingChunks, list[bytes]]:
        """Where ``pending`` goes, and its chunks."""
        blob = pending.encode()
        chunks = [blob[start : start + chunk_bytes] for start in range(0, len(blob), chunk_bytes)]
        return cls(f"pending#{owner}#{step}#{pending.seq}#{_digest(blob)}", len(chunks)), chunks

    def chunk_keys(self) -> list[str]:
        return [f"{self.at}#{n}" for n in range(self.count)]

    def batch(self, chunks: list[bytes]) -> PendingBatch:
        """The pending batch from its chunks, in order; refuses chunks that are not the ones saved."""
        blob = b"".join(chunks)
        if len(chunks) != self.count or _digest(blob) != self.at.rsplit("#", 1)[-1]:
            raise RuntimeError(f"the chunks of the pending batch {self.at} are missing or altered")
        return PendingBatch.decode(blob)


def _digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass
class WorkflowState:
    checkpoints: dict[str, str]
    batch_seq: int
    pending: PendingBatch | None
    # The open run (see workflow.py, "Scale-out"): who holds the lock, when it started, its groups of
    # shards (one per worker), where it stands, and the fallback events the planner counted per group.
    lock_owner: str | None = None
    run_id: str | None = None
    run_started: str | None = None
    trigger: str | None = None
    groups: list[list[str]] = field(default_factory=list)
    phase: str | None = None  # work, finish, merging, merged
    drained: list[int] = field(default_factory=list)
    # What the run's planner quarantined, and (set with the phase ``merged``) what its merge's puts
    # quarantined: the slices' and the finisher's, as JSON {"quarantined": n, "errors": [...]}.
    plan_quarantined: int = 0
    merge_outcome: bytes = b""


@dataclass
class WorkerState:
    """One worker's slot: its pending batch, what it consolidated in the run named and the items it
    quarantined for it (both moved with each pending batch completed)."""

    run_id: str | None
    seq: int
    events: int
    pending: PendingBatch | None
    quarantined: int = 0


# The phases of a run: workers write only while it is open; the finisher closes it before it replays
# their pending batches, merges their partial items (``merging`` once the merged items are saved) and
# marks it ``merged``.
WORK, FINISH, MERGING, MERGED = "work", "finish", "merging", "merged"


def partial_key(key: StateKey) -> str:
    return f"{key[0]}\x1f{key[1]}"


def encode_items(items: list[Model]) -> bytes:
    """Indicator items as one compressed document (a partial item, a page of merged items)."""
    return zlib.compress(
        json.dumps(
            [[type(item).__name__, item.serialize()] for item in items], separators=(",", ":")
        ).encode()
    )


def decode_items(blob: bytes) -> list[Model]:
    return [_MODELS_BY_NAME[name].from_raw_data(data) for name, data in json.loads(zlib.decompress(blob))]


class WorkflowStore(ErasureStore, Protocol):
    def acquire_lock(self, owner: str, now: float, ttl_seconds: int) -> bool: ...
    def renew_lock(self, owner: str, now: float, ttl_seconds: int) -> None: ...
    def release_lock(self, owner: str) -> None: ...
    def load_state(self) -> WorkflowState: ...
    def save_pending(self, owner: str, pending: PendingBatch) -> None: ...
    def complete_pending(self, owner: str, pending: PendingBatch, quarantined: int = 0) -> None: ...
    def save_run(self, run: RunModel) -> None: ...
    def load_run(self, run_id: str) -> RunModel | None: ...
    def open_run(
        self,
        owner: str,
        trigger: str,
        started: str,
        groups: list[list[str]],
        drained: list[int],
    ) -> None: ...
    def set_phase(self, owner: str, phase: str, outcome: bytes | None = None) -> None: ...
    def start_worker(self, owner: str, worker: int) -> WorkerState: ...
    def load_worker(self, worker: int) -> WorkerState: ...
    def save_worker_pending(self, owner: str, worker: int, pending: PendingBatch) -> None: ...
    def complete_worker_pending(
        self, owner: str, worker: int, pending: PendingBatch, *, open_only: bool, quarantined: int = 0
    ) -> None: ...
    def put_partials(self, run_id: str, worker: int, items: list[Model]) -> None: ...
    def load_partials(self, run_id: str, worker: int, keys: Iterable[StateKey]) -> dict[StateKey, Model]: ...
    def load_partials_and_indicators(
        self, run_id: str, worker: int, partial_keys: list[StateKey], keys: list[StateKey]
    ) -> tuple[dict[StateKey, Model], dict[StateKey, Model]]: ...
    def save_merge(self, owner: str, run_id: str, pages: list[bytes]) -> None: ...
    def load_merge(self, run_id: str) -> list[bytes]: ...
    def delete_merge(self, run_id: str) -> None: ...
    def slice_partials(self, run_id: str, worker: int, spread: int) -> list[Model]: ...
    def save_slice(self, run_id: str, spread: int, pages: list[bytes], summary: bytes) -> None: ...
    def load_slice(self, run_id: str, spread: int) -> SavedSlice | None: ...
    def slice_pages(self, run_id: str, spread: int) -> list[bytes]: ...
    def slice_put(self, run_id: str, spread: int, outcome: bytes) -> None: ...
    def delete_slice_partials(self, run_id: str, workers: int, spread: int) -> None: ...
    def delete_slices(self, run_id: str) -> None: ...
    def read_raw(
        self, shard: str, after: str | None, upto: str, limit: int
    ) -> list[RawEventModel | Unreadable]: ...
    def in_quarantine(self, keys: Iterable[str]) -> set[str]: ...
    def logged(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]: ...
    def load_logs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]: ...
    def tracked_urls(self, delivery_id: str) -> list[TrackedUrlModel]: ...
    def message_domains(self, delivery_id: str, recipient_ids: Iterable[str]) -> dict[str, str | None]: ...
    def load_indicators(self, keys: Iterable[StateKey]) -> dict[StateKey, Model]: ...
    def put_items(self, items: Iterable[Model]) -> list[Refused]: ...
    def quarantine(self, items: Iterable[models.QuarantineModel]) -> None: ...
    def quarantine_counted(
        self, owner: str, worker: int | None, items: list[models.QuarantineModel]
    ) -> None: ...
    def deleted_deliveries(self, delivery_ids: Iterable[str]) -> set[str]: ...
    def receive_fallback(self, limit: int) -> list[FallbackMessage]: ...
    def put_raw(self, item: dict[str, Any]) -> None: ...
    def delete_fallback(self, receipts: list[str]) -> None: ...


def indicator_model(sk: str) -> type[Model]:
    """The model of an indicators-table item, from its sort key."""
    if sk == STATS_SK:
        return models.DeliveryStatsModel
    if sk in (models.CLICK_STREAMS_SK, models.HUMAN_CLICK_STREAMS_SK):
        return models.ClickStreamsModel
    for prefix, model in (
        (URL_STATS_PREFIX, models.UrlStatsModel),
        (HOUR_PREFIX, models.HourStatsModel),
        (RECIPIENT_STATE_PREFIX, models.RecipientStateModel),
        (models.RECIPIENT_LOG_PAGE_PREFIX, models.RecipientLogPageModel),
        (PERSON_STATE_PREFIX, models.PersonStateModel),
    ):
        if sk.startswith(prefix):
            return model
    raise ValueError(f"no indicator model for sort key {sk!r}")


# A worker's partial items spread over this many partition keys: a flush of thousands of them (persons)
# stays under one key's 1,000 write units a second.
PARTIAL_SPREAD = 16


@dataclass(frozen=True)
class SavedSlice:
    """A slice of a run's merge, saved (``workflow.merge_slice``): its summary (what the finisher
    needs: the slice's statistics copies and person corrections), whether its items were put, and
    what putting them quarantined (``outcome``, JSON: its count and notes, for the run record)."""

    summary: bytes
    put: bool
    outcome: bytes = b""


SLICE_SUMMARY_SK, SLICE_PUT_SK = "summary", "~put"  # after the pages' "000000"... in sort order


def _slice_pk(run_id: str, spread: int) -> str:
    return f"merge#{run_id}#{spread}"


def partial_spread(key: str) -> int:
    """Which of a worker's partial partitions holds the partial item of ``partial_key`` ``key``:
    also the slice of the run's merge that merges it."""
    return zlib.crc32(key.encode()) % PARTIAL_SPREAD


def _partial_partition(run_id: str, worker: int, spread: int) -> str:
    """Partition ``spread`` of a worker's partial items in a run."""
    return f"partial#{run_id}#{worker}#{spread}"


def _partial_pk(run_id: str, worker: int, key: str) -> str:
    return _partial_partition(run_id, worker, partial_spread(key))


def _stored_key(key: StateKey) -> StateKey:
    """Where an indicator item is stored: a recipient state (key in memory: delivery id,
    "r#<recipient>") in the recipient's partition, a person state ("p#<person>") in one of its
    delivery's person partitions, every other item at its key in memory (a page of log keys is named
    by its stored key, ``recipient_logs.page_keys``)."""
    if key[1].startswith(RECIPIENT_STATE_PREFIX):
        return models.stored_recipient_key(key[0], key[1].removeprefix(RECIPIENT_STATE_PREFIX))
    if key[1].startswith(PERSON_STATE_PREFIX):
        return models.stored_person_key(key[0], key[1].removeprefix(PERSON_STATE_PREFIX))
    return key


# items with ``as_stored``
_STORED_ELSEWHERE = (models.RecipientStateModel, models.RecipientLogPageModel, models.PersonStateModel)


def _state_key(item: Model) -> StateKey:
    return (str(item.delivery_id), str(item.sk))  # type: ignore[attr-defined]


class DynamoWorkflowStore:
    def __init__(self, client: Any = None, sqs: Any = None, *, chunk_bytes: int | None = None) -> None:
        self._client = client or boto3.client("dynamodb")
        self._chunk_bytes = chunk_bytes or MAX_CHUNK_BYTES
        self._table = WORKFLOW.table_name
        self._key = {"pk": {"S": STATE_PK}, "sk": {"S": STATE_SK}}
        self._queue_url = fallback.queue_url()
        self._sqs = sqs

    # --- lock and state ---------------------------------------------------------------------

    def _update(self, **arguments: Any) -> None:
        """An UpdateItem on the workflow table, tried again while it conflicts with a transaction in
        flight on its item (a worker's flush on the state item or its slot: botocore does not retry
        ``TransactionConflictException``)."""
        _tried_through_conflicts(
            lambda: self._client.update_item(TableName=self._table, **arguments),
            lambda error: isinstance(error, self._client.exceptions.TransactionConflictException),
            "an item",
            time.sleep,
        )

    def _update_state(self, owner: str, **arguments: Any) -> None:
        try:
            self._update(Key=self._key, **arguments)
        except self._client.exceptions.ConditionalCheckFailedException as error:
            raise LockLost(f"run {owner} no longer holds the tracking workflow lock") from error

    def acquire_lock(self, owner: str, now: float, ttl_seconds: int) -> bool:
        try:
            self._update(
                Key=self._key,
                UpdateExpression="SET lock_owner = :owner, lock_expires = :expires, "
                "checkpoints = if_not_exists(checkpoints, :empty), batch_seq = if_not_exists(batch_seq, :zero)",
                ConditionExpression="attribute_not_exists(lock_owner) OR lock_expires < :now",
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":expires": {"N": str(int(now + ttl_seconds))},
                    ":now": {"N": str(int(now))},
                    ":empty": {"M": {}},
                    ":zero": {"N": "0"},
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def renew_lock(self, owner: str, now: float, ttl_seconds: int) -> None:
        self._update_state(
            owner,
            UpdateExpression="SET lock_expires = :expires",
            ConditionExpression="lock_owner = :owner",
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":expires": {"N": str(int(now + ttl_seconds))},
            },
        )

    def release_lock(self, owner: str) -> None:
        # Taken over after expiry already? Then there is nothing of ours to release.
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._update(
                Key=self._key,
                UpdateExpression="REMOVE lock_owner, lock_expires",
                ConditionExpression="lock_owner = :owner",
                ExpressionAttributeValues={":owner": {"S": owner}},
            )

    def load_state(self) -> WorkflowState:
        item = self._client.get_item(TableName=self._table, Key=self._key, ConsistentRead=True).get(
            "Item", {}
        )
        checkpoints = {shard: value["S"] for shard, value in item.get("checkpoints", {}).get("M", {}).items()}
        return WorkflowState(
            checkpoints=checkpoints,
            batch_seq=int(item.get("batch_seq", {}).get("N", "0")),
            pending=self._pending_of(item, "pending_batch"),
            lock_owner=item.get("lock_owner", {}).get("S"),
            run_id=item.get("run_id", {}).get("S"),
            run_started=item.get("run_started", {}).get("S"),
            trigger=item.get("run_trigger", {}).get("S"),
            groups=[[s["S"] for s in g["L"]] for g in item.get("groups", {}).get("L", [])],
            phase=item.get("phase", {}).get("S"),
            drained=[int(n["N"]) for n in item.get("drained", {}).get("L", [])],
            plan_quarantined=int(item.get("plan_quarantined", {}).get("N", "0")),
            merge_outcome=item.get("merge_outcome", {}).get("B") or b"",
        )

    # --- the open run and its workers (workflow.py, "Scale-out") --------------------------------

    def open_run(
        self,
        owner: str,
        trigger: str,
        started: str,
        groups: list[list[str]],
        drained: list[int],
    ) -> None:
        """Open the run for its workers; it counts what the planners quarantined since the last run
        opened (``planning_quarantined``: its own planner's, and a crashed one's before it)."""
        self._update_state(
            owner,
            UpdateExpression="SET run_id = :owner, run_trigger = :trigger, run_started = :started, "
            "groups = :groups, phase = :phase, drained = :drained, "
            "plan_quarantined = if_not_exists(planning_quarantined, :zero), planning_quarantined = :zero "
            "REMOVE merge_outcome",
            ConditionExpression="lock_owner = :owner",
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":trigger": {"S": trigger},
                ":started": {"S": started},
                ":groups": {"L": [{"L": [{"S": shard} for shard in group]} for group in groups]},
                ":phase": {"S": WORK},
                ":drained": {"L": [{"N": str(n)} for n in drained]},
                ":zero": {"N": "0"},
            },
        )

    def set_phase(self, owner: str, phase: str, outcome: bytes | None = None) -> None:
        """The run's phase; with ``outcome``, what its merge quarantined, in the same update."""
        values: dict[str, Any] = {":owner": {"S": owner}, ":phase": {"S": phase}}
        expression = "SET phase = :phase"
        if outcome is not None:
            expression += ", merge_outcome = :outcome"
            values[":outcome"] = {"B": outcome}
        self._update_state(
            owner,
            UpdateExpression=expression,
            ConditionExpression="lock_owner = :owner",
            ExpressionAttributeValues=values,
        )

    def _worker_key(self, worker: int) -> dict[str, Any]:
        return {"pk": {"S": STATE_PK}, "sk": {"S": f"worker#{worker}"}}

    def start_worker(self, owner: str, worker: int) -> WorkerState:
        """The worker's slot, reset when it last served another run (the finisher emptied it)."""
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._update(
                Key=self._worker_key(worker),
                UpdateExpression="SET run_id = :owner, events = :zero, quarantined = :zero, "
                "seq = if_not_exists(seq, :zero)",
                ConditionExpression="attribute_not_exists(run_id) OR run_id <> :owner",
                ExpressionAttributeValues={":owner": {"S": owner}, ":zero": {"N": "0"}},
            )
        return self.load_worker(worker)

    def load_worker(self, worker: int) -> WorkerState:
        item = self._client.get_item(
            TableName=self._table, Key=self._worker_key(worker), ConsistentRead=True
        ).get("Item", {})
        return WorkerState(
            run_id=item.get("run_id", {}).get("S"),
            seq=int(item.get("seq", {}).get("N", "0")),
            events=int(item.get("events", {}).get("N", "0")),
            pending=self._pending_of(item, "pending"),
            quarantined=int(item.get("quarantined", {}).get("N", "0")),
        )

    # --- pending batches, in chunk items the state item or a worker slot points at --------------

    def _pending_of(self, item: dict[str, Any], inline: str) -> PendingBatch | None:
        """The pending batch the item points at; or the one it holds whole (``inline``), as a version
        that kept it in one attribute left it."""
        if "pending_at" in item:
            pointer = PendingChunks(item["pending_at"]["S"], int(item["pending_chunks"]["N"]))
            return pointer.batch(self._load_chunks(pointer))
        blob = item.get(inline, {}).get("B")
        return PendingBatch.decode(blob) if blob else None

    def _save_chunks(self, owner: str, step: str, pending: PendingBatch) -> PendingChunks:
        """Write the pending batch's chunk items (unconditionally: nothing reads them until the state
        points at them), each to expire on its own."""
        pointer, chunks = PendingChunks.of(owner, step, pending, self._chunk_bytes)
        expiry = _expiry()
        self._batch_write(
            [
                {
                    "PutRequest": {
                        "Item": {
                            "pk": {"S": key},
                            "sk": {"S": PENDING_CHUNK_SK},
                            "data": {"B": chunk},
                            **expiry,
                        }
                    }
                }
                for key, chunk in zip(pointer.chunk_keys(), chunks, strict=True)
            ]
        )
        return pointer

    def _load_chunks(self, pointer: PendingChunks) -> list[bytes]:
        keys = pointer.chunk_keys()
        found = {
            item["pk"]["S"]: item["data"]["B"]
            for item in self._batch_get([{"pk": {"S": key}, "sk": {"S": PENDING_CHUNK_SK}} for key in keys])
        }
        return [found[key] for key in keys if key in found]

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The workflow table's items at these keys (those that exist), read consistently in
        BatchGetItem requests of 100 keys, the keys DynamoDB leaves unprocessed asked again."""
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_KEYS):
            request: Any = {
                self._table: {"Keys": keys[start : start + BATCH_GET_KEYS], "ConsistentRead": True}
            }
            while request:
                answer = self._client.batch_get_item(RequestItems=request)
                items += answer.get("Responses", {}).get(self._table, [])
                request = answer.get("UnprocessedKeys") or {}
        return items

    def _state_condition(self, owner: str, open_only: bool) -> dict[str, Any]:
        condition = "lock_owner = :owner" + (" AND run_id = :owner AND phase = :work" if open_only else "")
        values: dict[str, Any] = {":owner": {"S": owner}}
        if open_only:
            values[":work"] = {"S": WORK}
        return {"ConditionExpression": condition, "ExpressionAttributeValues": values}

    def save_worker_pending(self, owner: str, worker: int, pending: PendingBatch) -> None:
        """Only while the run is open: a worker still writing after the finisher closed it must stop.
        Its chunks first, then the slot points at them."""
        pointer = self._save_chunks(owner, f"worker{worker}", pending)
        # An update that changes nothing but checks the run is open (UpdateItem: no other permission)
        check: Any = {
            "TableName": self._table,
            "Key": self._key,
            "UpdateExpression": "SET phase = :work",
            **self._state_condition(owner, True),
        }
        try:
            transact(
                self._client,
                [
                    {"Update": check},
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": self._worker_key(worker),
                            "UpdateExpression": "SET pending_at = :at, pending_chunks = :count, "
                            "pending_seq = :seq",
                            "ConditionExpression": "run_id = :owner",
                            "ExpressionAttributeValues": {
                                ":owner": {"S": owner},
                                ":at": {"S": pointer.at},
                                ":count": {"N": str(pointer.count)},
                                ":seq": {"N": str(pending.seq)},
                            },
                        }
                    },
                ],
            )
        except self._client.exceptions.TransactionCanceledException as error:
            raise LockLost(f"run {owner} is closed or lost the lock (worker {worker})") from error

    def complete_worker_pending(
        self, owner: str, worker: int, pending: PendingBatch, *, open_only: bool, quarantined: int = 0
    ) -> None:
        """Move the checkpoints of a worker's pending batch, count its events and the items it
        quarantined (``quarantined``: before the flush and in applying it) and remove it, in one
        transaction; nothing when it is completed already (the finisher replayed it, or the worker)."""
        assignments: list[str] = []
        names: dict[str, str] = {}
        condition = self._state_condition(owner, open_only)
        values: dict[str, Any] = dict(condition["ExpressionAttributeValues"])
        for n, (shard, checkpoint) in enumerate(sorted(pending.checkpoints.items())):
            assignments.append(f"checkpoints.#shard{n} = :checkpoint{n}")
            names[f"#shard{n}"] = shard
            values[f":checkpoint{n}"] = {"S": checkpoint}
        state: dict[str, Any] = {"TableName": self._table, "Key": self._key, **condition}
        state["ExpressionAttributeValues"] = values
        if assignments:
            state["UpdateExpression"] = "SET " + ", ".join(assignments)
            state["ExpressionAttributeNames"] = names
        else:  # nothing moves; checks the lock all the same (UpdateItem: no other permission)
            state["UpdateExpression"] = "SET lock_owner = :owner"
        state_action = {"Update": state}
        worker_action = {
            "Update": {
                "TableName": self._table,
                "Key": self._worker_key(worker),
                "UpdateExpression": "SET seq = :seq, events = events + :events, "
                "quarantined = if_not_exists(quarantined, :zero) + :quarantined "
                "REMOVE pending, pending_at, pending_chunks, pending_seq",
                "ConditionExpression": "pending_seq = :seq",
                "ExpressionAttributeValues": {
                    ":seq": {"N": str(pending.seq)},
                    ":events": {"N": str(pending.events)},
                    ":quarantined": {"N": str(quarantined)},
                    ":zero": {"N": "0"},
                },
            }
        }
        try:
            transact(self._client, [state_action, worker_action])
        except self._client.exceptions.TransactionCanceledException as error:
            found = self.load_worker(worker)
            if found.pending is None or found.pending.seq != pending.seq:
                return  # completed already
            raise LockLost(f"run {owner} is closed or lost the lock (worker {worker})") from error

    def _partition_put(self, pk: str, entries: list[tuple[str, bytes]]) -> None:
        """A run's pages (merge, slices): deleted when the run is merged, and expiring as pending chunks do,
        so those of a run nobody finishes (an older version's, across a deploy) do not stay for good."""
        expiry = _expiry()
        requests = [
            {"PutRequest": {"Item": {"pk": {"S": pk}, "sk": {"S": sk}, "data": {"B": blob}, **expiry}}}
            for sk, blob in entries
        ]
        self._batch_write(requests)

    def _batch_write(self, writes: list[dict[str, Any]]) -> None:
        """The writes in BatchWriteItem requests of 25, up to ``WRITERS`` of them in flight at once."""
        requests = [
            writes[start : start + BATCH_WRITE_ITEMS] for start in range(0, len(writes), BATCH_WRITE_ITEMS)
        ]
        _sent_at_once(self._write_request, requests)

    def _write_request(self, writes: list[dict[str, Any]]) -> None:
        """One BatchWriteItem request, the writes DynamoDB leaves unprocessed sent again after a
        growing wait."""
        pending: Any = {self._table: writes}
        for attempt in range(20):
            answer = self._client.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(0.05 * 2**attempt, 2.0))
        raise RuntimeError("DynamoDB left writes unprocessed after 20 attempts")

    def _partition(self, pk: str) -> list[dict[str, Any]]:
        arguments: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            answer = self._client.query(**arguments)
            items += answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return items
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def _delete_partition(self, pk: str) -> None:
        keys = [{"pk": item["pk"], "sk": item["sk"]} for item in self._partition(pk)]
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])

    def put_partials(self, run_id: str, worker: int, items: list[Model]) -> None:
        """Each item in its partition, 25 items (of any partitions) to a request, a few in flight at once."""
        writes = []
        expiry = _expiry()
        for item in items:
            key = partial_key(_state_key(item))
            stored = {
                "pk": {"S": _partial_pk(run_id, worker, key)},
                "sk": {"S": key},
                "data": {"B": encode_items([item])},
                **expiry,
            }
            writes.append({"PutRequest": {"Item": stored}})
        self._batch_write(writes)

    def load_partials(self, run_id: str, worker: int, keys: Iterable[StateKey]) -> dict[StateKey, Model]:
        wanted = [
            {"pk": {"S": _partial_pk(run_id, worker, partial_key(key))}, "sk": {"S": partial_key(key)}}
            for key in keys
        ]
        return {
            _state_key(model): model
            for item in self._batch_get(wanted)
            for model in decode_items(item["data"]["B"])
        }

    def load_partials_and_indicators(
        self, run_id: str, worker: int, partial_keys: list[StateKey], keys: list[StateKey]
    ) -> tuple[dict[StateKey, Model], dict[StateKey, Model]]:
        """A worker's partial items at ``partial_keys`` and the stored indicator items at ``keys``, the two
        reads sent at once: a worker of several waits for one of them, not for one after the other."""
        reads: list[Callable[[], dict[StateKey, Model]]] = [
            lambda: self.load_partials(run_id, worker, partial_keys),
            lambda: self.load_indicators(keys),
        ]
        partials, stored = _sent_at_once(lambda read: read(), reads)
        return partials, stored

    def save_merge(self, owner: str, run_id: str, pages: list[bytes]) -> None:
        self._delete_partition(f"merge#{run_id}")  # a page left by an interrupted finisher
        self._partition_put(f"merge#{run_id}", [(f"{n:06d}", page) for n, page in enumerate(pages)])
        self.set_phase(owner, MERGING)

    def load_merge(self, run_id: str) -> list[bytes]:
        return [item["data"]["B"] for item in self._partition(f"merge#{run_id}")]

    def delete_merge(self, run_id: str) -> None:
        self._delete_partition(f"merge#{run_id}")

    # --- slices of the merge (README "Scale-out"): slice k is partition k of every worker's partials

    def slice_partials(self, run_id: str, worker: int, spread: int) -> list[Model]:
        items = self._partition(_partial_partition(run_id, worker, spread))
        return [model for item in items for model in decode_items(item["data"]["B"])]

    def save_slice(self, run_id: str, spread: int, pages: list[bytes], summary: bytes) -> None:
        """The pages, then the summary: a slice with a summary is saved whole."""
        pk = _slice_pk(run_id, spread)
        self._delete_partition(pk)  # pages a slice interrupted before its summary left
        self._partition_put(pk, [(f"{n:06d}", page) for n, page in enumerate(pages)])
        self._partition_put(pk, [(SLICE_SUMMARY_SK, summary)])

    def load_slice(self, run_id: str, spread: int) -> SavedSlice | None:
        answer = self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk >= :summary",
            ExpressionAttributeValues={
                ":pk": {"S": _slice_pk(run_id, spread)},
                ":summary": {"S": SLICE_SUMMARY_SK},
            },
            ConsistentRead=True,
        )
        found = {item["sk"]["S"]: item["data"]["B"] for item in answer.get("Items", [])}
        if SLICE_SUMMARY_SK not in found:
            return None
        return SavedSlice(found[SLICE_SUMMARY_SK], SLICE_PUT_SK in found, found.get(SLICE_PUT_SK) or b"")

    def slice_pages(self, run_id: str, spread: int) -> list[bytes]:
        items = self._partition(_slice_pk(run_id, spread))
        return [
            item["data"]["B"] for item in items if item["sk"]["S"] not in (SLICE_SUMMARY_SK, SLICE_PUT_SK)
        ]

    def slice_put(self, run_id: str, spread: int, outcome: bytes) -> None:
        self._partition_put(_slice_pk(run_id, spread), [(SLICE_PUT_SK, outcome)])

    def delete_slice_partials(self, run_id: str, workers: int, spread: int) -> None:
        for worker in range(workers):
            self._delete_partition(_partial_partition(run_id, worker, spread))

    def delete_slices(self, run_id: str) -> None:
        for spread in range(PARTIAL_SPREAD):
            self._delete_partition(_slice_pk(run_id, spread))

    def save_pending(self, owner: str, pending: PendingBatch) -> None:
        """The chunks first, then the state item points at them: the pending batch exists at once."""
        pointer = self._save_chunks(owner, "planner", pending)
        self._update_state(
            owner,
            UpdateExpression="SET pending_at = :at, pending_chunks = :count",
            ConditionExpression="lock_owner = :owner",
            ExpressionAttributeValues={
                ":owner": {"S": owner},
                ":at": {"S": pointer.at},
                ":count": {"N": str(pointer.count)},
            },
        )

    def complete_pending(self, owner: str, pending: PendingBatch, quarantined: int = 0) -> None:
        """Move every checkpoint of the pending batch, count what it quarantined (``quarantined``: before
        the flush and in applying it) for the next run to open, and remove it, in one conditional update."""
        assignments = [
            "batch_seq = :seq",
            "planning_quarantined = if_not_exists(planning_quarantined, :zero) + :quarantined",
        ]
        values: dict[str, Any] = {
            ":owner": {"S": owner},
            ":seq": {"N": str(pending.seq)},
            ":zero": {"N": "0"},
            ":quarantined": {"N": str(quarantined)},
        }
        names: dict[str, str] = {}
        for n, (shard, checkpoint) in enumerate(sorted(pending.checkpoints.items())):
            assignments.append(f"checkpoints.#shard{n} = :checkpoint{n}")
            names[f"#shard{n}"] = shard
            values[f":checkpoint{n}"] = {"S": checkpoint}
        self._update_state(
            owner,
            UpdateExpression=f"SET {', '.join(assignments)} REMOVE pending_batch, pending_at, pending_chunks",
            ConditionExpression="lock_owner = :owner",
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": names} if names else {}),
        )

    def save_run(self, run: RunModel) -> None:
        run.save()

    def load_run(self, run_id: str) -> RunModel | None:
        try:
            return RunModel.get(models.RUNS_PK, run_id, consistent_read=True)
        except RunModel.DoesNotExist:
            return None

    # --- reads ------------------------------------------------------------------------------

    def read_raw(
        self, shard: str, after: str | None, upto: str, limit: int
    ) -> list[RawEventModel | Unreadable]:
        """The items of ``shard`` after ``after`` up to ``upto``, in order, each read on its own: one
        that is not a raw event comes back as ``Unreadable`` and does not keep the others from being read."""
        arguments: dict[str, Any] = {
            "TableName": RAW_EVENTS.table_name,
            "ConsistentRead": True,
            "ExpressionAttributeNames": {"#shard": "shard", "#sk": "sk"},
        }
        if after is not None:
            arguments["KeyConditionExpression"] = "#shard = :shard AND #sk BETWEEN :after AND :upto"
            values = {":after": {"S": after + "\x00"}}
        else:
            arguments["KeyConditionExpression"] = "#shard = :shard AND #sk <= :upto"
            values = {}
        arguments["ExpressionAttributeValues"] = {":shard": {"S": shard}, ":upto": {"S": upto}, **values}
        items: list[dict[str, Any]] = []
        while len(items) < limit:
            answer = self._client.query(**arguments, Limit=limit - len(items))
            items += answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                break
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return [raw_event(item) for item in items]

    def in_quarantine(self, keys: Iterable[str]) -> set[str]:
        found = models.QuarantineModel.batch_get(
            [(models.QUARANTINE_PK, key) for key in keys],
            consistent_read=True,
            attributes_to_get=["pk", "sk"],
        )
        return {str(item.sk) for item in found}

    def logged(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """The keys whose tracking log is in its chain (``log_chain_store.find``)."""
        return set(log_chain_store.find(keys, client=self._client))

    def load_logs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]:
        """Whole tracking logs from their chains, to rewrite them."""
        return log_chain_store.find(keys, client=self._client)

    def tracked_urls(self, delivery_id: str) -> list[TrackedUrlModel]:
        return list(TrackedUrlModel.query(delivery_id))

    def message_domains(self, delivery_id: str, recipient_ids: Iterable[str]) -> dict[str, str | None]:
        keys = [(delivery_id, MESSAGE_PREFIX + rid) for rid in recipient_ids]
        return {m.recipient_id: m.email_domain for m in MessageModel.batch_get(keys, consistent_read=True)}

    def load_indicators(self, keys: Iterable[StateKey]) -> dict[StateKey, Model]:
        by_model: dict[type[Model], list[StateKey]] = defaultdict(list)
        for key in keys:
            by_model[indicator_model(key[1])].append(_stored_key(key))
        found: dict[StateKey, Model] = {}
        for model, model_keys in by_model.items():
            for item in model.batch_get(model_keys, consistent_read=True):
                if isinstance(item, _STORED_ELSEWHERE):
                    item = item.as_read()
                found[(str(getattr(item, "delivery_id")), str(getattr(item, "sk")))] = item  # noqa: B009
        return found

    # --- writes -----------------------------------------------------------------------------

    def put_items(self, items: Iterable[Model]) -> list[Refused]:
        """Tracking logs into their chains (``log_chain_store.write_logs``); the other items in
        BatchWriteItem requests of 25 items, a few in flight at once: a flush puts thousands.

        Every write is idempotent (a whole-item put, a log merged into its chain by its sort key), so
        when one request fails the others may land: the caller's pending batch (or the next run)
        writes them all again. Items DynamoDB refuses for what they hold are not put and come back,
        for the caller to quarantine (a refused chain item: the one log of it that DynamoDB refuses
        alone); every other item is put.
        """
        by_model: dict[type[Model], list[Model]] = defaultdict(list)
        logs: list[TrackingLogModel] = []
        for item in items:
            if isinstance(item, TrackingLogModel):
                logs.append(item)
            else:
                by_model[type(item)].append(item.as_stored() if isinstance(item, _STORED_ELSEWHERE) else item)
        refused_logs = [
            Refused(log, reason) for log, reason in log_chain_store.write_logs(logs, client=self._client)
        ]
        requests = [
            (model, model_items[start : start + BATCH_WRITE_ITEMS])
            for model, model_items in by_model.items()
            for start in range(0, len(model_items), BATCH_WRITE_ITEMS)
        ]
        refused = [
            found
            for answer in _sent_at_once(lambda request: _batch_put(*request), requests)
            for found in answer
        ]
        return refused_logs + [
            Refused(found.item.as_read(), found.error) if isinstance(found.item, _STORED_ELSEWHERE) else found
            for found in refused
        ]

    def quarantine(self, items: Iterable[models.QuarantineModel]) -> None:
        for item in items:
            item.save()

    def quarantine_counted(self, owner: str, worker: int | None, items: list[models.QuarantineModel]) -> None:
        """Keep items (kept nowhere yet) and add their number to the step's count, in one transaction
        per chunk: a worker's slot while its run is open, else the planners' count in the state item
        (``planning_quarantined``), which the next run to open takes. Kept means counted, however
        often the step is retried: a retry that reads the item again finds it kept (README
        "Quarantined writes")."""
        for chunk in _transaction_chunks(items):
            count = {":owner": {"S": owner}, ":n": {"N": str(len(chunk))}, ":zero": {"N": "0"}}
            if worker is None:
                tally: dict[str, Any] = {
                    "Key": self._key,
                    "UpdateExpression": "SET planning_quarantined = "
                    "if_not_exists(planning_quarantined, :zero) + :n",
                    "ConditionExpression": "lock_owner = :owner",
                    "ExpressionAttributeValues": count,
                }
                checks: list[dict[str, Any]] = []
            else:
                tally = {
                    "Key": self._worker_key(worker),
                    "UpdateExpression": "SET quarantined = if_not_exists(quarantined, :zero) + :n",
                    "ConditionExpression": "run_id = :owner",
                    "ExpressionAttributeValues": count,
                }
                # An update that changes nothing but checks the run is open (as save_worker_pending)
                checks = [
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": self._key,
                            "UpdateExpression": "SET phase = :work",
                            **self._state_condition(owner, True),
                        }
                    }
                ]
            puts = [{"Put": {"TableName": self._table, "Item": item.serialize()}} for item in chunk]
            actions: list[Any] = [*checks, {"Update": {"TableName": self._table, **tally}}, *puts]
            try:
                transact(self._client, actions)
            except self._client.exceptions.TransactionCanceledException as error:
                raise LockLost(f"run {owner} is closed or lost the lock (quarantining)") from error

    def deleted_deliveries(self, delivery_ids: Iterable[str]) -> set[str]:
        keys = [(delivery_id, models.DELIVERY_SK) for delivery_id in delivery_ids]
        found = models.DeliveryModel.batch_get(
            keys, consistent_read=True, attributes_to_get=["delivery_id", "sk", "deleted_at"]
        )
        return {str(item.delivery_id) for item in found if item.deleted_at}

    # --- the fallback queue of raw events the redirect could not write -----------------------

    def _queue(self) -> Any:
        if self._sqs is None:
            self._sqs = boto3.client("sqs")
        return self._sqs

    def receive_fallback(self, limit: int) -> list[FallbackMessage]:
        if not self._queue_url:
            return []
        answer = self._queue().receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=min(limit, 10), WaitTimeSeconds=0
        )
        return [
            fallback.decode(message["ReceiptHandle"], message.get("Body", ""))
            for message in answer.get("Messages", [])
        ]

    def put_raw(self, item: dict[str, Any]) -> None:
        try:
            self._client.put_item(TableName=RAW_EVENTS.table_name, Item=item)
        except ParamValidationError as error:  # not attribute values at all: refused before it is sent
            raise WriteRefused(f"ParamValidationError: {error}"[:1_000]) from error
        except self._client.exceptions.ClientError as error:
            reason = refusal(error)
            if reason is None:
                raise
            raise WriteRefused(reason) from error

    def delete_fallback(self, receipts: list[str]) -> None:
        for start in range(0, len(receipts), 10):
            entries = [{"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(receipts[start : start + 10])]
            self._queue().delete_message_batch(QueueUrl=self._queue_url, Entries=entries)

    # --- erasure requests ---------------------------------------------------------------------

    def pending_erasures(self) -> list[models.ErasureModel]:
        return list(models.ErasureModel.query(models.ERASURE_PENDING_PK, consistent_read=True))

    def recipient_state_keys(self, recipient_id: str) -> list[tuple[str, str]]:
        """Their states (keys in memory) and the pages of log keys they spilled (stored keys)."""
        states = [(share.delivery_id, share.state_sk) for share in recipient_logs.log_shares(recipient_id)]
        return states + recipient_logs.page_keys(recipient_id)

    def recipient_log_keys(self, recipient_id: str) -> list[tuple[str, str]]:
        return [(share.partition, sk) for share in recipient_logs.log_keys(recipient_id) for sk in share.sks]

    def recipient_raw_keys(self, recipient_id: str) -> list[tuple[str, str]]:
        """Reads every shard through a filter: erasure is rare, and a recipient index on raw
        events would cost a write unit on every hit."""
        keys = []
        for shard in [*raw_events.shards(), *raw_events.legacy_shards()]:
            found = RawEventModel.query(
                shard,
                filter_condition=RawEventModel.recipient_id == recipient_id,
                attributes_to_get=["shard", "sk"],
            )
            keys += [(str(event.shard), str(event.sk)) for event in found]
        return keys

    def _delete(self, model: type[Model], keys: Iterable[tuple[str, str]]) -> None:
        hash_name, range_name = str(model._hash_keyname), str(model._range_keyname)
        with model.batch_write() as batch:
            for hash_key, range_key in keys:
                batch.delete(model(**{hash_name: hash_key, range_name: range_key}))  # type: ignore[arg-type]

    def delete_logs(self, keys: Iterable[tuple[str, str]]) -> None:
        """Out of their chains (and the opt-out feed): each chain rewritten without them."""
        log_chain_store.write_logs([], removed=keys, client=self._client)

    def delete_raw(self, keys: Iterable[tuple[str, str]]) -> None:
        self._delete(RawEventModel, keys)

    def delete_indicators(self, keys: Iterable[tuple[str, str]]) -> None:
        self._delete(models.RecipientStateModel, [_stored_key(key) for key in keys])

    def complete_erasure(self, pending: models.ErasureModel, done: models.ErasureModel) -> None:
        done.save()
        # BatchWriteItem, like every other delete here: the role has no DeleteItem at all
        self._delete(models.ErasureModel, [(str(pending.pk), str(pending.sk))])
