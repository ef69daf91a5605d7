"""The tests' in-memory WorkflowStore, made to hold a million events: same semantics, leaner keeping.

``tests/fakes_workflow.FakeWorkflowStore`` scans a shard's whole list on every read and copies every
item through PynamoDB serialization, which is right for a few hundred events and quadratic at a
million. This subclass changes only how data is kept: raw events compact and sorted per shard (read
with a binary search and turned into ``RawEventModel`` items as the DynamoDB store's query does),
tracking logs as their keys (the workflow only ever asks whether one exists), indicator items handed
over by reference. So a run in memory measures the workflow's own logic (and its pending-batch
encoding), without the (de)serialization a DynamoDB client adds; the moto runs measure that. Locks,
checkpoints, the pending batch and the fallback queue are the parent's. No crash is injected here, so
sharing items by reference cannot change a result (the scaling figure checks the indicators against
moto's).

What the store keeps stands for the database, not the function's heap: after every write it is moved
out of the garbage collector's sight (``gc.freeze``), as the seeded events are. Otherwise each full
collection would walk a million stored objects, a cost that grows with the run and that a function
writing to DynamoDB never pays. (The indicator items the workflow still holds are the same objects, so
their collection cost, bounded by the run's flush and memory bounds, is left out too.)

``LatencyAccountingStore`` (figure 11) also counts the DynamoDB requests ``DynamoWorkflowStore`` would
make for each call, by operation, and the ones a caller waits for one after another (a call's
BatchWriteItem requests go several at once; tracking logs are written and found in their chains, as
``log_chain_store`` does), so that a figure can add DynamoDB's latency on a virtual clock.
"""

from __future__ import annotations

import bisect
import gc
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Self, TypeVar

from pynamodb.models import Model

from bench.campaign import Campaign
from bench.common import latency_s
from functions.consolidate.batch import StateKey
from functions.consolidate.store import (
    BATCH_WRITE_ITEMS,
    PARTIAL_SPREAD,
    WRITERS,
    PendingBatch,
    PendingChunks,
    Refused,
    _partial_partition,
    _partial_pk,
    indicator_model,
    partial_key,
)
from functions.shared import log_chain_store, raw_events
from functions.shared.models import (
    PERSON_STATE_PREFIX,
    STATS_SK,
    PersonStateModel,
    QuarantineModel,
    RawEventModel,
    RecipientLogPageModel,
    RecipientStateModel,
    TrackedUrlModel,
    TrackingLogModel,
    stored_person_key,
    stored_recipient_key,
)
from functions.shared.raw_events import RawEvent
from functions.shared.tables import TRACKING_LOGS, WORKFLOW
from functions.shared.timeutil import iso
from tests.fakes_workflow import FakeWorkflowStore

RAW_EVENT_TTL_DAYS = 30
STAT_NAMES = (
    "opens",
    "total_opens",
    "clicks",
    "person_clicks",
    "total_clicks",
    "opt_outs",
    "mirror_page_views",
)


class ScalableWorkflowStore(FakeWorkflowStore):
    """``keep_logs`` keeps the tracking logs themselves, for a figure that loads them into moto."""

    def __init__(self, *, keep_logs: bool = False) -> None:
        super().__init__()
        self.kept_logs: list[TrackingLogModel] | None = [] if keep_logs else None
        self._events: dict[str, list[tuple[str, RawEvent]]] = {}  # shard -> (sort key, event), sorted
        self._sort_keys: dict[str, list[str]] = {}
        self._stored: dict[StateKey, Model] = {}
        self._domains: dict[tuple[str, str], str | None] = {}
        self.log_keys: set[tuple[str, str]] = set()
        self.items_written = 0

    # --- seeding --------------------------------------------------------------------------------

    def seed_events(self, events: Iterable[RawEvent], shards: int | None = None) -> int:
        """``shards``: raw-event shards to spread the events over (None: the deploy-time setting)."""
        seeded = 0
        for event in events:
            shard = raw_events.shard_of(event.delivery_id, event.recipient_id, shards)
            sort_key = raw_events.sort_key(iso(event.at), event.event_id)
            self._events.setdefault(shard, []).append((sort_key, event))
            seeded += 1
        for shard, events_of_shard in self._events.items():
            events_of_shard.sort(key=lambda pair: pair[0])
            self._sort_keys[shard] = [sort_key for sort_key, _ in events_of_shard]
        return seeded

    def seed_urls(self, urls: Iterable[TrackedUrlModel]) -> None:
        for url in urls:
            self.add_url(url)

    def seed_domains(self, delivery_id: str, domains: dict[str, str | None]) -> None:
        for recipient_id, domain in domains.items():
            self._domains[(delivery_id, recipient_id)] = domain

    def seed_campaign(self, campaign: Campaign, shards: int | None = None) -> None:
        """The campaign's raw events (over ``shards``), its tracked URLs and its recipients' email domains."""
        from bench.moto_backend import tracked_url_models

        self.seed_events(campaign.raw_events(), shards)
        self.seed_urls(tracked_url_models(campaign.delivery_id, campaign.links))
        self.seed_domains(
            campaign.delivery_id,
            {campaign.recipient_id(n): campaign.email_domain(n) for n in range(campaign.recipients)},
        )

    def sharing_seed(self) -> Self:
        """A new store of this kind holding what this one was seeded with (shared: no run writes raw
        events, tracked URLs or domains), and nothing a run wrote: seed once, run several times."""
        store = type(self)(keep_logs=self.kept_logs is not None)
        store._events, store._sort_keys, store._domains = self._events, self._sort_keys, self._domains
        store.urls = self.urls
        return store

    # --- the WorkflowStore operations whose keeping changes -------------------------------------

    def read_raw(self, shard: str, after: str | None, upto: str, limit: int) -> list[RawEventModel]:
        self._call("read_raw")
        keys = self._sort_keys.get(shard, [])
        start = 0 if after is None else bisect.bisect_right(keys, after)
        stop = min(bisect.bisect_right(keys, upto), start + limit)
        return [
            RawEventModel.from_raw_data(raw_events.to_item(event, RAW_EVENT_TTL_DAYS))
            for _, event in self._events.get(shard, [])[start:stop]
        ]

    def logged(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        self._call("logged")
        return {key for key in keys if key in self.log_keys}

    def load_logs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]:
        self._call("load_logs")
        wanted = set(keys)
        kept = {(str(log.partition), str(log.sk)): log for log in self.kept_logs or ()}
        return {key: log for key, log in kept.items() if key in wanted}

    def message_domains(self, delivery_id: str, recipient_ids: Iterable[str]) -> dict[str, str | None]:
        self._call("message_domains")
        found = ((rid, (delivery_id, rid)) for rid in recipient_ids)
        return {rid: self._domains[key] for rid, key in found if key in self._domains}

    def load_indicators(self, keys: Iterable[StateKey]) -> dict[StateKey, Model]:
        self._call("load_indicators")
        return {key: self._stored[key] for key in keys if key in self._stored}

    def put_items(self, items: Iterable[Model]) -> list[Refused]:
        self._call("put_items")
        for item in items:
            if isinstance(item, TrackingLogModel):
                self.log_keys.add((str(item.partition), str(item.sk)))
                if self.kept_logs is not None:
                    self.kept_logs.append(item)
            else:
                self._stored[(str(item.delivery_id), str(item.sk))] = item  # type: ignore[attr-defined]
            self.items_written += 1
        gc.freeze()  # the stored items are the database's now (see the module's docstring)
        return []  # nothing here is refused: the figures measure the workflow, not bad input

    # --- reading results ---

    def consolidated(self) -> list[Model]:
        """Every item the workflow left: indicator items, then the kept tracking logs."""
        return [*self._stored.values(), *(self.kept_logs or [])]

    def stats(self, delivery_id: str) -> dict[str, int]:
        item = self._stored.get((delivery_id, STATS_SK))
        return {name: int(getattr(item, name)) if item else 0 for name in STAT_NAMES}


# --- DynamoDB's latency, on a virtual clock ----------------------------------------------------------

# The DynamoDB (and SQS) requests ``DynamoWorkflowStore`` makes for one call of each operation whatever
# its arguments (``functions/consolidate/store.py``): a read of one shard's batch is one Query (100 raw
# events are far below a Query page's 1 MB), a state change one UpdateItem, and so on.
REQUESTS_PER_CALL: dict[str, tuple[str, ...]] = {
    "acquire_lock": ("UpdateItem",),
    "renew_lock": ("UpdateItem",),
    "release_lock": ("UpdateItem",),
    "open_run": ("UpdateItem",),
    "set_phase": ("UpdateItem",),
    "save_pending": ("UpdateItem",),
    "complete_pending": ("UpdateItem",),
    "start_worker": ("UpdateItem", "GetItem"),
    "load_state": ("GetItem",),
    "load_worker": ("GetItem",),
    "load_run": ("GetItem",),
    "load_slice": ("Query",),  # the summary and the put mark, a few hundred bytes
    "slice_put": ("BatchWriteItem",),
    "save_run": ("PutItem",),
    "save_worker_pending": ("TransactWriteItems",),
    "load_pending_chunks": ("BatchGetItem",),  # a pending batch's chunks: far fewer than 100 keys
    "complete_worker_pending": ("TransactWriteItems",),
    "quarantine_counted": ("TransactWriteItems",),
    "read_raw": ("Query",),
    "tracked_urls": ("Query",),
    "pending_erasures": ("Query",),
    "receive_fallback": ("ReceiveMessage",),  # in AWS the fallback queue exists, so it is asked
}
BATCH_GET_KEYS = 100  # DynamoDB's limit on one BatchGetItem request (PynamoDB's batch_get pages so)
LOGS_PER_ITEM = 14  # tracking logs a chain item holds, about (log_chains: ~60 bytes each compressed)
QUERY_PAGE_BYTES = 1_000_000  # a Query answers at most 1 MB a page
# Counted by the overrides below, from their arguments: how many keys, items, partitions, bytes.
_SIZED = {
    "load_indicators",
    "logged",
    "load_logs",
    "message_domains",
    "in_quarantine",
    "deleted_deliveries",
    "load_partials",
    "put_pending_chunk",
    "put_items",
    "put_partial",
    "slice_partials",
    "save_slice",
    "slice_pages",
    "delete_slices",
    "delete_slice_partials",
    "save_merge",
    "load_merge",
    "delete_merge",
    "quarantine",
}


Key = TypeVar("Key")
Found = TypeVar("Found")


def _pages(count: int, per_page: int) -> int:
    return -(-count // per_page)


class LatencyAccountingStore(ScalableWorkflowStore):
    """The scalable store, counting the requests ``DynamoWorkflowStore`` would make for each call.

    ``requests`` counts them by DynamoDB operation (BatchGetItem, Query, …). ``waits`` counts the
    same requests as a caller waits for them: requests the store sends at once (every call's
    BatchWriteItem requests, up to ``WRITERS`` in flight) count as one wait per group, the wall time of a
    group being its slowest request's. Multiplied by a per-request latency, ``waits`` are the time a
    function would wait for DynamoDB (a virtual clock: nothing here sleeps). An operation whose
    requests are not known here raises, rather than cost nothing.
    """

    def __init__(self, *, keep_logs: bool = False) -> None:
        super().__init__(keep_logs=keep_logs)
        self.requests: dict[str, int] = {}
        self.waits: dict[str, int] = {}
        self.writes_by_key: dict[tuple[str, str], int] = {}  # items put, by table and partition key

    def _request(self, operation: str, count: int = 1, *, at_once: int = 1) -> None:
        """``count`` requests, sent ``at_once`` at a time."""
        if count > 0:
            self.requests[operation] = self.requests.get(operation, 0) + count
            self.waits[operation] = self.waits.get(operation, 0) + _pages(count, at_once)

    def _call(self, operation: str) -> None:
        if operation in REQUESTS_PER_CALL:
            for request in REQUESTS_PER_CALL[operation]:
                self._request(request)
        elif operation not in _SIZED:
            raise KeyError(f"no DynamoDB requests known for the store operation {operation!r}")
        super()._call(operation)

    def _batch_get(self, keys: Iterable[Key]) -> list[Key]:
        wanted = list(keys)
        self._request("BatchGetItem", _pages(len(wanted), BATCH_GET_KEYS))
        return wanted

    # --- reads in BatchGetItem requests of 100 keys ---------------------------------------------

    def load_indicators(self, keys: Iterable[StateKey]) -> dict[StateKey, Model]:
        wanted = list(keys)
        by_model: dict[type[Model], int] = {}
        for key in wanted:  # one batch_get per model (table), as the DynamoDB store does
            model = indicator_model(key[1])
            by_model[model] = by_model.get(model, 0) + 1
        for keys_of_model in by_model.values():
            self._request("BatchGetItem", _pages(keys_of_model, BATCH_GET_KEYS))
        return super().load_indicators(wanted)

    def _find(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """``log_chain_store.find``: a Query for a chain's lone key; the owner and a page or two of
        its range for several keys of a chain; ``READERS`` at once."""
        wanted = list(keys)
        by_chain = Counter(chain for chain, _ in wanted)
        queries = sum(1 if n == 1 else 3 for n in by_chain.values())
        self._request("Query", queries, at_once=log_chain_store.READERS)
        return wanted

    def logged(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        return super().logged(self._find(keys))

    def load_logs(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]:
        return super().load_logs(self._find(keys))

    def message_domains(self, delivery_id: str, recipient_ids: Iterable[str]) -> dict[str, str | None]:
        return super().message_domains(delivery_id, self._batch_get(recipient_ids))

    def in_quarantine(self, keys: Iterable[str]) -> set[str]:
        return super().in_quarantine(self._batch_get(keys))

    def deleted_deliveries(self, delivery_ids: Iterable[str]) -> set[str]:
        return super().deleted_deliveries(self._batch_get(delivery_ids))

    def load_partials(self, run_id: str, worker: int, keys: Iterable[StateKey]) -> dict[StateKey, Model]:
        return super().load_partials(run_id, worker, self._batch_get(keys))

    def load_partials_and_indicators(
        self, run_id: str, worker: int, partial_keys: list[StateKey], keys: list[StateKey]
    ) -> tuple[dict[StateKey, Model], dict[StateKey, Model]]:
        partials, stored = self._at_once(
            lambda: self.load_partials(run_id, worker, partial_keys), lambda: self.load_indicators(keys)
        )
        return partials, stored

    def _at_once(self, *reads: Callable[[], Found]) -> list[Found]:
        """Reads the DynamoDB store sends at once (``_sent_at_once``, each in a thread of its own): every
        request counted, the wait the slowest read's, as a put's concurrent requests are."""
        start = self.waits
        answers: list[Found] = []
        waits: list[dict[str, int]] = []
        for read in reads:
            self.waits = dict(start)
            answers.append(read())
            waits.append(self.waits)
        self.waits = max(
            waits, key=lambda wait: latency_s({op: n - start.get(op, 0) for op, n in wait.items()})
        )
        return answers

    # --- writes in BatchWriteItem requests of 25 items ------------------------------------------

    def put_items(self, items: Iterable[Model]) -> list[Refused]:
        written = list(items)
        self._write_chains([item for item in written if isinstance(item, TrackingLogModel)])
        by_model: dict[type[Model], int] = {}
        for item in written:  # one BatchWriteItem request per 25 items of one model (table)
            if isinstance(item, TrackingLogModel):
                continue
            by_model[type(item)] = by_model.get(type(item), 0) + 1
            if isinstance(item, (RecipientStateModel, RecipientLogPageModel)):  # in the recipient's partition
                partition = stored_recipient_key(str(item.delivery_id), str(item.recipient_id))[0]
            elif isinstance(item, PersonStateModel):  # stored in one of its delivery's person partitions
                person_id = str(item.sk).removeprefix(PERSON_STATE_PREFIX)
                partition = stored_person_key(str(item.delivery_id), person_id)[0]
            else:
                partition = str(getattr(item, str(item._hash_keyname)))
            key = (str(item.Meta.table_name), partition)
            self.writes_by_key[key] = self.writes_by_key.get(key, 0) + 1
        # the store sends every request of the call (all tables) to a pool of WRITERS threads
        batches = sum(_pages(items_of_model, BATCH_WRITE_ITEMS) for items_of_model in by_model.values())
        self._request("BatchWriteItem", batches, at_once=WRITERS)
        return super().put_items(written)

    def _write_chains(self, logs: list[TrackingLogModel]) -> None:
        """``log_chain_store.write_logs``: each chain read (two Queries), then its items put (appended
        logs fill items of ``LOGS_PER_ITEM``), ``WRITERS`` chains at once."""
        by_chain = Counter(str(log.partition) for log in logs)
        puts = 0
        for chain, count in by_chain.items():
            key = (TRACKING_LOGS.table_name, chain)
            self.writes_by_key[key] = self.writes_by_key.get(key, 0) + _pages(count, LOGS_PER_ITEM)
            puts += _pages(count, LOGS_PER_ITEM)
        self._request("Query", 2 * len(by_chain), at_once=log_chain_store.WRITERS)
        self._request("PutItem", puts, at_once=log_chain_store.WRITERS)

    def put_partials(self, run_id: str, worker: int, items: list[Model]) -> None:
        for item in items:
            pk = _partial_pk(run_id, worker, partial_key((str(item.delivery_id), str(item.sk))))  # type: ignore[attr-defined]
            key = (WORKFLOW.table_name, pk)
            self.writes_by_key[key] = self.writes_by_key.get(key, 0) + 1
        # 25 items of any partitions to a request, WRITERS requests at a time, as put_items
        self._request("BatchWriteItem", _pages(len(items), BATCH_WRITE_ITEMS), at_once=WRITERS)
        super().put_partials(run_id, worker, items)

    def _save_chunks(self, owner: str, step: str, pending: PendingBatch) -> PendingChunks:
        pointer = super()._save_chunks(owner, step, pending)
        self._request("BatchWriteItem", _pages(pointer.count, BATCH_WRITE_ITEMS), at_once=WRITERS)
        for pk in pointer.chunk_keys():  # each chunk under its own partition key
            key = (WORKFLOW.table_name, pk)
            self.writes_by_key[key] = self.writes_by_key.get(key, 0) + 1
        return pointer

    def quarantine(self, items: Iterable[QuarantineModel]) -> None:
        kept = list(items)
        self._request("PutItem", len(kept))
        super().quarantine(kept)

    # --- partitions of the workflow table: Query pages, deleted in BatchWriteItem requests ------

    def _partials_by_partition(self, run_id: str, worker: int) -> dict[str, list[bytes]]:
        partitions: dict[str, list[bytes]] = {
            _partial_partition(run_id, worker, spread): [] for spread in range(PARTIAL_SPREAD)
        }
        for key, blob in self.partials.get((run_id, worker), {}).items():
            partitions[_partial_pk(run_id, worker, key)].append(blob)
        return partitions

    def _read_partition(self, blobs: list[bytes]) -> None:
        self._request("Query", max(1, _pages(sum(map(len, blobs)), QUERY_PAGE_BYTES)))

    def _delete_partition(self, blobs: list[bytes]) -> None:
        self._read_partition(blobs)
        self._request("BatchWriteItem", _pages(len(blobs), BATCH_WRITE_ITEMS), at_once=WRITERS)

    def slice_partials(self, run_id: str, worker: int, spread: int) -> list[Model]:
        self._read_partition(
            self._partials_by_partition(run_id, worker)[_partial_partition(run_id, worker, spread)]
        )
        return super().slice_partials(run_id, worker, spread)

    def save_merge(self, owner: str, run_id: str, pages: list[bytes]) -> None:
        self._delete_partition(self.merges.get(run_id, []))  # pages an interrupted finisher left
        self._request("BatchWriteItem", _pages(len(pages), BATCH_WRITE_ITEMS), at_once=WRITERS)
        self._request("UpdateItem")  # the phase
        super().save_merge(owner, run_id, pages)

    def load_merge(self, run_id: str) -> list[bytes]:
        self._read_partition(self.merges.get(run_id, []))
        return super().load_merge(run_id)

    def delete_merge(self, run_id: str) -> None:
        self._delete_partition(self.merges.get(run_id, []))
        super().delete_merge(run_id)

    def _slice_blobs(self, run_id: str, spread: int) -> list[bytes]:
        saved = self.slices.get((run_id, spread))
        return [] if saved is None else [*saved["pages"], saved["summary"]]

    def save_slice(self, run_id: str, spread: int, pages: list[bytes], summary: bytes) -> None:
        self._delete_partition(self._slice_blobs(run_id, spread))  # pages an interrupted slice left
        self._request("BatchWriteItem", _pages(len(pages), BATCH_WRITE_ITEMS), at_once=WRITERS)
        self._request("BatchWriteItem")  # then the summary, once the pages are in
        super().save_slice(run_id, spread, pages, summary)

    def slice_pages(self, run_id: str, spread: int) -> list[bytes]:
        self._read_partition(self._slice_blobs(run_id, spread))
        return super().slice_pages(run_id, spread)

    def delete_slices(self, run_id: str) -> None:
        for spread in range(PARTIAL_SPREAD):
            self._delete_partition(self._slice_blobs(run_id, spread))
        super().delete_slices(run_id)

    def delete_slice_partials(self, run_id: str, workers: int, spread: int) -> None:
        for worker in range(workers):
            self._delete_partition(
                self._partials_by_partition(run_id, worker)[_partial_partition(run_id, worker, spread)]
            )
        super().delete_slice_partials(run_id, workers, spread)
