"""The run record's ``quarantined`` count on moto's DynamoDB (README "Quarantined writes"): the
durable counts it is set from (each worker's slot, the merge's outcome saved with the phase
``merged``, the planner's in the state item) survive a Finish that dies and a run finished by the
next run's Plan, through ``DynamoWorkflowStore``'s own update expressions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import boto3
import pytest
from pynamodb.models import Model

from functions.consolidate.store import DynamoWorkflowStore, Refused
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared import fallback, models, tables, timeutil
from functions.shared.models import RunModel
from local.aws import FALLBACK_QUEUE_NAME
from tests.fakes_workflow import Crash
from tests.integration.test_workflow_workers import _copy_into_dynamodb, _eight_shards  # noqa: F401
from tests.unit.test_workflow import RUN_AT, T0, Clock
from tests.unit.test_workflow_poison import TRUNCATED_BODY, poison_item
from tests.unit.test_workflow_quarantine_counts import (
    DRAINED_POISON,
    LATE_POISON,
    hostile_store,
    refusing,
)

pytestmark = pytest.mark.usefixtures("_eight_shards")  # imported above: 8 raw-event shards


class RefusingStore(DynamoWorkflowStore):
    """DynamoDB as it answers the unit scenario's refused writes (link 1's URL row grown too large,
    r4's full click logs), and a process that dies at the first call of ``dies_at``."""

    def __init__(self, dies_at: str | None = None) -> None:
        super().__init__()
        self.dies_at = dies_at

    def put_items(self, items: Iterable[Model]) -> list[Refused]:
        items = list(items)
        reasons = {id(item): refusing(item.serialize()) for item in items}
        refused = [Refused(item, str(reasons[id(item)])) for item in items if reasons[id(item)]]
        return refused + super().put_items([item for item in items if reasons[id(item)] is None])

    def save_run(self, run: RunModel) -> None:
        self._dies("save_run")
        super().save_run(run)

    def release_lock(self, owner: str) -> None:
        self._dies("release_lock")
        super().release_lock(owner)

    def _dies(self, operation: str) -> None:
        if self.dies_at == operation:
            self.dies_at = None
            raise Crash(f"the process dies at {operation}")


def _seed() -> None:
    seeded = hostile_store(recipients=12)
    _copy_into_dynamodb(seeded)
    for items in seeded.raw_items.values():  # the poison raw event
        for item in items:
            boto3.client("dynamodb").put_item(TableName=tables.RAW_EVENTS.table_name, Item=item)


def _quarantined() -> int:
    answer = boto3.client("dynamodb").query(
        TableName=tables.WORKFLOW.table_name,
        KeyConditionExpression="pk = :q",
        ExpressionAttributeValues={":q": {"S": models.QUARANTINE_PK}},
        Select="COUNT",
    )
    return int(answer["Count"])


def _steps(flow: TrackingWorkflow, run_id: str) -> list[dict[str, Any]]:
    plan = flow.plan(run_id, "schedule")
    results = [flow.work(run_id, n, group).as_dict() for n, group in enumerate(plan.groups)]
    for spread in flow.close(run_id):
        flow.merge_slice(run_id, spread)
    return results


@pytest.mark.parametrize("workers", [1, 4])
def test_given_finish_dying_after_the_merge_when_the_next_plan_finishes_the_run_then_its_record_counts_each_item_once_on_dynamodb(
    workers: int, aws_tables: None, reliability: Any
) -> None:
    # Given a run on DynamoDB whose workers and slices quarantined a log, a poison event and a URL
    # row, and whose Finish died after marking the merge merged, before saving the run record
    _seed()
    clock = Clock(RUN_AT)
    store = RefusingStore()
    flow = TrackingWorkflow(store, WorkflowConfig(workers=workers, batch_size=3), clock=clock)
    results = _steps(flow, "run-1")
    store.dies_at = "save_run"
    with pytest.raises(Crash):
        flow.finish("run-1", results)
    kept = _quarantined()
    assert kept == 3
    # When the next run's Plan finishes it, once its lock has expired
    clock.now += timedelta(hours=1)
    rerun = TrackingWorkflow(RefusingStore(), WorkflowConfig(workers=workers), clock=clock).run(
        "run-2", "schedule"
    )
    # Then the stored record of the first run counts each item once, the second run's none
    stored = RunModel.get(models.RUNS_PK, "run-1", consistent_read=True)
    assert stored.status == "failed" and int(stored.quarantined) == kept == _quarantined()
    assert rerun.status == "succeeded" and int(rerun.quarantined) == 0
    reliability.record(
        "Faults",
        f"on DynamoDB, Finish of a run of {workers} worker(s) that quarantined items dying before the "
        "run record; finished by the next run's Plan",
        1,
        "the stored run record counts each quarantined item once",
        0,
        0,
    )


def test_given_finish_retried_before_and_after_its_lock_release_then_the_stored_record_stays_exact_on_dynamodb(
    aws_tables: None, reliability: Any
) -> None:
    # Given a run of four workers on DynamoDB that quarantined items, whose Finish dies at the lock
    # release (after saving the record)
    _seed()
    store = RefusingStore()
    flow = TrackingWorkflow(store, WorkflowConfig(workers=4, batch_size=3), clock=Clock(RUN_AT))
    results = _steps(flow, "run-1")
    store.dies_at = "release_lock"
    with pytest.raises(Crash):
        flow.finish("run-1", results, "States.TaskFailed: a worker failed")
    # When Step Functions retries Finish, and once more after the first retry released the lock
    first = flow.finish("run-1", results, "States.TaskFailed: a worker failed")
    again = flow.finish("run-1", results, "States.TaskFailed: a worker failed")
    # Then the stored record keeps its failure and counts each item once
    stored = RunModel.get(models.RUNS_PK, "run-1", consistent_read=True)
    for run in (first, again, stored):
        assert run.status == "failed" and run.errors[0] == "States.TaskFailed: a worker failed"
        assert int(run.quarantined) == _quarantined() == 3
    reliability.record(
        "Faults",
        "on DynamoDB, Finish of a failed run that quarantined items retried before and after its lock release",
        2,
        "the stored run record keeps its failure and counts each quarantined item once",
        0,
        0,
    )


class DyingPlanner(RefusingStore):
    """A planner that dies once it kept what it found in the fallback queue, before deleting it."""

    def delete_fallback(self, receipts: list[str]) -> None:
        self._dies("delete_fallback")
        super().delete_fallback(receipts)


@pytest.mark.parametrize("workers", [1, 4])
def test_given_a_planner_dying_after_quarantining_the_fallback_queue_when_the_next_run_drains_it_then_the_records_count_each_item_once_on_dynamodb(
    workers: int, aws_tables: None, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    # Given a first run on DynamoDB, then a poison event in a worker's late-event window, and in the
    # fallback queue (redelivered at once) a truncated message and a poison event behind every checkpoint
    _seed()
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=FALLBACK_QUEUE_NAME, Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    monkeypatch.setenv(fallback.QUEUE_URL_ENV, url)
    clock = Clock(RUN_AT)
    config = WorkflowConfig(workers=workers, batch_size=3)
    TrackingWorkflow(RefusingStore(), config, clock=clock).run("first", "schedule")
    state = DynamoWorkflowStore().load_state()
    late = poison_item(LATE_POISON, "x0000009")
    at = timeutil.parse(state.checkpoints[late["shard"]["S"]].split("#", 1)[0]) - timedelta(seconds=1)
    late = poison_item(LATE_POISON, "x0000009", seconds=int((at - T0).total_seconds()))
    boto3.client("dynamodb").put_item(TableName=tables.RAW_EVENTS.table_name, Item=late)
    sqs.send_message(QueueUrl=url, MessageBody=TRUNCATED_BODY)
    behind = poison_item(DRAINED_POISON, "y0000001", seconds=-7_200)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(behind))
    before = _quarantined()
    # When the next run's planner dies after keeping both messages, and a run after it drains the queue
    clock.now += timedelta(hours=1)
    with pytest.raises(Crash):
        TrackingWorkflow(DyingPlanner("delete_fallback"), config, clock=clock).run("dying", "schedule")
    assert _quarantined() == before + 2
    clock.now += timedelta(hours=1)
    rerun = TrackingWorkflow(RefusingStore(), config, clock=clock).run("rerun", "schedule")
    # Then the three are kept once, the run records together count each once, and the queue is empty
    runs = [
        RunModel.get(models.RUNS_PK, run_id, consistent_read=True) for run_id in ("first", "dying", "rerun")
    ]
    assert rerun.status == "succeeded" and _quarantined() == before + 3
    assert sum(int(run.quarantined or 0) for run in runs) == _quarantined()
    assert int(rerun.quarantined) == 3
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    reliability.record(
        "Faults",
        f"on DynamoDB, a planner (run of {workers} worker(s)) dying after quarantining two fallback-queue "
        "messages, before deleting them; the next run drains the queue and a late poison event",
        1,
        "the stored run records count each quarantined item once",
        0,
        0,
    )
