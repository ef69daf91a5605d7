"""The upgrade of an existing deployment's stored data to this week's keys (README "Upgrading").

Four storage changes have no other upgrade path:

1. recipient states (``r#``) moved from (delivery id, "r#<recipient>") to ``models.stored_recipient_key``;
2. person states (``p#``) moved from (delivery id, "p#<person>") to ``models.stored_person_key``;
3. the tracking-logs table is keyed by ``partition`` instead of ``delivery_id``: CloudFormation
   replaced it and retained the old one;
4. a tracking log is no longer an item of its own (under ``tables.legacy_tracking_log_partition``) but
   an entry of its recipient's chain (``log_chains``, ``tables.tracking_log_partition``).

A migration moves every legacy state to its new key (a conditional put, then the legacy item's delete);
given the old logs table, it writes its logs into their chains and sets ``logs_overflow`` on the
recipient's state, so that the recipient Tracking tab and erasure read the recipient's chain for the
logs (``recipient_logs``) instead of the list, which a legacy state never had; last, it writes every
log still stored as an item of its own into its chain, then deletes the item (the state's list names
the log by its sort key, which stays the same). A log its chain holds already (a run after the
upgrade wrote it) is kept as the chain holds it.

It holds the tracking workflow's lock (no run and no other migration writes meanwhile), goes page by
page and saves its progress (the phase and the scan's LastEvaluatedKey) in the workflow table after each
page, so a crashed or timed-out invocation resumes where the last saved page ended: redoing a page is
harmless (a state already moved is found equal at its new key, a log already chained is kept). What a
page is to delete is saved before it is deleted, so a crash in between leaves nothing behind the cursor.
Each invocation holds the lock under its own name ("migration <invocation id>": Lambda's request id,
which Lambda's own retry of the invocation keeps, so the retry takes the lock back at once); another
invocation is refused until the holder releases it or, after a crash, until it expires
(``LOCK_SECONDS`` after its last renewal). A deployment that finished last week's migration (states and
old table) runs only the chaining when invoked again.

A state at the new key that differs from the legacy one was written by a run after the upgrade that
did not find the legacy state, and so counted its recipient (or person) a second time: the migration
keeps the new one, leaves the legacy item where it is and reports the key in ``conflict_keys``. Run
the migration before any tracking run after the deploy and there is none.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3

from functions.consolidate.config import WORKFLOW_TIMEOUT_SECONDS
from functions.consolidate.store import DynamoWorkflowStore
from functions.consolidate.workflow import SAFETY_MARGIN_MS
from functions.shared import log_chain_store
from functions.shared.models import (
    PERSON_STATE_PREFIX,
    RECIPIENT_STATE_PREFIX,
    STATE_PK,
    STATE_SK,
    TrackingLogModel,
    stored_person_key,
    stored_recipient_key,
)
from functions.shared.tables import INDICATORS, TRACKING_LOGS, WORKFLOW, tracking_log_partition

Item = dict[str, Any]  # a DynamoDB item as the low-level client writes it ({"S": ...} values)

OWNER_PREFIX = "migration"  # the lock owner is "migration <invocation id>": one per invocation
# The lock is renewed before every page for this long: no invocation of the function outlives it, so a
# live invocation never loses its lock, and one that crashed holds it up to 15 minutes.
LOCK_SECONDS = WORKFLOW_TIMEOUT_SECONDS
PROGRESS_PK, PROGRESS_SK = "migration", "storage-2026-12"
PAGE_ITEMS = 100  # items a page of the scan evaluates: one page's work is well under a minute
MAX_CONFLICT_KEYS = 100  # conflicting keys listed in the answer (all of them are counted)
INDICATORS_PHASE, LOGS_PHASE, CHAINS_PHASE, DONE = "indicators", "logs", "chains", "done"


class MigrationRefused(RuntimeError):
    """A tracking run holds the workflow lock: the migration must not write meanwhile."""


@dataclass
class Progress:
    phase: str = INDICATORS_PHASE
    cursor: Item | None = None  # the scan's LastEvaluatedKey in this phase, None: from the start
    logs_from: str | None = None  # the old logs table whose copy the logs phase made (or makes)
    moved: int = 0
    already: int = 0  # found at the new key as they were (moved by an interrupted invocation)
    conflicts: int = 0
    conflict_keys: list[str] = field(default_factory=list)
    logs_copied: int = 0
    logs_chained: int = 0  # logs stored as items of their own, written into their chains and deleted
    chained: bool = False  # the chaining ended (a progress saved before chains has not: it runs it)
    # The legacy states of the last page, moved and to be deleted: saved before they are deleted, so
    # a crash in between leaves none behind the cursor and counts none twice
    to_delete: list[list[str]] = field(default_factory=list)
    # Likewise the (partition, sk) keys of the last page's logs, written into their chains
    logs_to_delete: list[list[str]] = field(default_factory=list)

    def encode(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def decode(cls, text: str) -> Progress:
        return cls(**json.loads(text))

    def answer(self) -> dict[str, Any]:
        return {
            "done": self.phase == DONE,
            "phase": self.phase,
            "moved": self.moved,
            "already_there": self.already,
            "conflicts": self.conflicts,
            "conflict_keys": list(self.conflict_keys),
            "logs_copied": self.logs_copied,
            "logs_from": self.logs_from,
            "logs_chained": self.logs_chained,
        }


class MigrationStore(Protocol):
    def acquire_lock(self, owner: str, now: float, ttl_seconds: int) -> str | None:
        """Takes the workflow lock; None when taken, else the run that holds it."""
        ...

    def renew_lock(self, owner: str, now: float, ttl_seconds: int) -> None: ...
    def release_lock(self, owner: str) -> None: ...
    def load_progress(self) -> Progress | None: ...
    def save_progress(self, progress: Progress) -> None: ...
    def legacy_states(self, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]:
        """A page of the indicators table's legacy r#/p# items, and where the next page starts."""
        ...

    def put_if_absent(self, item: Item) -> Item | None:
        """Puts the item unless its key holds one already; None when put, else the item found."""
        ...

    def delete(self, key: Item) -> None: ...
    def old_logs(self, table: str, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]: ...
    def unchained_logs(self, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]:
        """A page of the tracking-logs table's logs stored as items of their own, and where the
        next page starts."""
        ...

    def chain_logs(self, logs: list[Item]) -> None:
        """Writes the logs into their chains (``partition``), each unless its chain holds a log of
        its sort key already."""
        ...

    def delete_logs(self, keys: list[Item]) -> None: ...
    def mark_overflow(self, delivery_id: str, recipient_id: str) -> None:
        """Sets ``logs_overflow`` on the recipient's state in the delivery (creating a bare one)."""
        ...


def is_legacy_state(item: Item) -> bool:
    """An r#/p# state still under its delivery's own key (no delivery id holds "#")."""
    pk, sk = item["delivery_id"]["S"], item["sk"]["S"]
    legacy_sk = sk.startswith(RECIPIENT_STATE_PREFIX) or sk.startswith(PERSON_STATE_PREFIX)
    return legacy_sk and "#" not in pk


def new_key(item: Item) -> tuple[str, str]:
    delivery_id, sk = item["delivery_id"]["S"], item["sk"]["S"]
    if sk.startswith(RECIPIENT_STATE_PREFIX):
        return stored_recipient_key(delivery_id, sk.removeprefix(RECIPIENT_STATE_PREFIX))
    return stored_person_key(delivery_id, sk.removeprefix(PERSON_STATE_PREFIX))


def moved(item: Item) -> Item:
    pk, sk = new_key(item)
    return {**item, "delivery_id": {"S": pk}, "sk": {"S": sk}}


def is_unchained(item: Item) -> bool:
    """A tracking log stored as an item of its own, under ``<delivery>#<n>`` (a chain's key ends in
    ``#c<NN>``, a feed copy's in ``#feed``; no delivery id holds "#")."""
    return item["partition"]["S"].rpartition("#")[2].isdecimal()


def copied_log(log: Item) -> Item:
    """A log as its chain keeps it: the same attributes, its ``partition`` the recipient's chain."""
    partition = tracking_log_partition(log["delivery_id"]["S"], log["recipient_id"]["S"])
    return {**log, "partition": {"S": partition}}


class Migration:
    def __init__(
        self,
        store: MigrationStore,
        *,
        lock_seconds: int,
        remaining_ms: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.time,
        page_items: int = PAGE_ITEMS,
        invocation: str | None = None,
    ) -> None:
        self._store = store
        self._owner = f"{OWNER_PREFIX} {invocation or uuid.uuid4().hex}"
        self._lock_seconds = lock_seconds
        self._remaining_ms = remaining_ms
        self._clock = clock
        self._page_items = page_items

    def run(self, old_logs_table: str | None = None) -> dict[str, Any]:
        """Migrates until done or the invocation's time runs short; ``done: false``: invoke again."""
        holder = self._store.acquire_lock(self._owner, self._clock(), self._lock_seconds)
        if holder is not None:
            what = holder if holder.startswith(OWNER_PREFIX) else f"tracking run {holder}"
            raise MigrationRefused(
                f"{what} holds the workflow lock; invoke the migration again when it ends "
                f"(a crashed holder's lock expires within {self._lock_seconds // 60} minutes)"
            )
        try:
            progress = self._store.load_progress() or Progress()
            # A table named anew is copied from its start: after the states (a later invocation naming
            # it), or instead of one the function could not read (not the table its deploy granted)
            renamed = old_logs_table and old_logs_table != progress.logs_from
            if renamed and progress.phase in (LOGS_PHASE, CHAINS_PHASE, DONE):
                progress.phase, progress.cursor, progress.logs_from = LOGS_PHASE, None, old_logs_table
            elif progress.phase == DONE and not progress.chained:  # finished before chains
                progress.phase, progress.cursor = CHAINS_PHASE, None
            if progress.to_delete or progress.logs_to_delete:  # an interrupted invocation's last page
                self._delete_moved(progress)
                self._store.save_progress(progress)
            while progress.phase != DONE and not self._time_short():
                self._store.renew_lock(self._owner, self._clock(), self._lock_seconds)
                if progress.phase == INDICATORS_PHASE:
                    self._states_page(progress, old_logs_table)
                elif progress.phase == LOGS_PHASE:
                    self._logs_page(progress)
                else:
                    self._chains_page(progress)
                self._store.save_progress(progress)
                if progress.to_delete or progress.logs_to_delete:
                    self._delete_moved(progress)
                    self._store.save_progress(progress)
            return progress.answer()
        finally:
            self._store.release_lock(self._owner)

    def _time_short(self) -> bool:
        return self._remaining_ms is not None and self._remaining_ms() < SAFETY_MARGIN_MS

    def _states_page(self, progress: Progress, old_logs_table: str | None) -> None:
        items, progress.cursor = self._store.legacy_states(progress.cursor, self._page_items)
        for item in items:
            target = moved(item)
            found = self._store.put_if_absent(target)
            if found is None:
                progress.moved += 1
            elif found == target:
                progress.already += 1
            else:  # a run after the upgrade wrote its own: keep it, leave the legacy item for the operator
                key = f"{item['delivery_id']['S']} {item['sk']['S']}"
                if key not in progress.conflict_keys:  # a page redone after a crash finds it again
                    progress.conflicts += 1
                    if len(progress.conflict_keys) < MAX_CONFLICT_KEYS:
                        progress.conflict_keys.append(key)
                continue
            progress.to_delete.append([item["delivery_id"]["S"], item["sk"]["S"]])
        if progress.cursor is None:
            progress.phase = LOGS_PHASE if old_logs_table else CHAINS_PHASE
            progress.logs_from = old_logs_table

    def _delete_moved(self, progress: Progress) -> None:
        for pk, sk in progress.to_delete:
            self._store.delete({"delivery_id": {"S": pk}, "sk": {"S": sk}})
        progress.to_delete = []
        if progress.logs_to_delete:
            self._store.delete_logs(
                [{"partition": {"S": pk}, "sk": {"S": sk}} for pk, sk in progress.logs_to_delete]
            )
            progress.logs_to_delete = []

    def _logs_page(self, progress: Progress) -> None:
        table = str(progress.logs_from)
        logs, progress.cursor = self._store.old_logs(table, progress.cursor, self._page_items)
        self._store.chain_logs([copied_log(log) for log in logs])
        recipients = sorted({(log["delivery_id"]["S"], log["recipient_id"]["S"]) for log in logs})
        for delivery_id, recipient_id in recipients:
            self._store.mark_overflow(delivery_id, recipient_id)
        progress.logs_copied += len(logs)
        if progress.cursor is None:
            progress.phase = DONE if progress.chained else CHAINS_PHASE

    def _chains_page(self, progress: Progress) -> None:
        logs, progress.cursor = self._store.unchained_logs(progress.cursor, self._page_items)
        self._store.chain_logs([copied_log(log) for log in logs])
        progress.logs_chained += len(logs)
        progress.logs_to_delete = [[log["partition"]["S"], log["sk"]["S"]] for log in logs]
        if progress.cursor is None:
            progress.phase, progress.chained = DONE, True


def migrate(
    store: MigrationStore,
    old_logs_table: str | None = None,
    *,
    lock_seconds: int = LOCK_SECONDS,
    remaining_ms: Callable[[], int] | None = None,
    invocation: str | None = None,
) -> dict[str, Any]:
    return Migration(store, lock_seconds=lock_seconds, remaining_ms=remaining_ms, invocation=invocation).run(
        old_logs_table
    )


class DynamoMigrationStore:
    """The migration's reads and writes on DynamoDB (the low-level client: items stay as stored)."""

    BATCH = 25  # BatchWriteItem's limit

    def __init__(self, client: Any = None) -> None:
        self._client: Any = client or boto3.client("dynamodb")
        # Renewing and releasing the lock are the tracking workflow's own; taking it is not: a retried
        # invocation takes back its own lock after a crash, where a run waits for it to expire.
        self._workflow_store = DynamoWorkflowStore(self._client)
        self._workflow = WORKFLOW.table_name
        self._indicators = INDICATORS.table_name
        self._logs = TRACKING_LOGS.table_name
        self._state_key = {"pk": {"S": STATE_PK}, "sk": {"S": STATE_SK}}
        self._progress_key = {"pk": {"S": PROGRESS_PK}, "sk": {"S": PROGRESS_SK}}

    def acquire_lock(self, owner: str, now: float, ttl_seconds: int) -> str | None:
        try:
            self._client.update_item(
                TableName=self._workflow,
                Key=self._state_key,
                UpdateExpression="SET lock_owner = :owner, lock_expires = :expires",
                ConditionExpression="attribute_not_exists(lock_owner) OR lock_expires < :now "
                "OR lock_owner = :owner",
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":expires": {"N": str(int(now + ttl_seconds))},
                    ":now": {"N": str(int(now))},
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            state = self._client.get_item(TableName=self._workflow, Key=self._state_key, ConsistentRead=True)
            return str(state.get("Item", {}).get("lock_owner", {}).get("S", "another run"))
        return None

    def renew_lock(self, owner: str, now: float, ttl_seconds: int) -> None:
        self._workflow_store.renew_lock(owner, now, ttl_seconds)

    def release_lock(self, owner: str) -> None:
        self._workflow_store.release_lock(owner)

    def load_progress(self) -> Progress | None:
        item = self._client.get_item(TableName=self._workflow, Key=self._progress_key, ConsistentRead=True)
        text = item.get("Item", {}).get("progress", {}).get("S")
        return Progress.decode(text) if text else None

    def save_progress(self, progress: Progress) -> None:
        self._client.put_item(
            TableName=self._workflow, Item={**self._progress_key, "progress": {"S": progress.encode()}}
        )

    def _scan(
        self, arguments: dict[str, Any], cursor: Item | None, limit: int
    ) -> tuple[list[Item], Item | None]:
        page = self._client.scan(
            **arguments, Limit=limit, ConsistentRead=True, **({"ExclusiveStartKey": cursor} if cursor else {})
        )
        return page.get("Items", []), page.get("LastEvaluatedKey")

    def legacy_states(self, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]:
        items, after = self._scan(
            {
                "TableName": self._indicators,
                "FilterExpression": "(begins_with(sk, :r) OR begins_with(sk, :p)) AND NOT contains(delivery_id, :hash)",
                "ExpressionAttributeValues": {
                    ":r": {"S": RECIPIENT_STATE_PREFIX},
                    ":p": {"S": PERSON_STATE_PREFIX},
                    ":hash": {"S": "#"},
                },
            },
            cursor,
            limit,
        )
        return [item for item in items if is_legacy_state(item)], after

    def put_if_absent(self, item: Item) -> Item | None:
        try:
            self._client.put_item(
                TableName=self._indicators,
                Item=item,
                ConditionExpression="attribute_not_exists(delivery_id)",
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            key = {"delivery_id": item["delivery_id"], "sk": item["sk"]}
            found = self._client.get_item(TableName=self._indicators, Key=key, ConsistentRead=True)
            return dict(found.get("Item") or {})
        return None

    def delete(self, key: Item) -> None:
        self._client.delete_item(TableName=self._indicators, Key=key)

    def old_logs(self, table: str, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]:
        return self._scan({"TableName": table}, cursor, limit)

    def unchained_logs(self, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]:
        # chain items hold ``logs``; feed copies are left out below (their partition ends in "#feed")
        items, after = self._scan(
            {
                "TableName": self._logs,
                "FilterExpression": "attribute_not_exists(#logs)",
                "ExpressionAttributeNames": {"#logs": "logs"},
            },
            cursor,
            limit,
        )
        return [item for item in items if is_unchained(item)], after

    def chain_logs(self, logs: list[Item]) -> None:
        models = [TrackingLogModel.from_raw_data(log) for log in logs]
        held = log_chain_store.find(((str(m.partition), str(m.sk)) for m in models), client=self._client)
        refused = log_chain_store.write_logs(
            (m for m in models if (str(m.partition), str(m.sk)) not in held), client=self._client
        )
        if refused:
            log, reason = refused[0]
            raise RuntimeError(f"DynamoDB refused {len(refused)} logs for their chains ({log.sk}: {reason})")

    def delete_logs(self, keys: list[Item]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])

    def _batch_write(self, requests: list[Item]) -> None:
        for start in range(0, len(requests), self.BATCH):
            left = requests[start : start + self.BATCH]
            for attempt in range(8):
                unprocessed = self._client.batch_write_item(RequestItems={self._logs: left})
                left = unprocessed.get("UnprocessedItems", {}).get(self._logs, [])
                if not left:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise RuntimeError(f"DynamoDB left {len(left)} tracking logs undeleted; invoke again")

    def mark_overflow(self, delivery_id: str, recipient_id: str) -> None:
        pk, sk = stored_recipient_key(delivery_id, recipient_id)
        self._client.update_item(
            TableName=self._indicators,
            Key={"delivery_id": {"S": pk}, "sk": {"S": sk}},
            UpdateExpression="SET logs_overflow = :yes, recipient_id = if_not_exists(recipient_id, :r) "
            "REMOVE logs",
            ExpressionAttributeValues={":yes": {"BOOL": True}, ":r": {"S": recipient_id}},
        )
