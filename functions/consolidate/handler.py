"""The consolidation function: runs the tracking workflow on its schedule or on demand."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.consolidate.store import DynamoWorkflowStore
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared import ids, timeutil
from functions.shared.observability import MetricNames, logger, metrics
from functions.shared.settings import settings


def _workflow() -> TrackingWorkflow:
    config = settings()
    return TrackingWorkflow(
        DynamoWorkflowStore(),
        WorkflowConfig(
            log_ttl_days=config.tracking_log_ttl_days,
            late_event_grace_seconds=config.late_event_grace_seconds,
            lock_seconds=config.run_lock_seconds,
        ),
    )


def _run_request(event: dict[str, Any]) -> tuple[str, str]:
    """(run id, trigger): an API request names its run; a scheduled event gets a new id."""
    run_id = event.get("run_id") if isinstance(event, dict) else None
    if isinstance(run_id, str) and 0 < len(run_id) <= 64:
        return run_id, str(event.get("trigger") or "api")
    return ids.run_id(timeutil.now()), "schedule"


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run_id, trigger = _run_request(event)
    logger.append_keys(run_id=run_id, trigger=trigger)
    started = timeutil.now()
    try:
        run = _workflow().run(run_id, trigger, remaining_ms=context.get_remaining_time_in_millis)
    except Exception:
        metrics.add_metric(name=MetricNames.WORKFLOW_RUNS_FAILED, unit=MetricUnit.Count, value=1)
        raise
    duration = (timeutil.now() - started).total_seconds()
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
    return {"run_id": run_id, "status": run.status, "events_processed": int(run.events_processed)}
