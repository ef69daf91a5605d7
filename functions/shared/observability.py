"""One Logger, Tracer-free Metrics and the service name for every function.

Structured JSON logs and CloudWatch embedded metrics through Powertools. The tracer is left out on
purpose: X-Ray would add import time to the redirect hot path for little insight.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "msgtrack")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "msgtrack")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


class MetricNames:
    """Every custom metric msgtrack emits; the CDK alarms and dashboard use the same names."""

    CLICKS = "Clicks"
    OPENS = "Opens"
    INVALID_TOKENS = "InvalidTokens"
    REDIRECT_FAILURES = "RedirectFailures"
    RAW_EVENT_WRITE_FAILURES = (
        "RawEventWriteFailures"  # lost: neither DynamoDB nor the fallback queue took it
    )
    RAW_EVENT_FALLBACKS = "RawEventFallbacks"  # handed to the fallback queue, consolidated later
    FALLBACK_EVENTS_DRAINED = "FallbackEventsDrained"
    EVENTS_PROCESSED = "EventsProcessed"
    WORKFLOW_RUN_DURATION = "WorkflowRunDuration"
    WORKFLOW_RUNS_SUCCEEDED = "WorkflowRunsSucceeded"
    WORKFLOW_RUNS_FAILED = "WorkflowRunsFailed"
    WORKFLOW_RUNS_SKIPPED = "WorkflowRunsSkipped"
