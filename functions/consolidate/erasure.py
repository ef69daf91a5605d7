"""Erasing a recipient's tracking data on request, as part of a tracking workflow run.

Run after the run's consolidation, so every hit recorded before it is already in the
aggregates, which stay: they hold counts, not people. What names the recipient goes: their
tracking logs, their raw events (even those not yet consolidated) and their per-delivery state.
Every delete is idempotent, and a request stays pending until all of it is done, so a crash only
means the next run erases again. A recipient who clicks a link again later is tracked afresh.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from functions.shared import timeutil
from functions.shared.models import ERASURES_PK, RECIPIENT_STATE_PREFIX, ErasureModel
from functions.shared.observability import logger
from functions.shared.tables import delivery_of_partition


class ErasureStore(Protocol):
    def pending_erasures(self) -> list[ErasureModel]: ...
    def recipient_log_keys(self, recipient_id: str) -> list[tuple[str, str]]:
        """The (partition, sk) keys of every tracking log of the recipient, in every delivery."""
        ...

    def recipient_raw_keys(self, recipient_id: str) -> list[tuple[str, str]]: ...
    def delete_logs(self, keys: Iterable[tuple[str, str]]) -> None: ...
    def delete_raw(self, keys: Iterable[tuple[str, str]]) -> None: ...
    def delete_indicators(self, keys: Iterable[tuple[str, str]]) -> None: ...
    def complete_erasure(self, pending: ErasureModel, done: ErasureModel) -> None: ...


def erase_requested(store: ErasureStore) -> int:
    """Carry out every pending erasure request; the number carried out."""
    requests = store.pending_erasures()
    for request in requests:
        recipient_id = str(request.recipient_id)
        logs = store.recipient_log_keys(recipient_id)
        deliveries = {delivery_of_partition(partition) for partition, _ in logs}
        states = [(delivery_id, RECIPIENT_STATE_PREFIX + recipient_id) for delivery_id in sorted(deliveries)]
        raw = store.recipient_raw_keys(recipient_id)
        store.delete_raw(raw)
        store.delete_indicators(states)
        store.delete_logs(logs)  # last: the logs are how a retry finds the deliveries again
        done = ErasureModel(
            pk=ERASURES_PK,
            sk=request.sk,
            recipient_id=recipient_id,
            status="done",
            requested_at=request.requested_at,
            done_at=timeutil.iso(timeutil.now()),
            logs_deleted=len(logs),
            raw_events_deleted=len(raw),
            states_deleted=len(states),
        )
        store.complete_erasure(request, done)
        logger.info(
            "erased a recipient's tracking data",
            extra={
                "erasure_id": request.sk,
                "logs": len(logs),
                "raw_events": len(raw),
                "states": len(states),
            },
        )
    return len(requests)
