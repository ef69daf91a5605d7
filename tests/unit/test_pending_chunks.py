"""A pending batch stored over several chunk items: saved before the pointer, replayed exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from functions.consolidate.store import PendingBatch, PendingChunks
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared.models import DeliveryStatsModel
from tests.fakes_workflow import Crash, FakeWorkflowStore
from tests.unit.test_workflow import RUN_AT, Clock, campaign, crowd, lost_and_doubled, seeded_store

CHUNK_BYTES = 1_000  # scaled down from 300 KB so that a small run's pending batch takes several chunks


def crowded(chunk_bytes: int = CHUNK_BYTES) -> FakeWorkflowStore:
    store = seeded_store()
    store.chunk_bytes = chunk_bytes
    campaign(store)
    crowd(store, 30)
    return store


def run(store: FakeWorkflowStore, clock: Clock, workers: int, run_id: str) -> Any:
    return TrackingWorkflow(store, WorkflowConfig(batch_size=20, workers=workers), clock=clock).run(
        run_id, "schedule"
    )


WHILE_PENDING = "put_item while a pending batch is pointed at"


def fault_at(store: FakeWorkflowStore, operation: str, nth: int) -> Callable[[str, int], bool]:
    """A crash at the nth call of ``operation``; for ``WHILE_PENDING``, at the nth put made while the
    state points at a pending batch (between the pointer update and the completion)."""
    puts = {"while pending": 0}

    def fault(op: str, count: int) -> bool:
        if operation != WHILE_PENDING:
            return op == operation and count == nth
        if op != "put_item" or store.pending is None:
            return False
        puts["while pending"] += 1
        return puts["while pending"] == nth

    return fault


def chunks_by_batch(store: FakeWorkflowStore) -> Counter[str]:
    return Counter(key.rsplit("#", 1)[0] for key in store.chunks)


def test_a_pending_batch_is_split_into_chunks_and_read_back_whole() -> None:
    # Given a pending batch encoded past one chunk
    items = [DeliveryStatsModel(delivery_id=f"d{n}", sk="stats", opens=n) for n in range(200)]
    pending = PendingBatch(3, {"03": "2026-11-23T09:00:00.000Z#e1"}, 200, list(items))
    # When it is cut into chunks of 500 bytes
    pointer, chunks = PendingChunks.of("run-1", "worker0", pending, 500)
    # Then every chunk is at most that, the pointer names them all, and they make the batch again
    assert len(chunks) == pointer.count > 2 and max(map(len, chunks)) <= 500
    assert len(set(pointer.chunk_keys())) == pointer.count
    again = pointer.batch(chunks)
    assert (again.seq, again.checkpoints, again.events) == (3, pending.checkpoints, 200)
    assert [item.serialize() for item in again.items] == [item.serialize() for item in items]


def test_chunks_of_two_batches_of_the_same_seq_never_mix() -> None:
    # Given two different batches of one step and seq (a retried worker that read more the second time)
    first = PendingBatch(3, {"03": "a"}, 1, [DeliveryStatsModel(delivery_id="d1", sk="stats", opens=1)] * 40)
    second = PendingBatch(3, {"03": "b"}, 2, [DeliveryStatsModel(delivery_id="d1", sk="stats", opens=2)] * 40)
    one, one_chunks = PendingChunks.of("run-1", "worker0", first, 100)
    two, two_chunks = PendingChunks.of("run-1", "worker0", second, 100)
    # Then they are stored under different keys
    assert not set(one.chunk_keys()) & set(two.chunk_keys())
    # And chunks that are not the ones a pointer names are refused, not read as a batch
    with pytest.raises(RuntimeError, match="missing or altered"):
        one.batch(two_chunks[: one.count])
    with pytest.raises(RuntimeError, match="missing or altered"):
        one.batch(one_chunks[:-1])


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize(
    ("operation", "where"),
    [
        ("put_pending_chunk", "between a pending batch's chunk writes, before the pointer to them"),
        ("save_worker_pending", "at the update that points the worker's slot at the chunks"),
        (WHILE_PENDING, "while putting a pointed-at batch's items, before its completion"),
        ("complete_worker_pending", "after the pointer and the puts, at the completion"),
    ],
)
def test_a_pending_batch_of_several_chunks_is_counted_exactly_once_whatever_the_crash(
    workers: int, operation: str, where: str, reliability: Any
) -> None:
    clean = crowded(chunk_bytes=10**9)
    run(clean, Clock(RUN_AT), workers, "clean")
    expected = clean.snapshot()
    chunked = crowded()
    run(chunked, Clock(RUN_AT), workers, "chunked")
    assert chunked.snapshot() == expected
    assert max(chunks_by_batch(chunked).values()) > 1, "the batches fit in one chunk: nothing tested"
    crashes, replayed = 0, 0
    for nth in range(1, 200):
        # Given a run whose pending batches take several chunks, dying at the nth call of an operation
        store = crowded()
        clock = Clock(RUN_AT)
        store.fault = fault_at(store, operation, nth)
        try:
            run(store, clock, workers, "crashing")
        except Crash:
            crashes += 1
        else:
            break  # fewer calls than nth: every call has been tried
        if store.pending is not None:
            replayed += 1
            assert store.pending.count > 1
        # When a new process runs again once the dead run's lock has expired
        store.restart()
        clock.now += timedelta(hours=1)
        rerun = run(store, clock, workers, "rerun")
        # Then the totals are exactly those of one clean run, and nothing is pending
        lost, doubled = lost_and_doubled(expected, store.snapshot())
        assert (lost, doubled) == (0, 0), f"crash at {operation} call {nth}"
        assert rerun.status == "succeeded"
        assert store.snapshot() == expected, f"crash at {operation} call {nth}"
        assert store.pending is None
    assert crashes > 0
    if operation in (WHILE_PENDING, "complete_worker_pending"):
        assert replayed > 0  # some crashes left a pointed-at batch of several chunks to replay
    reliability.record(
        "Faults",
        f"tracking workflow ({workers} worker{'s' if workers > 1 else ''}) killed {where} "
        "(a pending batch of several chunk items; every call in turn), then run again",
        crashes,
        "chunks without a pointer were never read (the events were read again); a pointed-at batch "
        "was read whole from its chunks and replayed once",
        0,
        0,
    )


def test_chunks_written_without_a_pointer_are_left_unread_and_cost_no_delete() -> None:
    # Given a run that died after writing some chunks of its pending batch, before the pointer
    store = crowded()
    clock = Clock(RUN_AT)
    store.fault = lambda op, count: op == "put_pending_chunk" and count == 2
    with pytest.raises(Crash):
        run(store, clock, 1, "crashing")
    left = dict(store.chunks)
    assert left and store.pending is None
    # When the next run goes
    store.restart()
    clock.now += timedelta(hours=1)
    run(store, clock, 1, "rerun")
    # Then the chunks left are still there, untouched (they expire on their own), and nothing is pending
    assert all(store.chunks[key] == chunk for key, chunk in left.items())
    assert store.pending is None
    assert store.calls.get("delete_item", 0) == 0


@pytest.mark.parametrize("workers", [1, 4])
def test_a_replay_that_dies_while_reading_the_chunks_is_replayed_again_once(workers: int) -> None:
    clean = crowded(chunk_bytes=10**9)
    run(clean, Clock(RUN_AT), workers, "clean")
    # Given a run that died at its first completion, leaving a pending batch of several chunks
    store = crowded()
    clock = Clock(RUN_AT)
    store.fault = lambda op, count: op == "complete_worker_pending" and count == 1
    with pytest.raises(Crash):
        run(store, clock, workers, "crashing")
    assert store.pending is not None and store.pending.count > 1
    # And a next run that dies while reading those chunks
    store.restart()
    clock.now += timedelta(hours=1)
    store.fault = lambda op, count: op == "load_pending_chunks" and count == 1
    with pytest.raises(Crash):
        run(store, clock, workers, "dies-replaying")
    # When a third run goes
    store.restart()
    clock.now += timedelta(hours=1)
    rerun = run(store, clock, workers, "rerun")
    # Then the batch was replayed once: the totals of one clean run
    assert rerun.status == "succeeded"
    assert store.snapshot() == clean.snapshot()
    assert store.pending is None
