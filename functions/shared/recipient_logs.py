"""Where a recipient's tracking logs are, across deliveries: read from the recipient's state items.

The tracking-logs table is keyed by delivery; rather than a recipient index on it (a write unit on
every log), each recipient state (``RecipientStateModel``, one per delivery the recipient acted on)
lists the sort keys of that recipient's logs in that delivery, and the states are stored in the
recipient's own partition (``models.stored_recipient_key``), so one Query finds them all. Past
``MAX_RECIPIENT_LOGS`` keys a state spills them to pages beside it (``recipient_log_pages``), which a
page of the tab reads only as far as it needs (``window``). Used by the recipient Tracking tab (API)
and by erasure (tracking workflow).

A log is read by its key from its recipient's chain (``log_chains.chain_of``): one Query for the item
owning the key (``load``). A state the migration flagged (``logs_overflow``: its logs were copied from
the old table and it lists none) is the one case read through the whole chain, kept to the recipient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from functions.shared import log_chain_store
from functions.shared.log_chains import chain_of, owned
from functions.shared.models import (
    LOG_KEY_SEPARATOR,
    RECIPIENT_LOG_PAGE_PREFIX,
    RECIPIENT_PARTITION_PREFIX,
    RECIPIENT_STATE_PREFIX,
    RecipientLogPageModel,
    RecipientStateModel,
    TrackingLogModel,
    stored_recipient_key,
)

PAGES_PER_QUERY = 2  # pages a Query reads at a time: a tab page of up to 200 logs needs about two


@dataclass(frozen=True)
class RecipientLogKeys:
    """One delivery's share of a recipient's logs: the state item's key, the logs' keys it lists and
    whether it spilled more to pages (``pages``, ``overlap``) or was flagged by the migration."""

    delivery_id: str
    state_sk: str
    partition: str  # the logs' chain (``log_chains.chain_of``)
    sks: tuple[str, ...]  # in order: those the state lists (``log_keys``: every one)
    recipient_id: str = ""
    pages: int = 0
    overlap: bool = False
    overflow: bool = False  # set by the migration: the logs are found through their partition


def _states(recipient_id: str, delivery_id: str | None) -> Iterator[RecipientStateModel]:
    partition, sk = stored_recipient_key(delivery_id or "", recipient_id)
    stored = RecipientStateModel.query(
        partition,
        range_key_condition=(
            RecipientStateModel.sk == sk
            if delivery_id
            else RecipientStateModel.sk.startswith(RECIPIENT_STATE_PREFIX)
        ),
        attributes_to_get=[
            "delivery_id",
            "sk",
            "recipient_id",
            "logs",
            "log_pages",
            "logs_overlap",
            "logs_overflow",
        ],
    )
    return (state.as_read() for state in stored)


def _overflowed(chain_key: str, recipient_id: str) -> tuple[str, ...]:
    """The sort keys of a recipient's logs in its chain, when their state was flagged by the migration."""
    items, key = [], None
    while True:
        answer = log_chain_store.query_items(chain_key, key, forward=True, limit=100)
        items += answer.items
        if not answer.more or not answer.items:
            break
        key = answer.items[-1].start
    return tuple(str(log.sk) for log in owned(items, None) if log.recipient_id == recipient_id)


def log_shares(recipient_id: str, delivery_id: str | None = None) -> list[RecipientLogKeys]:
    """Every delivery's share of the recipient's logs as their states tell (``delivery_id``: that
    delivery's only), by delivery id; reads no page."""
    shares = []
    for state in _states(recipient_id, delivery_id):
        delivery = str(state.delivery_id)
        shares.append(
            RecipientLogKeys(
                delivery,
                str(state.sk),
                chain_of(delivery, recipient_id),
                tuple(state.logs.split(LOG_KEY_SEPARATOR)) if state.logs else (),
                recipient_id,
                int(state.log_pages or 0),
                bool(state.logs_overlap),
                bool(state.logs_overflow),
            )
        )
    return sorted(shares, key=lambda share: share.delivery_id)


def _page_range(share: RecipientLogKeys) -> tuple[str, str, str]:
    """The recipient's partition, and the bounds of the stored sort keys of the share's pages."""
    prefix = f"{RECIPIENT_LOG_PAGE_PREFIX}{share.delivery_id}#"
    return RECIPIENT_PARTITION_PREFIX + share.recipient_id, prefix, prefix[:-1] + "$"  # "$" follows "#"


def _pages(
    share: RecipientLogKeys, low: str, high: str, forward: bool, limit: int | None = None
) -> Iterator[RecipientLogPageModel]:
    partition, _, _ = _page_range(share)
    return RecipientLogPageModel.query(
        partition,
        range_key_condition=RecipientLogPageModel.sk.between(low, high),
        scan_index_forward=forward,
        limit=limit,
        page_size=PAGES_PER_QUERY,
    )


def window(
    share: RecipientLogKeys, *, forward: bool, lo: str | None, hi: str | None, limit: int | None
) -> list[str]:
    """The first ``limit`` keys (None: all) of the share from ``lo`` up (``forward``) or from ``hi`` down, among
    those with ``lo <= key <= hi`` (None: unbounded), without repeats; reads only the pages it needs
    (all of them when they overlap)."""

    def inside(key: str) -> bool:
        return (lo is None or key >= lo) and (hi is None or key <= hi)

    spilled: list[str] = []
    if share.overflow:
        spilled = list(_overflowed(share.partition, share.recipient_id))
    elif share.pages and (share.overlap or limit is None):
        _, start, end = _page_range(share)
        spilled = [key for page in _pages(share, start, end, True) for key in page.log_keys()]
    elif share.pages and limit is not None:
        spilled = _ordered(share, forward, lo, hi, limit, inside)
    keys = sorted({key for key in chain(share.sks, spilled) if inside(key)}, reverse=not forward)
    return keys[:limit]


def _ordered(
    share: RecipientLogKeys,
    forward: bool,
    lo: str | None,
    hi: str | None,
    limit: int,
    inside: Callable[[str], bool],
) -> list[str]:
    """Keys of a share's pages, which hold disjoint ranges: from the page ``lo`` (or ``hi``) falls in
    onwards, page by page, until ``limit`` keys are found or the pages pass the other bound."""
    _, start, end = _page_range(share)
    found: list[str] = []
    if forward:
        # the last page starting before ``lo`` may hold keys from ``lo`` on; then the pages after it
        before = _pages(share, start, start + lo, False, limit=1) if lo else iter(())
        for page in chain(before, _pages(share, start + (lo or ""), end, True)):
            keys = page.log_keys()
            found += [key for key in keys if inside(key)]
            if len(found) >= limit or (hi is not None and keys[0] > hi):
                break
        return found
    # "~" follows "#": a page starting at ``hi`` itself is among them
    for page in _pages(share, start, start + hi + "~" if hi else end, False):
        keys = page.log_keys()
        found += [key for key in reversed(keys) if inside(key)]
        if len(found) >= limit or (lo is not None and keys[0] < lo):
            break
    return found


def log_keys(recipient_id: str, delivery_id: str | None = None) -> list[RecipientLogKeys]:
    """Every delivery's share of the recipient's logs with every key (its pages read whole)."""
    return [
        RecipientLogKeys(
            share.delivery_id,
            share.state_sk,
            share.partition,
            tuple(window(share, forward=True, lo=None, hi=None, limit=None)),
            recipient_id,
            share.pages,
            share.overlap,
            share.overflow,
        )
        for share in log_shares(recipient_id, delivery_id)
    ]


def page_keys(recipient_id: str) -> list[tuple[str, str]]:
    """The stored keys of every page of log keys in the recipient's partition (erasure)."""
    found = RecipientLogPageModel.query(
        RECIPIENT_PARTITION_PREFIX + recipient_id,
        range_key_condition=RecipientLogPageModel.sk.startswith(RECIPIENT_LOG_PAGE_PREFIX),
        attributes_to_get=["delivery_id", "sk"],
    )
    return [(str(page.delivery_id), str(page.sk)) for page in found]


def load(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]:
    """The tracking logs at these (chain, sort key) keys that still exist, each from the chain item
    owning its key (``log_chain_store.find``)."""
    return log_chain_store.find(keys, consistent=False)
