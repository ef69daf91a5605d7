"""The consolidation function: the tracking workflow's steps, for the Step Functions state machine,
or a whole run in one invocation (the local scheduler, an event without ``step``).

The steps (README "Scale-out"):

- ``{"step": "plan", "run_id"?, "trigger"?}`` → ``{"run_id", "trigger", "skip", "groups": [{"worker",
  "shards"}]}``: takes the lock and splits the shards into MSGTRACK_WORKFLOW_WORKERS groups (``skip``
  with no groups when another run holds the lock).
- ``{"step": "work", "run_id", "worker", "shards", "errors"?, "next_shard"?}`` →
  ``{"worker", "shards", "events_processed", "status", "error"?, "errors"?, "quarantined"?, "more",
  "next_shard"?}``: consolidates one group; raises on a fault, for the state machine to retry (a retried
  worker goes on from its checkpoints and counts nothing twice). ``more``: stopped at the invocation's
  limit before the run's deadline, to be invoked again with the ``errors`` and ``next_shard`` (where its
  rounds go on) it returned (its events and its count of quarantined items add up in its slot of the
  store: ``quarantined`` answers the run's so far). A ``quarantined`` in the event, as an older state
  machine passed it on, is ignored: an execution in flight across a deploy goes on.
- ``{"step": "close", "run_id"}`` → ``{"run_id", "slices": [{"slice"}]}``: closes the run for its
  workers and applies the pending batches they left; the slices of the merge (none with one worker).
- ``{"step": "merge_slice", "run_id", "slice"}`` → ``{"run_id", "slice"}``: merges and puts one slice
  of the workers' partial items (persons, URL rows, hours, click streams), once, however often retried.
- ``{"step": "finish", "run_id", "workers": [work results], "error"?: {"Error", "Cause"}}`` →
  ``{"run_id", "status", "events_processed"}``: merges the statistics (and any slice that did not
  run), records the run, releases the lock.
- ``{"step": "migrate", "old_logs_table"?}`` → ``{"done", "phase", "moved", "already_there", "conflicts",
  "conflict_keys", "logs_copied", "logs_from"}`` or ``{"done": false, "refused"}``: the one-off upgrade
  of the stored states (and, given the retained old tracking-logs table, its logs) to today's keys
  (``migrate.py``, README "Upgrading"); ``done: false`` without ``refused``: invoke it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.consolidate.migrate import DynamoMigrationStore, MigrationRefused, migrate
from functions.consolidate.store import PARTIAL_SPREAD, DynamoWorkflowStore
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig, WorkResult
from functions.shared import ids, timeutil
from functions.shared.models import RunModel
from functions.shared.observability import MetricNames, logger, metrics
from functions.shared.settings import settings
from functions.shared.tables import TABLE_NAME


class BadStep(ValueError):
    """The event names a step without what it needs: a fault of the caller, not retried into success."""


def _workflow() -> TrackingWorkflow:
    config = settings()
    return TrackingWorkflow(
        DynamoWorkflowStore(),
        WorkflowConfig(
            log_ttl_days=config.tracking_log_ttl_days,
            late_event_grace_seconds=config.late_event_grace_seconds,
            lock_seconds=config.run_lock_seconds,
            run_budget_seconds=config.run_budget_seconds,
            workers=config.workflow_workers,
            raw_event_shards=config.raw_event_shards,
        ),
    )


def _run_request(event: dict[str, Any]) -> tuple[str, str]:
    """(run id, trigger): an API request names its run; a scheduled event gets a new id."""
    run_id = event.get("run_id") if isinstance(event, dict) else None
    if isinstance(run_id, str) and 0 < len(run_id) <= 64:
        return run_id, str(event.get("trigger") or "api")
    return ids.run_id(timeutil.now()), "schedule"


def _named_run(event: dict[str, Any]) -> str:
    run_id = event.get("run_id")
    if not isinstance(run_id, str) or not 0 < len(run_id) <= 64:
        raise BadStep(f"step {event.get('step')!r} needs a run_id")
    return run_id


def _plan(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run_id, trigger = _run_request(event)
    logger.append_keys(run_id=run_id, trigger=trigger)
    plan = _workflow().plan(run_id, trigger, remaining_ms=context.get_remaining_time_in_millis)
    if plan.skip:
        metrics.add_metric(name=MetricNames.WORKFLOW_RUNS_SKIPPED, unit=MetricUnit.Count, value=1)
    return plan.as_dict()


def _work(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run_id = _named_run(event)
    worker, shards = event.get("worker"), event.get("shards")
    if (
        not isinstance(worker, int)
        or not isinstance(shards, list)
        or not all(isinstance(s, str) for s in shards)
    ):
        raise BadStep("step 'work' needs a worker number and its list of shards")
    notes = event.get("errors") or []
    if not isinstance(notes, list):
        raise BadStep("step 'work' carries its earlier invocations' errors as a list")
    next_shard = event.get("next_shard")
    if next_shard is not None and next_shard not in shards:
        raise BadStep("step 'work' takes next_shard as one of its shards")
    earlier = WorkResult(
        worker,
        shards,
        0,
        "succeeded",
        errors=[str(n) for n in notes],
        next_shard=next_shard,
    )
    logger.append_keys(run_id=run_id, worker=worker)
    result = _workflow().work(
        run_id, worker, shards, remaining_ms=context.get_remaining_time_in_millis, earlier=earlier
    )
    logger.info("tracking workflow worker finished", extra=result.as_dict())
    return result.as_dict()


def _close(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    run_id = _named_run(event)
    logger.append_keys(run_id=run_id)
    return {"run_id": run_id, "slices": [{"slice": spread} for spread in _workflow().close(run_id)]}


def _merge_slice(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    run_id = _named_run(event)
    spread = event.get("slice")
    if not isinstance(spread, int) or isinstance(spread, bool) or not 0 <= spread < PARTIAL_SPREAD:
        raise BadStep(f"step 'merge_slice' needs a slice from 0 to {PARTIAL_SPREAD - 1}")
    logger.append_keys(run_id=run_id, slice=spread)
    _workflow().merge_slice(run_id, spread)
    return {"run_id": run_id, "slice": spread}


def _finish(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    run_id = _named_run(event)
    logger.append_keys(run_id=run_id)
    workers = [w for w in event.get("workers") or [] if isinstance(w, dict)]
    error = event.get("error")
    described = None
    if isinstance(error, dict):
        described = f"{error.get('Error') or 'Error'}: {error.get('Cause') or ''}".strip()
    elif error:
        described = str(error)
    started = timeutil.now()
    finished = _workflow().finish_step(run_id, workers, described)
    run = finished.run
    if finished.recorded_now:  # a retried Finish that finds the run recorded emits its metrics no more
        _record(run, (timeutil.now() - started).total_seconds())
    return {"run_id": run_id, "status": run.status, "events_processed": int(run.events_processed)}


def _whole_run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run_id, trigger = _run_request(event)
    logger.append_keys(run_id=run_id, trigger=trigger)
    started = timeutil.now()
    try:
        run = _workflow().run(
            run_id, trigger, remaining_ms=context.get_remaining_time_in_millis, parallel=True
        )
    except Exception:
        metrics.add_metric(name=MetricNames.WORKFLOW_RUNS_FAILED, unit=MetricUnit.Count, value=1)
        raise
    _record(run, (timeutil.now() - started).total_seconds())
    return {"run_id": run_id, "status": run.status, "events_processed": int(run.events_processed)}


def _migrate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    table = event.get("old_logs_table")
    if table is not None and (not isinstance(table, str) or not TABLE_NAME.fullmatch(table)):
        raise BadStep("step 'migrate' takes old_logs_table as a DynamoDB table name")
    try:
        answer = migrate(
            DynamoMigrationStore(),
            table,
            remaining_ms=context.get_remaining_time_in_millis,
            invocation=context.aws_request_id,
        )
    except MigrationRefused as refused:
        return {"done": False, "refused": str(refused)}
    logger.info("storage migration invoked", extra=answer)
    return answer


def _record(run: RunModel, duration: float) -> None:
    metrics.add_metric(
        name=MetricNames.EVENTS_PROCESSED, unit=MetricUnit.Count, value=int(run.events_processed)
    )
    metrics.add_metric(name=MetricNames.WORKFLOW_RUN_DURATION, unit=MetricUnit.Seconds, value=duration)
    by_status = {
        "succeeded": MetricNames.WORKFLOW_RUNS_SUCCEEDED,
        "skipped": MetricNames.WORKFLOW_RUNS_SKIPPED,
        "failed": MetricNames.WORKFLOW_RUNS_FAILED,
    }
    metrics.add_metric(name=by_status[str(run.status)], unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name=MetricNames.WRITES_QUARANTINED, unit=MetricUnit.Count, value=int(run.quarantined or 0)
    )
    logger.info(
        "tracking workflow run finished",
        extra={"status": run.status, "events_processed": int(run.events_processed), "duration_s": duration},
    )


STEPS: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]] = {
    "plan": _plan,
    "work": _work,
    "close": _close,
    "merge_slice": _merge_slice,
    "finish": _finish,
    "migrate": _migrate,
}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = event.get("step") if isinstance(event, dict) else None
    if step is None:
        return _whole_run(event if isinstance(event, dict) else {}, context)
    if step not in STEPS:
        raise BadStep(f"unknown step {step!r}; expected one of {sorted(STEPS)}")
    return STEPS[step](event, context)
