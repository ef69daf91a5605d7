"""Every stored tracking log of a delivery, read from each of its partitions (moto or the local stack),
and the tracking-logs table of before the scale-out, as an upgrade retains it."""

from __future__ import annotations

from typing import Any

from functions.shared.models import TrackingLogModel
from functions.shared.tables import tracking_log_partitions


def delivery_logs(delivery_id: str) -> list[TrackingLogModel]:
    """The delivery's tracking logs in time order (sort key), whichever partition holds each."""
    found = [
        log for partition in tracking_log_partitions(delivery_id) for log in TrackingLogModel.query(partition)
    ]
    return sorted(found, key=lambda log: str(log.sk))


def create_old_logs_table(client: Any, name: str) -> None:
    """The tracking-logs table keyed by ``delivery_id``, as CloudFormation retained it on the upgrade."""
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "delivery_id", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "delivery_id", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
