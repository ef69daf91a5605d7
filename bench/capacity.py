"""DynamoDB item sizes and capacity units, computed the way DynamoDB bills them.

moto 5.2.5 answers ``ReturnConsumedCapacity`` with a constant (1.0 for a write, 0.5 for a read,
whatever the item size), so the bench computes units itself from the items, following
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html:

* size: attribute name bytes + value bytes; a number takes 1 byte per two significant digits + 1; a
  boolean or null 1 byte; a list or map 3 bytes + 1 byte per element + its elements;
* a write: 1 unit per started KB of the larger of the item before and after, at least 1; each global
  secondary index whose keys the item carries costs as much again for its projected entry (twice when
  the write moves the entry to other index keys);
* a read: 1 unit per started 4 KB read strongly consistent, half that eventually consistent; a Query
  sums the items it evaluates before rounding, a GetItem or each BatchGetItem key rounds on its own
  (a missing item still costs the minimum);
* a transactional read or write costs twice as much.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions.shared.tables import ALL_TABLES, TableSpec

Item = Mapping[str, Mapping[str, Any]]  # attribute name -> DynamoDB attribute value

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


def number_size(text: str) -> int:
    digits = text.lstrip("+-").replace(".", "")
    mantissa = digits.split("e")[0].split("E")[0].strip("0")
    return math.ceil(len(mantissa) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return number_size(str(content))
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(element).encode()) for element in content)
    if kind == "NS":
        return sum(number_size(str(element)) for element in content)
    if kind == "BS":
        return sum(len(element) for element in content)
    if kind == "L":
        return 3 + sum(value_size(element) + 1 for element in content)
    if kind == "M":
        return 3 + sum(len(name.encode()) + value_size(element) + 1 for name, element in content.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Item | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size_before: int, size_after: int) -> int:
    return max(1, math.ceil(max(size_before, size_after) / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


# --- global secondary indexes -------------------------------------------------------------------


@dataclass(frozen=True)
class IndexShape:
    name: str
    keys: tuple[str, ...]
    projected: tuple[str, ...] | None  # None: every attribute


def table_spec(table_name: str) -> TableSpec | None:
    return next((spec for spec in ALL_TABLES if spec.table_name == table_name), None)


def indexes_of(table_name: str) -> list[IndexShape]:
    spec = table_spec(table_name)
    if spec is None:
        return []
    table_keys = tuple(key.name for key in (spec.hash_key, spec.range_key) if key is not None)
    shapes = []
    for index in spec.indexes:
        keys = tuple(key.name for key in (index.hash_key, index.range_key) if key is not None)
        projected = None if index.include is None else (*table_keys, *keys, *index.include)
        shapes.append(IndexShape(index.name, keys, projected))
    return shapes


def _entry(index: IndexShape, item: Item | None) -> dict[str, Any] | None:
    """The item as the index holds it, or None when the item lacks the index's keys."""
    if not item or any(key not in item for key in index.keys):
        return None
    if index.projected is None:
        return dict(item)
    return {name: value for name, value in item.items() if name in index.projected}


def index_write_units(table_name: str, before: Item | None, after: Item | None) -> int:
    """What one table write costs in the table's global secondary indexes."""
    units = 0
    for index in indexes_of(table_name):
        old, new = _entry(index, before), _entry(index, after)
        if old == new:  # not in the index, or its entry unchanged: no index write
            continue
        if old is None or new is None or all(old[key] == new[key] for key in index.keys):
            units += write_units(item_size(old), item_size(new))
        else:  # the entry moves: a delete and a put
            units += write_units(item_size(old), 0) + write_units(0, item_size(new))
    return units
