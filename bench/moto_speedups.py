"""Two bench-only shims that keep moto's own costs out of the figures, so they measure msgtrack.

moto 5.2.5 emulates DynamoDB correctly but slowly, in two places that grow with the data:

* every Query sorts and tests every item of the whole table (about 250 ms a call once the raw-events
  table holds 100,000 items), where DynamoDB reads one partition from a sorted position. With the shim,
  a base-table Query hands moto only the queried partition's items that satisfy the key condition,
  after the exclusive start key, one more than the limit; moto then answers as usual (same items, same
  ``LastEvaluatedKey``, its own filters and projections). Index queries go to moto untouched. Only the
  querying thread sees that window (``Table.all_items``, through a thread-local): a logs page sends
  its partitions' Queries at once from several threads, and each must read its own partition while
  the table stays whole for every other request.
* every answer is serialized by walking botocore's output shape in Python (two thirds of moto's time
  in a workflow run). DynamoDB's item operations already build their answer in wire form, so the shim
  writes it with ``json.dumps``; anything that is not plain JSON (a table description with dates, an
  error) goes through moto's serializer. Checked on a workflow run: every answer byte-identical once
  parsed; the scaling figure also checks that moto and the in-memory store end with the same indicators.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.core.serialize import JSONSerializer
from moto.dynamodb.comparisons import get_comparison_func
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_ITEM_OPERATIONS = frozenset(
    {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem", "BatchWriteItem", "Query", "Scan"}
)


def _start_value(table: Table, exclusive_start_key: dict[str, Any] | None) -> Any:
    if not exclusive_start_key or table.range_key_attr not in exclusive_start_key:
        return None
    return DynamoType(exclusive_start_key[table.range_key_attr]).cast_value


def _window(table: Table, partition: dict[Any, Any], arguments: dict[str, Any]) -> dict[Any, Any]:
    comparison = arguments.get("range_comparison")
    compare = get_comparison_func(comparison) if comparison else None
    bounds = [value.cast_value for value in arguments.get("range_objs") or ()]
    keys = [key for key in partition if compare is None or compare(key.cast_value, *bounds)]
    keys.sort(key=lambda key: key.cast_value)
    forward = arguments.get("scan_index_forward", True) is not False
    start = _start_value(table, arguments.get("exclusive_start_key"))
    if start is not None:
        keys = [k for k in keys if (k.cast_value > start if forward else k.cast_value < start)]
    limit = arguments.get("limit")
    if limit:
        keys = keys[: limit + 1] if forward else keys[-(limit + 1) :]
    return {key: partition[key] for key in keys}


# The window of the base-table Query this thread is answering: (table, its items in key order)
_WINDOW = threading.local()


@contextmanager
def partition_queries() -> Iterator[None]:
    original_query, original_all_items = Table.query, Table.all_items
    signature = inspect.signature(original_query)

    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        hash_key = arguments.get("hash_key")
        narrow = (
            hash_key is not None
            and self.range_key_attr is not None
            and arguments.get("index_name") is None
            and len(arguments.get("range_key_conditions") or ()) <= 1
        )
        if not narrow:
            return original_query(self, *args, **kwargs)
        window = list(_window(self, self.items.get(hash_key, {}), arguments).values())
        outer = getattr(_WINDOW, "current", None)
        _WINDOW.current = (self, window)
        try:
            return original_query(self, *args, **kwargs)
        finally:
            _WINDOW.current = outer

    def all_items(self: Table) -> list[Any]:
        current = getattr(_WINDOW, "current", None)
        if current is not None and current[0] is self:
            return list(current[1])
        return original_all_items(self)

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]
    try:
        yield
    finally:
        Table.query = original_query  # type: ignore[method-assign]
        Table.all_items = original_all_items  # type: ignore[method-assign]


@contextmanager
def plain_json_answers() -> Iterator[None]:
    original = JSONSerializer._serialize_result

    def serialize(self: JSONSerializer, response: Any, result: Any) -> Any:
        model = self.operation_model
        if model.service_model.service_name == "dynamodb" and model.name in _ITEM_OPERATIONS:
            try:
                return self._serialized_result_to_response(response, result, None, result)
            except (TypeError, ValueError):
                pass
        return original(self, response, result)

    JSONSerializer._serialize_result = serialize  # type: ignore[method-assign]
    try:
        yield
    finally:
        JSONSerializer._serialize_result = original  # type: ignore[method-assign]


@contextmanager
def faster_moto() -> Iterator[None]:
    with partition_queries(), plain_json_answers():
        yield
