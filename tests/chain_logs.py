"""Tracking logs written into their chains in the tracking-logs table (moto or the local stack), for tests
of the readers: ``log_chains.merged``'s steps applied with plain PutItem, in order, as the tracking
workflow's store puts them, and optionally stopped after any put (what a crash leaves behind)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from functions.shared import log_chain_reads, log_chains
from functions.shared.log_chains import ChainItem
from functions.shared.models import TrackingLogModel


def write(
    logs: Iterable[TrackingLogModel],
    removed: Iterable[tuple[str, str]] = (),
    *,
    stop_after: int | None = None,
) -> bool:
    """Write ``logs`` into their recipients' chains (replacing logs of the same key) and remove the
    ``removed`` (chain, sort key) keys; stop after ``stop_after`` puts. Whether every put was made."""
    upserts: dict[str, list[TrackingLogModel]] = {}
    for log in logs:
        chain = log_chains.chain_of(str(log.delivery_id), str(log.recipient_id))
        upserts.setdefault(chain, []).append(log)
    removals: dict[str, list[str]] = {}
    for chain, sk in removed:
        removals.setdefault(chain, []).append(sk)
    puts = 0
    for chain in sorted(set(upserts) | set(removals)):
        keys = [str(log.sk) for log in upserts.get(chain, [])] + removals.get(chain, [])
        existing, next_start = _covering(chain, min(keys), max(keys))
        write = log_chains.merged(
            chain, existing, next_start, upserts.get(chain, []), removals.get(chain, [])
        )
        for step in write.steps:
            for item in step:
                if stop_after is not None and puts >= stop_after:
                    return False
                put(item)
                puts += 1
    return True


def put(item: ChainItem, version: int | None = None) -> None:
    """One chain item as the store puts it (its version one more than it was read at)."""
    expires_at = item.expires_at
    attributes: dict[str, Any] = {
        "partition": {"S": item.chain},
        "sk": {"S": item.start},
        "logs": {"B": item.blob or log_chains.encode(item.logs)},
        "count": {"N": str(len(item.logs))},
        "version": {"N": str(item.version + 1 if version is None else version)},
    }
    if expires_at is not None:
        attributes["expires_at"] = {"N": str(expires_at)}
    log_chain_reads._client().put_item(TableName=TrackingLogModel.Meta.table_name, Item=attributes)


def items(chain: str) -> list[ChainItem]:
    """Every item of the chain, by start."""
    found: list[ChainItem] = []
    key = None
    while True:
        answer = log_chain_reads.query_items(chain, key, forward=True, limit=100)
        found += answer.items
        if not answer.more or not answer.items:
            return found
        key = answer.items[-1].start


def _covering(chain: str, low: str, high: str) -> tuple[list[ChainItem], str | None]:
    stored = items(chain)
    owner = [item for item in stored if item.start <= low][-1:]
    chosen = owner + [item for item in stored if low < item.start <= high]
    after = [item.start for item in stored if item.start > high]
    return chosen, (after[0] if after else None)
