"""The tracking workflow with N workers on moto's DynamoDB, through the consolidation function's steps
as the state machine calls them: every item equals that of one worker (README "Scale-out")."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pynamodb.models import Model

from functions.consolidate import handler
from functions.consolidate.store import DynamoWorkflowStore, Refused
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared import models, settings, tables
from functions.shared.models import RawEventModel, RunModel
from local.aws import create_tables, serve_moto_one_request_at_a_time
from tests.apigw import FakeContext
from tests.fakes_workflow import Crash, FakeWorkflowStore
from tests.stored_logs import chain_logs
from tests.unit.test_workflow import RUN_AT, seeded_store
from tests.unit.test_workflow_slices import REFUSED, REFUSED_KEY, TARGET
from tests.unit.test_workflow_workers import first_run_events, second_run_events, story


@pytest.fixture(autouse=True)
def _eight_shards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MSGTRACK_RAW_EVENT_SHARDS", "8")
    settings.reset_caches()
    yield
    settings.reset_caches()


def _copy_into_dynamodb(seeded: FakeWorkflowStore) -> None:
    for events in seeded.raw.values():
        for event in events:
            RawEventModel.from_raw_data(event.serialize()).save()
    for urls in seeded.urls.values():
        for url in urls:
            url.save()
    for message in seeded.messages.values():
        message.save()


def _stored_logs(feed_copies: bool = True) -> list[str]:
    """Every tracking log stored, as JSON: each chain's logs from the items owning them (however its
    writes happened to pack them), and (``feed_copies``) the opt-out feed's copies as stored."""
    stored = [json.loads(item) for item in _scan(tables.TRACKING_LOGS)]
    feed = [item for item in stored if item["partition"]["S"].endswith(tables.OPT_OUT_FEED_SUFFIX)]
    chains = {item["partition"]["S"] for item in stored} - {item["partition"]["S"] for item in feed}
    logs = [log.serialize() for chain in sorted(chains) for log in chain_logs(chain)]
    return sorted(json.dumps(item, sort_keys=True) for item in [*logs, *(feed if feed_copies else [])])


def _scan(spec: tables.TableSpec) -> list[str]:
    client = boto3.client("dynamodb")
    items: list[str] = []
    for page in client.get_paginator("scan").paginate(TableName=spec.table_name):
        for item in page["Items"]:
            item.pop("updated_at", None)
            if "urls" in item:
                item["urls"] = {"SS": sorted(item["urls"]["SS"])}
            items.append(json.dumps(item, sort_keys=True, default=bytes.hex))  # binary: pending chunks
    return sorted(items)


class ShortInvocation(FakeContext):
    """An invocation with time for ``reads`` shard reads (the workflow asks before each), then less than
    the workflow's safety margin."""

    def __init__(self, reads: int) -> None:
        self._reads = reads

    def get_remaining_time_in_millis(self) -> int:
        self._reads -= 1
        return 300_000 if self._reads >= 0 else 1_000


def _step(event: dict[str, Any], context: FakeContext | None = None) -> dict[str, Any]:
    return dict(handler.lambda_handler(event, context or FakeContext()))


INVOCATIONS: dict[str, list[int]] = {}  # run -> how many times each worker was invoked


def _through_the_steps(run_id: str, reads: int | None = None) -> dict[str, Any]:
    """One execution of the state machine: plan, each worker (one after another here), close, each
    slice of the merge (slice 0 twice, as a retry would), finish. With ``reads``, each worker
    invocation has time for that many shard reads beyond a round of its shards, and a worker with
    more to do is invoked again (the Workers iteration's "Work on")."""
    plan = _step({"step": "plan", "run_id": run_id, "trigger": "schedule"})
    assert plan["skip"] is False
    results = []
    for group in plan["groups"]:
        event = {"step": "work", "run_id": run_id, **group}
        invocations = 0
        while True:
            invocations += 1
            context = ShortInvocation(len(group["shards"]) + reads) if reads is not None else None
            result = _step(event, context)
            if not result["more"]:
                break
            carried = {
                name: result[name] for name in ("errors", "quarantined", "next_shard") if name in result
            }
            event = {"step": "work", "run_id": run_id, **group, **carried}
        INVOCATIONS.setdefault(run_id, []).append(invocations)
        results.append(result)
    slices = _step({"step": "close", "run_id": run_id})["slices"]
    assert len(slices) == 16
    for entry in [*slices, slices[0]]:
        _step({"step": "merge_slice", "run_id": run_id, **entry})
    return _step({"step": "finish", "run_id": run_id, "workers": results})


def _story(
    monkeypatch: pytest.MonkeyPatch, workers: int, reads: int | None = None
) -> tuple[list[str], list[str], list[RunModel]]:
    """Two runs over the unit tests' events on a fresh moto: the logs, the indicators, the run records
    (``reads``: see ``_through_the_steps``)."""
    monkeypatch.setenv("MSGTRACK_WORKFLOW_WORKERS", str(workers))
    settings.reset_caches()
    if reads is not None:  # batches of 3 events: a shard takes several rounds
        config = WorkflowConfig(workers=workers, batch_size=3)
        monkeypatch.setattr(handler, "_workflow", lambda: TrackingWorkflow(DynamoWorkflowStore(), config))
    clock = {"now": RUN_AT}
    serve_moto_one_request_at_a_time()  # the workers write at once: moto loses items otherwise
    with mock_aws():
        models.refresh_table_names()
        create_tables()
        seeded = seeded_store()
        first_run_events(seeded)
        _copy_into_dynamodb(seeded)
        if workers == 1:
            TrackingWorkflow(DynamoWorkflowStore(), clock=lambda: clock["now"]).run("run-1", "schedule")
        else:
            assert _through_the_steps("run-1", reads)["status"] == "succeeded"
        later = FakeWorkflowStore()
        second_run_events(later)
        _copy_into_dynamodb(later)
        clock["now"] = RUN_AT + timedelta(hours=1)
        if workers == 1:
            TrackingWorkflow(DynamoWorkflowStore(), clock=lambda: clock["now"]).run("run-2", "schedule")
        else:
            assert _through_the_steps("run-2", reads)["status"] == "succeeded"
        runs = [RunModel.get(models.RUNS_PK, run_id) for run_id in ("run-1", "run-2")]
        partials = [i for i in _scan(tables.WORKFLOW) if '"partial#' in i or '"merge#' in i]
        assert partials == []  # the finisher leaves no partial item, merge page or slice behind
        return _stored_logs(), _scan(tables.INDICATORS), runs


def test_four_workers_through_the_steps_write_what_one_worker_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the same events, When one worker and then four (through plan / work / finish) consolidate
    logs_alone, indicators_alone, _ = _story(monkeypatch, 1)
    logs_four, indicators_four, runs = _story(monkeypatch, 4)
    # Then every tracking log and indicator item is the same
    assert logs_four == logs_alone
    assert indicators_four == indicators_alone
    # And each run record names four workers whose events add up to the run's
    for run in runs:
        workers = [worker.as_dict() if hasattr(worker, "as_dict") else worker for worker in run.workers]
        assert len(workers) == 4 and {w["status"] for w in workers} == {"succeeded"}
        assert sum(int(w["events_processed"]) for w in workers) == int(run.events_processed) > 0


def test_workers_invoked_again_and_again_through_the_steps_write_what_one_worker_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the same events, When one worker and then four whose every invocation has time for a round of
    # their shards and two more reads (each invoked again while it has more) consolidate them
    logs_alone, indicators_alone, _ = _story(monkeypatch, 1)
    INVOCATIONS.clear()
    logs_four, indicators_four, runs = _story(monkeypatch, 4, reads=2)
    # Then each worker of the first run went on over several invocations
    assert len(INVOCATIONS["run-1"]) == 4 and min(INVOCATIONS["run-1"]) > 2
    # And every tracking log and indicator item is the same, and the workers' events add up to the runs'
    assert logs_four == logs_alone and indicators_four == indicators_alone
    for run in runs:
        assert run.status == "succeeded" and not run.errors
        assert sum(int(w["events_processed"]) for w in run.workers) == int(run.events_processed) > 0


def test_a_retried_worker_and_a_late_one_on_dynamodb(aws_tables: None) -> None:
    # Given a planned run of four workers on DynamoDB
    seeded = seeded_store()
    first_run_events(seeded)
    _copy_into_dynamodb(seeded)
    flow = TrackingWorkflow(
        DynamoWorkflowStore(), WorkflowConfig(workers=4, batch_size=2), clock=lambda: RUN_AT
    )
    plan = flow.plan("run-1", "schedule")
    # When worker 1 runs twice (a retry of an attempt that had finished) and the others once
    results = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    again = flow.work("run-1", 1, plan.groups[1])
    run = flow.finish("run-1", [r.as_dict() for r in results])
    # Then nothing counts twice: the run's events are the tracking logs written
    assert again.events_processed == results[1].events_processed
    assert run.status == "succeeded" and run.events_processed == len(_stored_logs(feed_copies=False))
    # And a worker that starts after the finisher closed the run writes nothing (its run is not open)
    late = flow.work("run-1", 0, plan.groups[0])
    assert late.status == "failed" and late.events_processed == 0


def test_persons_land_on_their_deliverys_spread_keys_and_the_indicators_are_those_of_the_fake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the same two runs on moto's DynamoDB and on the in-memory store (which keeps every
    # indicator at its key in memory), with a person ("pshared") clicking in both runs
    _, indicators, _ = _story(monkeypatch, 1)
    fake, _ = story(1)
    stored = [json.loads(item) for item in indicators]
    # Then each person's state is at stored_person_key, spread over several of the delivery's keys
    persons = [item for item in stored if item["sk"]["S"].startswith(models.PERSON_STATE_PREFIX)]
    expected = {
        models.stored_person_key(delivery_id, sk.removeprefix(models.PERSON_STATE_PREFIX))
        for delivery_id, sk in fake.indicators
        if sk.startswith(models.PERSON_STATE_PREFIX)
    }
    assert {(item["delivery_id"]["S"], item["sk"]["S"]) for item in persons} == expected
    assert len({item["delivery_id"]["S"] for item in persons}) > 1
    # And no person is under the delivery's own key, read back by the second run (else "pshared"
    # would count twice), so the statistics equal the in-memory store's
    assert not any(item["delivery_id"]["S"] == "d1" and item["sk"]["S"].startswith("p#") for item in stored)
    moto_stats = next(i for i in stored if i["delivery_id"]["S"] == "d1" and i["sk"]["S"] == models.STATS_SK)
    fake_stats = fake.indicators[("d1", models.STATS_SK)].serialize()
    fake_stats.pop("updated_at", None)
    assert json.dumps(moto_stats, sort_keys=True) == json.dumps(fake_stats, sort_keys=True)


class RefusingStore(DynamoWorkflowStore):
    """DynamoDB as it answers a merged item grown too large (``REFUSED_KEY``), and a process that dies
    once right after a slice's put, before marking it put."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_before_marking = True

    def put_items(self, items: Iterable[Model]) -> list[Refused]:
        items = list(items)
        refused = [item for item in items if _state_key(item) == REFUSED_KEY]
        kept = [item for item in items if _state_key(item) != REFUSED_KEY]
        return [Refused(item, REFUSED) for item in refused] + super().put_items(kept)

    def slice_put(self, run_id: str, spread: int, outcome: bytes) -> None:
        if self.crash_before_marking:
            self.crash_before_marking = False
            raise Crash("the slice's process dies after its put")
        super().slice_put(run_id, spread, outcome)


def _state_key(item: Model) -> tuple[str, str]:
    return (str(getattr(item, "delivery_id", "")), str(getattr(item, "sk", "")))


def test_a_slice_whose_put_is_refused_and_retried_counts_the_item_once_on_dynamodb(aws_tables: None) -> None:
    # Given a run of four workers on DynamoDB whose merged URL row of link 1 DynamoDB refuses
    seeded = seeded_store()
    first_run_events(seeded)
    _copy_into_dynamodb(seeded)
    store = RefusingStore()
    flow = TrackingWorkflow(store, WorkflowConfig(workers=4, batch_size=2), clock=lambda: RUN_AT)
    plan = flow.plan("run-1", "schedule")
    results = [flow.work("run-1", n, group) for n, group in enumerate(plan.groups)]
    # When the slice that merges it dies after its put and is retried, and every slice is retried once more
    slices = flow.close("run-1")
    with pytest.raises(Crash):
        flow.merge_slice("run-1", TARGET)
    for spread in [*slices, *slices]:
        flow.merge_slice("run-1", spread)
    run = flow.finish("run-1", [r.as_dict() for r in results])
    # Then the row is quarantined once and the run record, as stored, counts it once
    quarantined = boto3.client("dynamodb").scan(
        TableName=tables.WORKFLOW.table_name,
        FilterExpression="begins_with(sk, :q)",
        ExpressionAttributeValues={":q": {"S": "indicators#"}},
    )["Items"]
    assert [item["sk"]["S"] for item in quarantined] == [f"indicators#d1#{REFUSED_KEY[1]}#merged#run-1"]
    stored = RunModel.get(models.RUNS_PK, "run-1")
    assert run.status == stored.status == "succeeded" and stored.quarantined == run.quarantined == 1


class ConflictingDynamoDB:
    """DynamoDB as it answers when workers write the state item at once: every other transaction is
    cancelled for a conflict (a worker's flush in flight on the state item), and every other update
    of the state item fails with ``TransactionConflictException``; nothing of either is written."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self.cancelled = self.rejected = 0
        self._transactions = self._updates = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **arguments: Any) -> Any:
        self._transactions += 1
        if self._transactions % 2:
            self.cancelled += 1
            reasons = [{"Code": "None"}] * (len(arguments["TransactItems"]) - 1)
            raise self.exceptions.TransactionCanceledException(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
                    "CancellationReasons": [*reasons, {"Code": "TransactionConflict"}],
                },
                "TransactWriteItems",
            )
        return self._client.transact_write_items(**arguments)

    def update_item(self, **arguments: Any) -> Any:
        if arguments["Key"] == {"pk": {"S": models.STATE_PK}, "sk": {"S": models.STATE_SK}}:
            self._updates += 1
            if self._updates % 2:
                self.rejected += 1
                raise self.exceptions.TransactionConflictException(
                    {"Error": {"Code": "TransactionConflictException", "Message": "ongoing transaction"}},
                    "UpdateItem",
                )
        return self._client.update_item(**arguments)


def test_four_workers_whose_writes_dynamodb_cancels_for_conflicts_write_what_one_worker_writes(
    monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    # Given the same events, consolidated by one worker on a DynamoDB without conflicts
    logs_alone, indicators_alone, _ = _story(monkeypatch, 1)
    # When four workers consolidate them on a DynamoDB that cancels every other transaction and
    # rejects every other update of the state item for a conflict
    clients: list[ConflictingDynamoDB] = []
    plain = DynamoWorkflowStore.__init__

    def conflicting(self: DynamoWorkflowStore, client: Any = None, *arguments: Any, **keywords: Any) -> None:
        clients.append(ConflictingDynamoDB(client or boto3.client("dynamodb")))
        plain(self, clients[-1], *arguments, **keywords)

    monkeypatch.setattr(DynamoWorkflowStore, "__init__", conflicting)
    logs_four, indicators_four, runs = _story(monkeypatch, 4)
    # Then each write went through when tried again: every log and indicator item is the same, and
    # both runs succeeded
    cancelled = sum(client.cancelled + client.rejected for client in clients)
    reliability.record(
        "Faults",
        "DynamoDB cancelling every other worker transaction and state update for a conflict (4 workers)",
        cancelled,
        "tried again with backoff; the runs succeed and write what one worker writes",
        len(set(logs_alone) - set(logs_four)) + len(set(indicators_alone) - set(indicators_four)),
        len(set(logs_four) - set(logs_alone)) + len(set(indicators_four) - set(indicators_alone)),
    )
    assert sum(client.cancelled for client in clients) > 0 and sum(client.rejected for client in clients) > 0
    assert logs_four == logs_alone
    assert indicators_four == indicators_alone
    assert [run.status for run in runs] == ["succeeded", "succeeded"]
