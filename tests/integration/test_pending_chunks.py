"""The DynamoDB store keeps a pending batch in chunk items the state points at (moto)."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from functions.consolidate import store as store_module
from functions.consolidate.store import DynamoWorkflowStore, PendingBatch
from functions.shared.models import DeliveryStatsModel, WorkflowStateModel
from functions.shared.tables import WORKFLOW
from tests.integration.test_tracking_flow import EXPECTED, delivery, run_workflow, stats, traffic

__all__ = ["delivery"]  # the fixture, shared with the tracking flow's tests

SMALL_CHUNKS = 200  # bytes: the few events of ``traffic`` make a pending batch of several chunks


def chunk_items() -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    items = client.scan(TableName=WORKFLOW.table_name)["Items"]
    return [item for item in items if item["pk"]["S"].startswith("pending#")]


def test_a_pending_batch_of_several_chunks_is_saved_read_and_completed(aws_tables: None) -> None:
    # Given a pending batch larger than one chunk, saved by the lock holder
    store = DynamoWorkflowStore(chunk_bytes=SMALL_CHUNKS)
    assert store.acquire_lock("run-1", time.time(), 60)
    items = [DeliveryStatsModel(delivery_id=f"d{n}", sk="stats", opens=n) for n in range(30)]
    pending = PendingBatch(1, {"03": "2026-11-23T09:00:00.000Z#e1"}, 30, items)
    store.save_pending("run-1", pending)
    # Then it is stored in several chunk items, each expiring about 7 days ahead, and the state item
    # holds only where they are
    chunks = chunk_items()
    assert len(chunks) > 1 and all(len(item["data"]["B"]) <= SMALL_CHUNKS for item in chunks)
    for item in chunks:
        assert abs(int(item["expires_at"]["N"]) - (time.time() + 7 * 86_400)) < 60
    state = WorkflowStateModel.get("state", "tracking")
    assert state.pending_batch is None and int(state.pending_chunks) == len(chunks)
    # And it reads back whole
    read = store.load_state().pending
    assert read is not None and [item.opens for item in read.items] == list(range(30))
    # When it is completed
    store.complete_pending("run-1", pending)
    # Then the pointer is gone and the checkpoint moved; the chunks are left to expire
    state = WorkflowStateModel.get("state", "tracking")
    assert state.pending_at is None and state.checkpoints.as_dict() == pending.checkpoints
    assert store.load_state().pending is None
    assert len(chunk_items()) == len(chunks)


def test_a_pending_batch_left_in_one_attribute_by_an_older_version_is_still_read(aws_tables: None) -> None:
    pending = PendingBatch(4, {"03": "x"}, 1, [DeliveryStatsModel(delivery_id="d1", sk="stats", opens=2)])
    WorkflowStateModel(pending_batch=pending.encode()).save()
    read = DynamoWorkflowStore().load_state().pending
    assert read is not None and (read.seq, read.items[0].opens) == (4, 2)


@pytest.mark.parametrize(
    "where",
    ["after its chunks, before the pointer", "after the pointer and the puts, before the completion"],
)
def test_a_run_killed_around_a_pending_batch_of_several_chunks_counts_it_once(
    delivery: str, monkeypatch: pytest.MonkeyPatch, where: str, reliability: Any
) -> None:
    # Given pending batches of several chunk items, and a run killed at one of the two points
    monkeypatch.setattr(store_module, "MAX_CHUNK_BYTES", SMALL_CHUNKS)
    traffic()
    save_chunks = DynamoWorkflowStore._save_chunks
    complete = DynamoWorkflowStore.complete_worker_pending

    def chunks_then_die(self: DynamoWorkflowStore, *arguments: Any) -> Any:
        save_chunks(self, *arguments)
        raise RuntimeError(f"killed {where}")

    def die(self: DynamoWorkflowStore, *arguments: Any, **keywords: Any) -> None:
        raise RuntimeError(f"killed {where}")

    if where.startswith("after its chunks"):
        monkeypatch.setattr(DynamoWorkflowStore, "_save_chunks", chunks_then_die)
    else:
        monkeypatch.setattr(DynamoWorkflowStore, "complete_worker_pending", die)
    with pytest.raises(RuntimeError):
        run_workflow("crashing")
    assert len(chunk_items()) > 1
    pointed = DynamoWorkflowStore().load_worker(0).pending
    if where.startswith("after its chunks"):
        assert pointed is None  # chunks without a pointer: no pending batch
    else:
        assert pointed is not None and WorkflowStateModel.get("state", "tracking").checkpoints.as_dict() == {}
    # When the next run goes
    monkeypatch.setattr(DynamoWorkflowStore, "_save_chunks", save_chunks)
    monkeypatch.setattr(DynamoWorkflowStore, "complete_worker_pending", complete)
    recovery = run_workflow("recovery")
    # Then every event is counted once, and nothing is pending
    counted = stats()
    lost = sum(max(0, EXPECTED[k] - counted[k]) for k in EXPECTED)
    doubled = sum(max(0, counted[k] - EXPECTED[k]) for k in EXPECTED)
    reliability.record(
        "Faults",
        f"tracking workflow killed {where} of a pending batch of several chunk items (moto)",
        1,
        "chunks without a pointer were never read, the events read again; a pointed-at batch was "
        "read from its chunks and replayed once",
        lost,
        doubled,
    )
    assert recovery["status"] == "succeeded"
    assert counted == EXPECTED
    assert DynamoWorkflowStore().load_worker(0).pending is None
