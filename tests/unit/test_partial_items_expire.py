"""A worker's partial items expire (the workflow table's TTL) like the pending batch's chunk items: the
merge's slices delete them, but those a run leaves behind (an older version's, across a deploy mid-run)
must not stay for good."""

from __future__ import annotations

import time
from typing import Any

from functions.consolidate.store import DynamoWorkflowStore
from functions.shared.models import STATS_SK, DeliveryStatsModel
from functions.shared.tables import WORKFLOW

WEEK = 7 * 86_400


class RecordingDynamoDB:
    """A DynamoDB client that takes every BatchWriteItem request whole and keeps its writes."""

    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        for writes in RequestItems.values():
            self.puts += [write["PutRequest"]["Item"] for write in writes]
        return {"UnprocessedItems": {}}


def test_given_a_workers_partial_items_when_put_then_each_expires_a_week_after_it_is_written() -> None:
    # Given a worker's partial items of 60 deliveries (several requests)
    client = RecordingDynamoDB()
    items = [DeliveryStatsModel(delivery_id=f"d{n:03d}", sk=STATS_SK, opens=n) for n in range(60)]
    # When the store puts them
    written_at = time.time()
    DynamoWorkflowStore(client).put_partials("run-1", 3, items)
    # Then every partial item written carries the workflow table's TTL attribute, a week ahead
    assert WORKFLOW.ttl_attribute == "expires_at"
    assert len(client.puts) == 60
    assert {item["pk"]["S"].rsplit("#", 1)[0] for item in client.puts} == {"partial#run-1#3"}
    for item in client.puts:
        assert abs(int(item["expires_at"]["N"]) - (written_at + WEEK)) < 60
