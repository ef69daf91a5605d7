"""Tracking logs packed in chains: about 14 logs per item of at most 1 KB, one write unit.

A tracking log stored alone is an item of ~390 bytes, one write unit: 63 % of what the tracking
workflow wrote per event (BENCHMARKS.md figures 3 and 6). Logs are small, alike and written in time
order, so they are packed instead:

- **Chains.** A delivery's logs lie in ``LOG_CHAINS`` chains, a recipient's all in one (``chain_of``:
  the same crc32 of delivery and recipient as the raw-event shard, ``raw_events.shard_of``, so a raw
  shard feeds the same chains whatever the shard count and each worker writes chains of its own).
- **Items.** A chain is a run of items in the tracking-logs table under the chain's partition key, each
  keyed by its *start*: the sort key (``<at>#<event_id>``) of the first log it held when it was made.
  The items of a chain cut its sort keys into ranges: an item *owns* the keys from its start up to the
  next item's start. It holds the logs of its range compressed (``encode``), at most ``ITEM_BYTES``
  in all, so writing it costs one write unit (an item holding one log too big to share is bigger).
- **Ownership.** A reader takes each log from the item owning its key and ignores a copy found
  anywhere else (``owned``): such a copy is what a crash left behind while an item was being split,
  and the next write to its item drops it (``merged``).
- **Writing** (``merged``): the items owning the range a write touches are read, logs are replaced by
  sort key (a log written again, as when the honeypot burst finds it a scanner's, is one log), added,
  or removed (erasure); each item whose logs changed is packed again. An item that outgrows its bytes
  keeps its start and hands its tail to new items, which are put first, right to left, and the item
  itself last: whenever a crash stops the writes, every log is still owned by an item that holds it.
  Appending, the common case, fills the chain's last item and puts new items after it.

Two writers of one chain are told apart by a version on each item (a conditional put); in the
tracking workflow a chain has one writer, the worker reading the raw shard that feeds it.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from functions.shared.models import TrackingLogModel

LOG_CHAINS = 64  # fixed for the life of the data: readers read exactly these partition keys
CHAIN_SEPARATOR = "#c"  # "<delivery>#c<NN>"; no delivery id holds "#" (``ids.delivery_id``)
ITEM_BYTES = 1024  # an item's size at most (one write unit), names and keys included
# What an item holds besides its logs: attribute names, the number of logs, the version and the
# expiry time, each at its largest (DynamoDB sizes a number at up to 21 bytes).
_ITEM_OVERHEAD = (
    len("partition") + len("sk") + len("logs") + len("count") + len("version") + len("expires_at") + 3 * 21
)
_COMPRESSION = 6
_MOST_PER_ITEM = 128  # logs an item holds at most: the packing searches no further

# A log's fields after its sort key and flags, in this order; ``delivery_id`` comes from the chain,
# ``at`` and ``event_id`` from the sort key.
_FIELDS = (
    "recipient_id",
    "type",
    "url_id",
    "url",
    "label",
    "browser",
    "os",
    "device",
    "person_id",
    "expires_at",
    "amount",
    "currency",
    "machine",
    "machine_reason",
    "client_key",
)
_PROOF, _COUNTED = 1, 2


def chain_number(delivery_id: str, recipient_id: str) -> int:
    return zlib.crc32(f"{delivery_id}\x1f{recipient_id}".encode()) % LOG_CHAINS


def chain_key(delivery_id: str, number: int) -> str:
    return f"{delivery_id}{CHAIN_SEPARATOR}{number:02d}"


def chain_of(delivery_id: str, recipient_id: str) -> str:
    """The partition key of the chain holding every log of this recipient in this delivery."""
    return chain_key(delivery_id, chain_number(delivery_id, recipient_id))


def chains(delivery_id: str) -> list[str]:
    """Every chain of the delivery, in the order of their numbers."""
    return [chain_key(delivery_id, number) for number in range(LOG_CHAINS)]


def delivery_of(chain: str) -> str:
    return chain.rpartition(CHAIN_SEPARATOR)[0]


# --- the logs of an item --------------------------------------------------------------------------


def encode(logs: Sequence[TrackingLogModel]) -> bytes:
    """The logs (in sort-key order) as an item holds them: zlib of compact JSON arrays."""
    rows = [
        [
            str(log.sk),
            (_PROOF if log.proof else 0) | (_COUNTED if log.counted else 0),
            *(getattr(log, name) for name in _FIELDS),
        ]
        for log in logs
    ]
    text = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    return zlib.compress(text.encode(), _COMPRESSION)


def decode(chain: str, blob: bytes) -> list[TrackingLogModel]:
    """The logs of an item of ``chain``, as ``TrackingLogModel`` (keyed by the chain)."""
    delivery_id = delivery_of(chain)
    logs = []
    for sk, flags, *values in json.loads(zlib.decompress(blob)):
        at, _, event_id = sk.partition("#")
        fields = dict(zip(_FIELDS, values, strict=True))
        logs.append(
            TrackingLogModel(
                partition=chain,
                sk=sk,
                delivery_id=delivery_id,
                event_id=event_id,
                at=at,
                proof=bool(flags & _PROOF),
                counted=bool(flags & _COUNTED),
                **{name: value for name, value in fields.items() if value is not None},
            )
        )
    return logs


@dataclass(frozen=True)
class ChainItem:
    """One item of a chain: its start, its logs in sort-key order, and the version it was read at
    (0: not stored)."""

    chain: str
    start: str
    logs: tuple[TrackingLogModel, ...]
    version: int = 0
    blob: bytes = field(default=b"", compare=False)

    @property
    def expires_at(self) -> int | None:
        times = [int(log.expires_at) for log in self.logs if log.expires_at is not None]
        return max(times) if times else None

    def budget(self) -> int:
        """The bytes its encoded logs may take for the item to stay within ``ITEM_BYTES``."""
        return ITEM_BYTES - _ITEM_OVERHEAD - len(self.chain.encode()) - len(self.start.encode())


# --- reading --------------------------------------------------------------------------------------


def owned(items: Sequence[ChainItem], next_start: str | None) -> Iterator[TrackingLogModel]:
    """The logs of consecutive items of one chain (ascending by start), each from the item owning
    its key: ``next_start`` is the start of the item after the last (None: the chain ends there)."""
    for index, item in enumerate(items):
        end = items[index + 1].start if index + 1 < len(items) else next_start
        for log in item.logs:
            sk = str(log.sk)
            if sk >= item.start and (end is None or sk < end):
                yield log


# --- writing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainWrite:
    """The items to put, in steps: the items of a step may be put at once, each step after the one
    before it landed. A put of an item read at version v is conditional on v (0: on its absence)."""

    steps: list[list[ChainItem]]

    def items(self) -> list[ChainItem]:
        return [item for step in self.steps for item in step]


def merged(
    chain: str,
    existing: Sequence[ChainItem],
    next_start: str | None,
    upserts: Iterable[TrackingLogModel] = (),
    removed: Iterable[str] = (),
) -> ChainWrite:
    """What to put so that the chain holds ``upserts`` (replacing logs of the same sort key) and no
    longer holds the ``removed`` sort keys.

    ``existing`` are the chain's items owning any key written or removed, ascending: the item owning
    the least such key (none if it precedes the chain's first item) and every later item up to the one
    owning the greatest; ``next_start`` is the start of the item after them (None: none).
    """
    items = sorted(existing, key=lambda item: item.start)
    groups: list[tuple[ChainItem, dict[str, TrackingLogModel]]] = []
    for index, item in enumerate(items):
        end = items[index + 1].start if index + 1 < len(items) else next_start
        mine = {
            str(log.sk): log
            for log in item.logs
            if str(log.sk) >= item.start and (end is None or str(log.sk) < end)
        }
        groups.append((item, mine))
    changed: set[int] = set()
    left: dict[str, TrackingLogModel] = {}  # logs before the chain's first item
    for sk in removed:
        owner = _owner(items, sk)
        if owner is not None and groups[owner][1].pop(sk, None) is not None:
            changed.add(owner)
    for log in upserts:
        sk = str(log.sk)
        owner = _owner(items, sk)
        if owner is None:
            left[sk] = log
            continue
        before = groups[owner][1].get(sk)
        if before is None or before.serialize() != log.serialize():
            groups[owner][1][sk] = log
            changed.add(owner)
    for index, (item, mine) in enumerate(groups):
        if len(mine) != len(item.logs):
            changed.add(index)  # it held copies another item owns: drop them

    tails: list[ChainItem] = []  # new items right of every log an item held: put at once, first
    moving: list[ChainItem] = []  # new items taking logs an item held: one at a time, right to left
    rewritten: list[ChainItem] = []  # the existing items: put last
    if left:
        tails += _pack(chain, sorted(left.values(), key=lambda log: str(log.sk)), None)
    for index in sorted(changed):
        item, mine = groups[index]
        held = {str(log.sk) for log in item.logs}
        pieces = _pack(chain, sorted(mine.values(), key=lambda log: str(log.sk)), item)
        rewritten.append(pieces[0])
        last_held = max(
            (number for number, piece in enumerate(pieces) if any(str(log.sk) in held for log in piece.logs)),
            default=0,
        )
        moving += pieces[1 : last_held + 1]
        tails += pieces[last_held + 1 :]
    steps: list[list[ChainItem]] = []
    if tails:
        steps.append(tails)
    steps += [[piece] for piece in sorted(moving, key=lambda piece: piece.start, reverse=True)]
    if rewritten:
        steps.append(rewritten)
    return ChainWrite(steps)


def _owner(items: Sequence[ChainItem], sk: str) -> int | None:
    """The index of the item owning ``sk``: the last whose start is at most ``sk``."""
    owner = None
    for index, item in enumerate(items):
        if item.start <= sk:
            owner = index
        else:
            break
    return owner


def _pack(chain: str, logs: list[TrackingLogModel], item: ChainItem | None) -> list[ChainItem]:
    """``logs`` (sorted) cut into items within their byte budget, greedily from the left: the first
    keeps ``item``'s start and version (a new chain's first: its first log's key), each next starts
    at its first log."""
    pieces: list[ChainItem] = []
    rest = logs
    while True:
        start = item.start if item is not None and not pieces else (str(rest[0].sk) if rest else "")
        version = item.version if item is not None and not pieces else 0
        probe = ChainItem(chain, start, (), version)
        count, blob = _fitting(rest, probe.budget())
        pieces.append(ChainItem(chain, start, tuple(rest[:count]), version, blob))
        rest = rest[count:]
        if not rest:
            return pieces


def _fitting(logs: list[TrackingLogModel], budget: int) -> tuple[int, bytes]:
    """How many of ``logs`` from the first fit ``budget`` bytes encoded (at least one, unless there
    are none: one log alone may be bigger), and their encoding. A binary search over at most
    ``_MOST_PER_ITEM`` logs: a handful of encodings per item."""
    if not logs:
        return 0, encode([])
    low, high = 1, min(len(logs), _MOST_PER_ITEM)
    blob = encode(logs[:high])
    if len(blob) <= budget:
        return high, blob
    blob = encode(logs[:1])
    high -= 1
    while low < high:
        middle = (low + high + 1) // 2
        candidate = encode(logs[:middle])
        if len(candidate) <= budget:
            low, blob = middle, candidate
        else:
            high = middle - 1
    return low, blob
