"""Every stored tracking log of a delivery, read from each of its chains (moto or the local stack), its
logs stored before chains (one item each, ``tables.legacy_tracking_log_partition``), and the
tracking-logs table of before the scale-out, as an upgrade retains it."""

from __future__ import annotations

from typing import Any

from functions.shared import log_chains
from functions.shared.log_chain_store import covering
from functions.shared.models import TrackingLogModel
from functions.shared.tables import tracking_log_partitions

EVERY_KEY = (" ", "\U0010ffff")  # no sort key (a time first) precedes the first or follows the second


def chain_logs(chain: str) -> list[TrackingLogModel]:
    """The logs of one chain in sort-key order, each from the item owning it."""
    items, _ = covering(chain, *EVERY_KEY)
    return list(log_chains.owned(items, None))


def delivery_logs(delivery_id: str) -> list[TrackingLogModel]:
    """The delivery's tracking logs in time order (sort key), whichever chain holds each."""
    found = [log for chain in log_chains.chains(delivery_id) for log in chain_logs(chain)]
    return sorted(found, key=lambda log: str(log.sk))


def legacy_delivery_logs(delivery_id: str) -> list[TrackingLogModel]:
    """The delivery's logs stored one per item, as before chains (the storage migration copies so)."""
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
