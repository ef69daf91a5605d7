"""The items of a tracking-log chain as DynamoDB stores them, read a few at a time from a place.

A stored chain item (``log_chains``) is ``partition`` (the chain), ``sk`` (its start), ``logs`` (Binary,
``log_chains.encode``), ``count``, ``version`` and ``expires_at``. Its logs are decoded here and
nothing else is decided: which of them an item owns is the readers' rule (``log_chains.owned``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from functions.shared.log_chains import ChainItem, decode
from functions.shared.models import TrackingLogModel


@dataclass(frozen=True)
class ChainItems:
    """One Query's items of a chain, in its order; ``more``: DynamoDB stopped at the Limit (there may
    be more, or not: it says so whenever the Limit is reached)."""

    items: list[ChainItem]
    more: bool


def chain_item(raw: dict[str, Any]) -> ChainItem:
    """A stored item (botocore's attribute values) as a ``ChainItem`` with its logs decoded."""
    chain = raw["partition"]["S"]
    blob = bytes(raw["logs"]["B"])
    return ChainItem(chain, raw["sk"]["S"], tuple(decode(chain, blob)), int(raw["version"]["N"]), blob)


def query_items(
    chain: str, key: str | None, *, forward: bool, limit: int, inclusive: bool = False
) -> ChainItems:
    """One Query of ``chain``: newest first (``forward`` False) the items starting before ``key``
    (at or before it when ``inclusive``), oldest first those starting after it; ``key`` None: from the
    chain's end or start. At most ``limit`` items."""
    if limit < 1:
        raise ValueError("a Query reads at least one item")
    condition = "#p = :chain"
    values: dict[str, Any] = {":chain": {"S": chain}}
    if key is not None:
        operator = (">" if not inclusive else ">=") if forward else ("<=" if inclusive else "<")
        condition += f" AND #sk {operator} :key"
        values[":key"] = {"S": key}
    answer = _client().query(
        TableName=TrackingLogModel.Meta.table_name,
        KeyConditionExpression=condition,
        ExpressionAttributeNames={"#p": "partition", **({"#sk": "sk"} if key is not None else {})},
        ExpressionAttributeValues=values,
        ScanIndexForward=forward,
        Limit=limit,
    )
    return ChainItems([chain_item(raw) for raw in answer.get("Items", [])], "LastEvaluatedKey" in answer)


_CONNECTING = threading.Lock()


def _client() -> Any:
    """The tracking logs' botocore client (PynamoDB's own), made once even when several threads
    query at once: each thread that came before it existed would make one of its own."""
    with _CONNECTING:
        return TrackingLogModel._get_connection().connection.client


def find(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]:
    """The logs at these (chain, sort key) keys that exist: for each, one Query for the item owning
    it (the last starting at or before it), sent at once from a pool of threads."""
    wanted = sorted(set(keys))
    owners = list(
        _FINDING.map(lambda key: query_items(key[0], key[1], forward=False, limit=1, inclusive=True), wanted)
    )
    found: dict[tuple[str, str], TrackingLogModel] = {}
    for (chain, sk), owner in zip(wanted, owners, strict=True):
        for log in owner.items[0].logs if owner.items else ():
            if str(log.sk) == sk:
                found[(chain, sk)] = log
    return found


_FINDING = ThreadPoolExecutor(max_workers=16, thread_name_prefix="log-find")
