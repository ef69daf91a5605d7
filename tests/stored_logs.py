"""Every stored tracking log of a delivery, read from each of its partitions (moto or the local stack)."""

from __future__ import annotations

from functions.shared.models import TrackingLogModel
from functions.shared.tables import tracking_log_partitions


def delivery_logs(delivery_id: str) -> list[TrackingLogModel]:
    """The delivery's tracking logs in time order (sort key), whichever partition holds each."""
    found = [
        log for partition in tracking_log_partitions(delivery_id) for log in TrackingLogModel.query(partition)
    ]
    return sorted(found, key=lambda log: str(log.sk))
