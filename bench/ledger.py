"""Every AWS request the functions make, counted through botocore event hooks, with DynamoDB units.

While ``RequestLedger.recording()`` is active, every botocore client created in the process (boto3's
and PynamoDB's alike) gets three hooks: ``before-parameter-build`` keeps the request's parameters,
``before-call`` reads the items a write is about to replace, and ``after-call`` records the request
with the write and read units DynamoDB would bill for it (``bench.capacity``). The items before and
after a write, and the whole items behind a projected or filtered read, are read through a private
client that carries no hooks, so they are never counted.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import botocore.session

from bench import capacity
from bench.capacity import Item

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
_PROJECTIONS = ("ProjectionExpression", "AttributesToGet", "Select", "FilterExpression", "QueryFilter")
_PLACEHOLDER = re.compile(r"[#:][A-Za-z0-9_]+")

Key = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Written:
    table: str
    hash_key: str
    range_key: str
    write_units: float  # the item's own and its index entries'


@dataclass(frozen=True)
class Request:
    service: str
    operation: str
    table: str | None = None
    write_units: float = 0.0
    read_units: float = 0.0
    written: tuple[Written, ...] = ()  # each item written, with its share of the units
    items_read: int = 0
    failed: bool = False

    @property
    def is_write(self) -> bool:
        return self.service == "dynamodb" and self.operation in WRITE_OPERATIONS

    @property
    def is_read(self) -> bool:
        return self.service == "dynamodb" and self.operation in READ_OPERATIONS


@dataclass
class Totals:
    """What a stretch of requests cost: DynamoDB reads and writes, their units, and every other call."""

    writes: int = 0
    reads: int = 0
    write_units: float = 0.0
    read_units: float = 0.0
    items_written: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, requests: Iterable[Request]) -> Totals:
        totals = cls()
        for request in requests:
            totals.by_operation[f"{request.service}:{request.operation}"] += 1
            if request.is_write:
                totals.writes += 1
                totals.write_units += request.write_units
                totals.items_written += len(request.written)
            elif request.is_read:
                totals.reads += 1
                totals.read_units += request.read_units
        return totals

    def operations(self) -> str:
        return ", ".join(f"{name.split(':', 1)[1]} {n}" for name, n in sorted(self.by_operation.items()))


def _key_names(table: str) -> tuple[str, ...]:
    spec = capacity.table_spec(table)
    if spec is None:
        return ()
    return tuple(key.name for key in (spec.hash_key, spec.range_key) if key is not None)


def _key_of(table: str, item: Item) -> dict[str, Any]:
    return {name: item[name] for name in _key_names(table) if name in item}


def _frozen(key: Item) -> Key:
    return tuple(sorted((name, repr(value)) for name, value in key.items()))


def _written(table: str, key: Item, units: float) -> Written:
    values = [str(next(iter(key[name].values()))) for name in _key_names(table) if name in key]
    return Written(table, values[0] if values else "", values[1] if len(values) > 1 else "", units)


class RequestLedger:
    """``units=False`` only counts requests: no reads of items before and after, much cheaper."""

    def __init__(self, *, units: bool = True) -> None:
        self.requests: list[Request] = []
        self.units = units
        self._reader: Any = None
        self._recording = threading.Lock()

    def mark(self) -> int:
        return len(self.requests)

    def since(self, mark: int) -> list[Request]:
        return self.requests[mark:]

    @contextmanager
    def recording(self) -> Iterator[RequestLedger]:
        """Hook every client created from now on (create clients inside, not before)."""
        self._reader = botocore.session.get_session().create_client("dynamodb", region_name="us-east-1")
        original = botocore.session.Session.create_client
        ledger = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            ledger.attach(client)
            return client

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
        try:
            yield self
        finally:
            botocore.session.Session.create_client = original  # type: ignore[method-assign]

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build", self._keep_parameters, unique_id="bench-ledger-params")
        events.register("before-call", self._before_call, unique_id="bench-ledger-before")
        events.register("after-call", self._after_call, unique_id="bench-ledger-after")

    # --- hooks ------------------------------------------------------------------------------------

    def _keep_parameters(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_parameters"] = params

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if (
            not self.units
            or model.service_model.service_name != "dynamodb"
            or model.name not in WRITE_OPERATIONS
        ):
            return
        context["bench_before"] = self._current_items(self._targets(model.name, context["bench_parameters"]))

    def _after_call(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_request"] = self._record(self._request(model, parsed, context))

    def _request(self, model: Any, parsed: dict[str, Any], context: dict[str, Any]) -> Request:
        service, operation = model.service_model.service_name, model.name
        parameters = context.get("bench_parameters", {})
        if service != "dynamodb" or not self.units:
            return Request(service, operation, parameters.get("TableName"))
        failed = "Error" in parsed
        if operation in WRITE_OPERATIONS:
            return self._write(operation, parameters, context.get("bench_before", {}), failed)
        if operation in READ_OPERATIONS:
            return self._read(operation, parameters, parsed)
        return Request(service, operation, parameters.get("TableName"))

    def _record(self, request: Request) -> int:
        """Keeps ``request``; its index in ``requests``. Requests answered in several threads at once
        (a logs page's Queries) each get their own index."""
        with self._recording:
            self.requests.append(request)
            return len(self.requests) - 1

    # --- writes -----------------------------------------------------------------------------------

    @staticmethod
    def _targets(operation: str, parameters: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(action, table, action parameters) for every item a write touches."""
        if operation == "PutItem":
            return [("Put", parameters["TableName"], parameters)]
        if operation == "UpdateItem":
            return [("Update", parameters["TableName"], parameters)]
        if operation == "DeleteItem":
            return [("Delete", parameters["TableName"], parameters)]
        targets = []
        if operation == "BatchWriteItem":
            for table, writes in parameters["RequestItems"].items():
                for write in writes:
                    if "PutRequest" in write:
                        targets.append(("Put", table, write["PutRequest"]))
                    else:
                        targets.append(("Delete", table, write["DeleteRequest"]))
        elif operation == "TransactWriteItems":
            for action in parameters["TransactItems"]:
                ((kind, detail),) = action.items()
                targets.append((kind, detail["TableName"], detail))
        return targets

    @staticmethod
    def _target_key(table: str, detail: dict[str, Any]) -> dict[str, Any]:
        return detail["Key"] if "Key" in detail else _key_of(table, detail["Item"])

    def _current_items(self, targets: Sequence[tuple[str, str, dict[str, Any]]]) -> dict[Key, Item | None]:
        keys: dict[str, list[dict[str, Any]]] = {}
        for _, table, detail in targets:
            keys.setdefault(table, []).append(self._target_key(table, detail))
        found: dict[Key, Item | None] = {}
        for table, table_keys in keys.items():
            found.update(self._fetch(table, table_keys))
        return found

    def _write(
        self, operation: str, parameters: dict[str, Any], before: dict[Key, Item | None], failed: bool
    ) -> Request:
        targets = self._targets(operation, parameters)
        after = {} if failed else self._current_items([t for t in targets if t[0] == "Update"])
        factor = 2 if operation == "TransactWriteItems" else 1
        units = 0.0
        written: list[Written] = []
        for action, table, detail in targets:
            key = self._target_key(table, detail)
            old = before.get(_frozen(key))
            if failed or action == "ConditionCheck":
                units += factor * capacity.write_units(capacity.item_size(old), 0)
                continue
            new: Item | None = {"Put": detail.get("Item"), "Delete": None}.get(
                action, after.get(_frozen(key))
            )
            item_units = factor * (
                capacity.write_units(capacity.item_size(old), capacity.item_size(new))
                + capacity.index_write_units(table, old, new)
            )
            units += item_units
            written.append(_written(table, key, item_units))
        table_name = targets[0][1] if targets else None
        return Request(
            "dynamodb", operation, table_name, write_units=units, written=tuple(written), failed=failed
        )

    # --- reads ------------------------------------------------------------------------------------

    def _read(self, operation: str, parameters: dict[str, Any], parsed: dict[str, Any]) -> Request:
        if operation == "GetItem":
            table = parameters["TableName"]
            item = parsed.get("Item")
            if any(name in parameters for name in _PROJECTIONS):
                item = self._fetch(table, [parameters["Key"]]).get(_frozen(parameters["Key"]))
            consistent = bool(parameters.get("ConsistentRead"))
            units = capacity.read_units(capacity.item_size(item), consistent=consistent)
            return Request("dynamodb", operation, table, read_units=units, items_read=1 if item else 0)
        if operation == "BatchGetItem":
            units = 0.0
            read = 0
            for table, request in parameters["RequestItems"].items():
                items = self._fetch(table, request["Keys"])
                for key in request["Keys"]:
                    item = items.get(_frozen(key))
                    read += 1 if item else 0
                    consistent = bool(request.get("ConsistentRead"))
                    units += capacity.read_units(capacity.item_size(item), consistent=consistent)
            table_name = next(iter(parameters["RequestItems"]), None)
            return Request("dynamodb", operation, table_name, read_units=units, items_read=read)
        if operation in ("Query", "Scan"):
            evaluated: list[Item] = parsed.get("Items", [])
            if any(name in parameters for name in _PROJECTIONS):
                evaluated = self._evaluated(operation, parameters)
            consistent = bool(parameters.get("ConsistentRead")) and "IndexName" not in parameters
            size = sum(capacity.item_size(item) for item in evaluated)
            units = capacity.read_units(size, consistent=consistent)
            return Request(
                "dynamodb", operation, parameters["TableName"], read_units=units, items_read=len(evaluated)
            )
        # TransactGetItems: strongly consistent, twice the price
        units = 0.0
        for action in parameters["TransactItems"]:
            detail = action["Get"]
            item = self._fetch(detail["TableName"], [detail["Key"]]).get(_frozen(detail["Key"]))
            units += 2 * capacity.read_units(capacity.item_size(item), consistent=True)
        return Request("dynamodb", operation, None, read_units=units)

    def _fetch(self, table: str, keys: Sequence[dict[str, Any]]) -> dict[Key, Item | None]:
        """The whole current items at these keys, read without hooks."""
        found: dict[Key, Item | None] = {_frozen(key): None for key in keys}
        unique = list({_frozen(key): key for key in keys}.values())
        for start in range(0, len(unique), 100):
            answer = self._reader.batch_get_item(
                RequestItems={table: {"Keys": unique[start : start + 100], "ConsistentRead": True}}
            )
            for item in answer["Responses"].get(table, []):
                found[_frozen(_key_of(table, item))] = item
        return found

    def _evaluated(self, operation: str, parameters: dict[str, Any]) -> list[Item]:
        """The items a projected or filtered Query/Scan evaluated: the same call without projection or filter."""
        plain = {name: value for name, value in parameters.items() if name not in _PROJECTIONS}
        used = set(_PLACEHOLDER.findall(plain.get("KeyConditionExpression", "")))
        for name in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            kept = {k: v for k, v in plain.pop(name, {}).items() if k in used}
            if kept:
                plain[name] = kept
        call = self._reader.query if operation == "Query" else self._reader.scan
        return list(call(**plain).get("Items", []))
