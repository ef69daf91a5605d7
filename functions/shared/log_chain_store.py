"""Tracking-log chains in DynamoDB: reading a chain's items, putting a merge, writing and finding logs.

The layout, the codec and the crash-safe merge are ``log_chains``; this module is where they meet the
tracking-logs table (``tables.TRACKING_LOGS``). A chain item is stored as ``partition`` (the chain),
``sk`` (its start), ``logs`` (Binary, ``log_chains.encode``), ``count`` (its logs), ``version`` (1 at
its first put, one more at each) and ``expires_at`` (the table's TTL: its latest log's expiry).

Every put of a chain item is conditional on the version its writer read (on the item's absence for
a new one), so two writers of one chain never lose each other's logs: the second fails
(``ChainConflict``), reads again and merges again (``write_logs``). In the tracking workflow a chain
has one writer at a time (``workflow.Plan``), so conflicts come only from legacy shards and erasure.

A person's opt-out is also kept under ``tables.opt_out_feed_partition`` (a *feed copy*, with what the
feed needs of the log), the item the opt-out feed's sparse index lists (``opt_out_feed.py``): a chain
item holds many logs and carries no ``opt_out_feed``. The copy is put before the chain is written and deleted before a write
that takes the log out of the feed (a honeypot burst, erasure), so a stop between the two is
repaired by the replay, which decides from the log as it still stands in the chain.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from functions.shared import log_chains, opt_out_feed
from functions.shared.log_chains import ChainItem, ChainWrite, owned
from functions.shared.models import TrackingLogModel
from functions.shared.tables import TRACKING_LOGS, opt_out_feed_partition

LogKey = tuple[str, str]  # (chain, sk)

WRITERS = 4  # puts (and chains) in flight at once
BATCH_WRITE_ITEMS = 25  # DynamoDB's limit on one BatchWriteItem request
READERS = 8  # Queries of ``find`` in flight at once
TRIES = 5  # a chain's write read and merged again after a conflict at most this often
FIRST_PAGE = 8  # items the first page of a range reads; each next page twice as many
NEAR_ITEMS_PER_KEY = 2  # a range ``find`` reads: at most this many items per key sought (then by key)


class ChainConflict(RuntimeError):
    """Another writer changed a chain item since it was read: read the chain again and merge again."""


class ChainRefused(RuntimeError):
    """DynamoDB refused a chain item for what it holds (a ValidationException): putting it again
    would fail again."""

    def __init__(self, item: ChainItem, reason: str) -> None:
        super().__init__(reason)
        self.item = item
        self.reason = reason


_CONNECTING = threading.Lock()


def _dynamodb(client: Any) -> Any:
    """``client``, else the tracking logs' PynamoDB client (made once, by one thread: the others
    wait rather than each load botocore's service model), as every other read of the table uses."""
    if client is not None:
        return client
    with _CONNECTING:
        return TrackingLogModel._get_connection().connection.client


Request = TypeVar("Request")
Answer = TypeVar("Answer")


def _at_once(send: Callable[[Request], Answer], requests: Sequence[Request], most: int) -> list[Answer]:
    """Each request sent, up to ``most`` in flight; answers in order, the first failure raised after
    the others ended."""
    if len(requests) <= 1:
        return [send(request) for request in requests]
    with ThreadPoolExecutor(max_workers=min(most, len(requests))) as pool:
        return list(pool.map(send, requests))


# --- reading --------------------------------------------------------------------------------------


def _item(chain: str, stored: dict[str, Any]) -> ChainItem:
    blob = bytes(stored["logs"]["B"])
    return ChainItem(
        chain, stored["sk"]["S"], tuple(log_chains.decode(chain, blob)), int(stored["version"]["N"]), blob
    )


def _owner(client: Any, chain: str, key: str, consistent: bool) -> ChainItem | None:
    """The item owning ``key``: the one with the greatest start at most ``key`` (None: none)."""
    answer = client.query(
        TableName=TRACKING_LOGS.table_name,
        KeyConditionExpression="#p = :chain AND #sk <= :key",
        ExpressionAttributeNames={"#p": "partition", "#sk": "sk"},
        ExpressionAttributeValues={":chain": {"S": chain}, ":key": {"S": key}},
        ScanIndexForward=False,
        Limit=1,
        ConsistentRead=consistent,
    )
    items = answer.get("Items", [])
    return _item(chain, items[0]) if items else None


def _after(
    client: Any, chain: str, low: str, high: str, consistent: bool, most: int | None = None
) -> tuple[list[ChainItem], str | None, bool]:
    """The items starting after ``low`` up to ``high`` and the start of the first after ``high``,
    page by page (each twice the one before) until one passes ``high``. With ``most``, no more than
    that many items are read: the third answer says whether the range was read to its end."""
    arguments: dict[str, Any] = {
        "TableName": TRACKING_LOGS.table_name,
        "KeyConditionExpression": "#p = :chain AND #sk > :low",
        "ExpressionAttributeNames": {"#p": "partition", "#sk": "sk"},
        "ExpressionAttributeValues": {":chain": {"S": chain}, ":low": {"S": low}},
        "ConsistentRead": consistent,
    }
    found: list[ChainItem] = []
    page = FIRST_PAGE
    while True:
        limit = page if most is None else min(page, most - len(found))
        if limit <= 0:
            return found, None, False
        answer = client.query(**arguments, Limit=limit)
        for stored in answer.get("Items", []):
            if stored["sk"]["S"] > high:
                return found, stored["sk"]["S"], True
            found.append(_item(chain, stored))
        if "LastEvaluatedKey" not in answer:
            return found, None, True
        arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        page *= 2


def covering(
    chain: str, low: str, high: str, consistent: bool = True, *, client: Any = None
) -> tuple[list[ChainItem], str | None]:
    """The items of ``chain`` owning any key from ``low`` to ``high``, ascending (the owner of ``low``,
    if any, then every item starting after it up to ``high``), and the start of the item after them
    (None: none). Two Queries, the second read in growing pages until it passes ``high``."""
    client = _dynamodb(client)
    owner = _owner(client, chain, low, consistent)
    items, next_start, _ = _after(client, chain, low, high, consistent)
    return ([owner] if owner else []) + items, next_start


# --- writing --------------------------------------------------------------------------------------


def _stored(item: ChainItem) -> dict[str, Any]:
    stored: dict[str, Any] = {
        "partition": {"S": item.chain},
        "sk": {"S": item.start},
        "logs": {"B": item.blob or log_chains.encode(item.logs)},
        "count": {"N": str(len(item.logs))},
        "version": {"N": str(item.version + 1)},
    }
    if item.expires_at is not None:
        stored["expires_at"] = {"N": str(item.expires_at)}
    return stored


def _put_one(client: Any, item: ChainItem) -> None:
    condition: dict[str, Any]
    if item.version == 0:
        condition = {
            "ConditionExpression": "attribute_not_exists(#sk)",
            "ExpressionAttributeNames": {"#sk": "sk"},
        }
    else:
        condition = {
            "ConditionExpression": "#version = :read",
            "ExpressionAttributeNames": {"#version": "version"},
            "ExpressionAttributeValues": {":read": {"N": str(item.version)}},
        }
    try:
        client.put_item(TableName=TRACKING_LOGS.table_name, Item=_stored(item), **condition)
    except client.exceptions.ConditionalCheckFailedException as error:
        raise ChainConflict(
            f"chain {item.chain}: item {item.start} changed since version {item.version}"
        ) from error
    except client.exceptions.ClientError as error:
        reason = _refusal(error)
        if reason is None:
            raise
        raise ChainRefused(item, reason) from error


def _refusal(error: Any) -> str | None:
    if error.response.get("Error", {}).get("Code") != "ValidationException":
        return None
    return f"ValidationException: {error}"[:1_000]


def put(write: ChainWrite, *, client: Any = None) -> None:
    """Put a merge's items step after step, the items of a step at once; each put conditional on the
    version its item was read at (``ChainConflict`` when another writer changed it meanwhile)."""
    client = _dynamodb(client)
    for step in write.steps:
        _at_once(lambda item: _put_one(client, item), step, WRITERS)


def write_logs(
    upserts: Iterable[TrackingLogModel], removed: Iterable[LogKey] = (), *, client: Any = None
) -> list[tuple[TrackingLogModel, str]]:
    """Write logs into their chains (``log.partition``; a log of the same sort key is replaced) and
    take the ``removed`` (chain, sk) keys out of them, chains at once; the logs DynamoDB refused for
    what they hold, with its reason: every other log is written.

    A chain is read (``covering``), merged and put; on a conflict, read and merged again, at most
    ``TRIES`` times. When DynamoDB refuses one of a chain's items, its logs are written one at a time
    to tell the refused from the others.
    """
    client = _dynamodb(client)
    by_chain: dict[str, tuple[dict[str, TrackingLogModel], set[str]]] = defaultdict(lambda: ({}, set()))
    for log in upserts:
        by_chain[str(log.partition)][0][str(log.sk)] = log
    for chain, sk in removed:
        by_chain[chain][1].add(sk)
    work = [(chain, list(logs.values()), sorted(gone)) for chain, (logs, gone) in by_chain.items()]
    answers = _at_once(lambda job: _write_chain(client, *job), work, WRITERS)
    return [refused for answer in answers for refused in answer]


def _write_chain(
    client: Any, chain: str, upserts: list[TrackingLogModel], removed: list[str]
) -> list[tuple[TrackingLogModel, str]]:
    try:
        _merge_and_put(client, chain, upserts, removed)
        return []
    except ChainRefused:
        pass
    refused = []
    if removed:
        _merge_and_put(client, chain, [], removed)  # removing shrinks items: never refused
    for log in sorted(upserts, key=lambda log: str(log.sk)):
        try:
            _merge_and_put(client, chain, [log], [])
        except ChainRefused as error:
            refused.append((log, error.reason))
    return refused


def _merge_and_put(client: Any, chain: str, upserts: list[TrackingLogModel], removed: list[str]) -> None:
    keys = [str(log.sk) for log in upserts] + removed
    if not keys:
        return
    for attempt in range(TRIES):
        existing, next_start = covering(chain, min(keys), max(keys), client=client)
        _update_feed(client, chain, list(owned(existing, next_start)), upserts, removed)
        try:
            put(log_chains.merged(chain, existing, next_start, upserts, removed), client=client)
            return
        except ChainConflict:
            if attempt == TRIES - 1:
                raise


def _update_feed(
    client: Any,
    chain: str,
    stored: list[TrackingLogModel],
    upserts: list[TrackingLogModel],
    removed: list[str],
) -> None:
    """Put the feed copy of each person's opt-out written; delete the copy of each log that was in the
    feed and is no more (written otherwise, or removed). Before the chain's put: see the module."""
    before = {str(log.sk): log for log in stored}
    feed = opt_out_feed_partition(log_chains.delivery_of(chain))
    puts = [_feed_copy(log, feed) for log in upserts if opt_out_feed.in_feed(log)]
    leaving = {str(log.sk) for log in upserts if not opt_out_feed.in_feed(log)} | set(removed)
    deletes = [sk for sk in sorted(leaving) if sk in before and opt_out_feed.in_feed(before[sk])]
    for copy in puts:
        client.put_item(TableName=TRACKING_LOGS.table_name, Item=copy)
    # BatchWriteItem, as every delete of the workflow: its role has no DeleteItem
    for start in range(0, len(deletes), BATCH_WRITE_ITEMS):
        requests = [
            {"DeleteRequest": {"Key": {"partition": {"S": feed}, "sk": {"S": sk}}}}
            for sk in deletes[start : start + BATCH_WRITE_ITEMS]
        ]
        pending = {TRACKING_LOGS.table_name: requests}
        for attempt in range(TRIES):
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                break
            time.sleep(0.05 * 2**attempt)
        if pending:
            raise RuntimeError(f"DynamoDB left {len(pending)} feed copies of {feed} undeleted")


# A feed copy's attributes besides its keys: the index's, what ``opt_out_feed.in_feed`` reads, the expiry
_FEED_COPY_FIELDS = (
    "sk",
    "delivery_id",
    "event_id",
    "recipient_id",
    "type",
    "url_id",
    "at",
    "proof",
    "counted",
    "machine",
    "expires_at",
)


def _feed_copy(log: TrackingLogModel, feed: str) -> dict[str, Any]:
    """What the feed needs of a person's opt-out (what its index projects, what ``in_feed`` reads, its
    expiry), without what a hit may have made large (its URL, label, client names): one write unit,
    never refused."""
    kept = {name: getattr(log, name) for name in _FEED_COPY_FIELDS}
    copy = TrackingLogModel(partition=feed, opt_out_feed=opt_out_feed.FEED_KEY, **kept)
    return copy.serialize()


# --- finding logs by their keys -------------------------------------------------------------------


def find(
    keys: Iterable[LogKey], consistent: bool = True, *, client: Any = None
) -> dict[LogKey, TrackingLogModel]:
    """The logs stored under these (chain, sk) keys; a key without a log is left out.

    A log is taken from the item owning its key (the greatest start at most the key), so a copy a
    crash left in another item is never seen. Keys of one chain close together (a batch's late
    events, a burst) are found in one read of their range: at most ``NEAR_ITEMS_PER_KEY`` items per
    key are read that way, and the keys the range did not reach are looked up one Query each.
    """
    client = _dynamodb(client)
    by_chain: dict[str, set[str]] = defaultdict(set)
    for chain, sk in keys:
        by_chain[chain].add(sk)
    ranges = [(chain, sorted(sks)) for chain, sks in by_chain.items() if len(sks) > 1]
    singles = [(chain, sks.pop()) for chain, sks in by_chain.items() if len(sks) == 1]
    found: dict[LogKey, TrackingLogModel] = {}
    for logs, left in _at_once(lambda job: _in_range(client, *job, consistent), ranges, READERS):
        found.update(logs)
        singles += left
    for log in _at_once(lambda key: _one(client, *key, consistent), singles, READERS):
        if log is not None:
            found[(str(log.partition), str(log.sk))] = log
    return found


def _one(client: Any, chain: str, sk: str, consistent: bool) -> TrackingLogModel | None:
    owner = _owner(client, chain, sk, consistent)
    if owner is None:
        return None
    return next((log for log in owner.logs if str(log.sk) == sk), None)


def _in_range(
    client: Any, chain: str, sks: list[str], consistent: bool
) -> tuple[dict[LogKey, TrackingLogModel], list[LogKey]]:
    """The logs of ``sks`` (sorted, one chain) read from their range, and the keys it did not reach."""
    owner = _owner(client, chain, sks[0], consistent)
    items, next_start, whole = _after(
        client, chain, sks[0], sks[-1], consistent, most=NEAR_ITEMS_PER_KEY * len(sks)
    )
    if not whole:  # items[-1]'s end is unknown: the keys it may own are looked up on their own
        reached = items[-1].start if items else sks[0]
        items = items[:-1]
        next_start = reached
    else:
        reached = None
    items = ([owner] if owner else []) + items
    wanted = {sk for sk in sks if reached is None or sk < reached}
    found = {(chain, str(log.sk)): log for log in owned(items, next_start) if str(log.sk) in wanted}
    left = [(chain, sk) for sk in sks if reached is not None and sk >= reached]
    return found, left


# --- reading a chain from a place (the logs route, exports) -------------------------------------------


@dataclass(frozen=True)
class ChainItems:
    """One Query's items of a chain, in its order; ``more``: DynamoDB stopped at the Limit (there may
    be more, or not: it says so whenever the Limit is reached)."""

    items: list[ChainItem]
    more: bool


def query_items(
    chain: str, key: str | None, *, forward: bool, limit: int, inclusive: bool = False, client: Any = None
) -> ChainItems:
    """One Query of ``chain``, eventually consistent: newest first (``forward`` False) the items
    starting before ``key`` (at or before it when ``inclusive``), oldest first those starting after
    it (at or after it when ``inclusive``); ``key`` None: from the chain's end or start. At most
    ``limit`` items."""
    if limit < 1:
        raise ValueError("a Query reads at least one item")
    condition = "#p = :chain"
    names = {"#p": "partition"}
    values: dict[str, Any] = {":chain": {"S": chain}}
    if key is not None:
        operator = (">=" if inclusive else ">") if forward else ("<=" if inclusive else "<")
        condition += f" AND #sk {operator} :key"
        names["#sk"] = "sk"
        values[":key"] = {"S": key}
    answer = _dynamodb(client).query(
        TableName=TRACKING_LOGS.table_name,
        KeyConditionExpression=condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ScanIndexForward=forward,
        Limit=limit,
    )
    return ChainItems(
        [_item(chain, stored) for stored in answer.get("Items", [])], "LastEvaluatedKey" in answer
    )
