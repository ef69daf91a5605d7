"""Where a recipient's tracking logs are, across deliveries: read from the recipient's state items.

The tracking-logs table is keyed by delivery; rather than a recipient index on it (a write unit on
every log), each recipient state (``RecipientStateModel``, one per delivery the recipient acted on)
lists the sort keys of that recipient's logs in that delivery, and the states are stored in the
recipient's own partition (``models.stored_recipient_key``), so one Query finds them all. Used by the
recipient Tracking tab (API) and by erasure (tracking workflow).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from functions.shared.models import (
    LOG_KEY_SEPARATOR,
    RecipientStateModel,
    TrackingLogModel,
    stored_recipient_key,
)
from functions.shared.tables import tracking_log_partition


@dataclass(frozen=True)
class RecipientLogKeys:
    """One delivery's share of a recipient's logs: the state item's key and the logs' keys."""

    delivery_id: str
    state_sk: str
    partition: str  # the logs' partition key (``tables.tracking_log_partition``)
    sks: tuple[str, ...]  # in order


def _states(recipient_id: str, delivery_id: str | None) -> Iterator[RecipientStateModel]:
    partition, sk = stored_recipient_key(delivery_id or "", recipient_id)
    stored = RecipientStateModel.query(
        partition,
        range_key_condition=RecipientStateModel.sk == sk if delivery_id else None,
        attributes_to_get=["delivery_id", "sk", "recipient_id", "logs", "logs_overflow"],
    )
    return (state.as_read() for state in stored)


def _overflowed(partition: str, recipient_id: str) -> tuple[str, ...]:
    """The sort keys of a recipient's logs in a partition, when their state stopped listing them."""
    found = TrackingLogModel.query(
        partition,
        filter_condition=TrackingLogModel.recipient_id == recipient_id,
        attributes_to_get=["partition", "sk"],
    )
    return tuple(sorted(str(log.sk) for log in found))


def log_keys(recipient_id: str, delivery_id: str | None = None) -> list[RecipientLogKeys]:
    """Every delivery's share of the recipient's logs (``delivery_id``: that delivery's only)."""
    shares = []
    for state in _states(recipient_id, delivery_id):
        delivery = str(state.delivery_id)
        partition = tracking_log_partition(delivery, recipient_id)
        if state.logs_overflow:
            sks = _overflowed(partition, recipient_id)
        else:
            sks = tuple(state.logs.split(LOG_KEY_SEPARATOR)) if state.logs else ()
        shares.append(RecipientLogKeys(delivery, str(state.sk), partition, sks))
    return sorted(shares, key=lambda share: share.delivery_id)


def load(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TrackingLogModel]:
    """The tracking logs at these (partition, sort key) keys that still exist (BatchGetItem)."""
    return {(str(log.partition), str(log.sk)): log for log in TrackingLogModel.batch_get(list(keys))}
