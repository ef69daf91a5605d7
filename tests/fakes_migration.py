"""An in-memory MigrationStore with the DynamoDB store's semantics, and crashes on demand."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from functions.consolidate.migrate import Item, Progress, is_legacy_state, is_unchained
from functions.consolidate.store import LockLost
from functions.shared.models import stored_recipient_key
from tests.fakes_workflow import Crash

Key = tuple[str, str]


def _key(item: Item, hash_name: str) -> Key:
    return (item[hash_name]["S"], item["sk"]["S"])


class FakeMigrationStore:
    def __init__(self) -> None:
        self.indicators: dict[Key, Item] = {}
        self.old_tables: dict[str, dict[Key, Item]] = {}
        self.logs: dict[Key, Item] = {}  # the tracking-logs table's logs, by (partition, sk): chained or not
        self.lock_owner: str | None = None
        self.lock_expires = 0.0
        self.progress: str | None = None
        self.calls: Counter[str] = Counter()
        self.fault: Callable[[str, int], bool] = lambda operation, count: False
        self.dead = False

    def _call(self, operation: str) -> None:
        if self.dead:
            raise Crash(f"{operation} after a crash")
        self.calls[operation] += 1
        if self.fault(operation, self.calls[operation]):
            self.dead = True
            raise Crash(f"injected fault in {operation} (call {self.calls[operation]})")

    def restart(self) -> None:
        """A new process: the stored data stays, the fault goes."""
        self.dead = False
        self.fault = lambda operation, count: False

    def acquire_lock(self, owner: str, now: float, ttl_seconds: int) -> str | None:
        self._call("acquire_lock")
        if self.lock_owner not in (None, owner) and self.lock_expires >= now:
            return self.lock_owner
        self.lock_owner, self.lock_expires = owner, now + ttl_seconds
        return None

    def renew_lock(self, owner: str, now: float, ttl_seconds: int) -> None:
        self._call("renew_lock")
        if self.lock_owner != owner:
            raise LockLost(f"{owner} lost the lock")
        self.lock_expires = now + ttl_seconds

    def release_lock(self, owner: str) -> None:
        self._call("release_lock")
        if self.lock_owner == owner:
            self.lock_owner = None

    def load_progress(self) -> Progress | None:
        self._call("load_progress")
        return Progress.decode(self.progress) if self.progress else None

    def save_progress(self, progress: Progress) -> None:
        self._call("save_progress")
        self.progress = progress.encode()

    @staticmethod
    def _page(
        table: dict[Key, Item], cursor: Item | None, limit: int, hash_name: str
    ) -> tuple[list[Item], Item | None]:
        keys = sorted(table)
        if cursor is not None:
            after = _key(cursor, hash_name)
            keys = [key for key in keys if key > after]
        page = keys[:limit]
        last = None
        if len(keys) > limit:
            last = {hash_name: {"S": page[-1][0]}, "sk": {"S": page[-1][1]}}
        return [dict(table[key]) for key in page], last

    def legacy_states(self, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]:
        self._call("legacy_states")
        items, after = self._page(self.indicators, cursor, limit, "delivery_id")
        return [item for item in items if is_legacy_state(item)], after

    def put_if_absent(self, item: Item) -> Item | None:
        self._call("put_if_absent")
        key = _key(item, "delivery_id")
        if key in self.indicators:
            return dict(self.indicators[key])
        self.indicators[key] = dict(item)
        return None

    def delete(self, key: Item) -> None:
        self._call("delete")
        self.indicators.pop(_key(key, "delivery_id"), None)

    def old_logs(self, table: str, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]:
        self._call("old_logs")
        return self._page(self.old_tables[table], cursor, limit, "delivery_id")

    def unchained_logs(self, cursor: Item | None, limit: int) -> tuple[list[Item], Item | None]:
        self._call("unchained_logs")
        items, after = self._page(self.logs, cursor, limit, "partition")
        return [item for item in items if is_unchained(item)], after

    def chain_logs(self, logs: list[Item]) -> None:
        """Each log kept by (chain, sort key): the chains' packing is ``log_chain_store``'s (its tests)."""
        self._call("chain_logs")
        for log in logs:
            self.logs.setdefault(_key(log, "partition"), dict(log))

    def delete_logs(self, keys: list[Item]) -> None:
        self._call("delete_logs")
        for key in keys:
            self.logs.pop(_key(key, "partition"), None)

    def mark_overflow(self, delivery_id: str, recipient_id: str) -> None:
        self._call("mark_overflow")
        pk, sk = stored_recipient_key(delivery_id, recipient_id)
        state = self.indicators.setdefault(
            (pk, sk), {"delivery_id": {"S": pk}, "sk": {"S": sk}, "recipient_id": {"S": recipient_id}}
        )
        state["logs_overflow"] = {"BOOL": True}
        state.pop("logs", None)
