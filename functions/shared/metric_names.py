"""Every custom metric msgtrack emits, without Powertools: the redirect function imports this alone."""

from __future__ import annotations


class MetricNames:
    """The CDK alarms and dashboard use the same names."""

    CLICKS = "Clicks"
    OPENS = "Opens"
    WEB_EVENTS = "WebEvents"  # page views and transactions the web-tracking tag recorded
    ONE_CLICK_OPT_OUTS = "OneClickOptOuts"  # RFC 8058 one-click unsubscribes recorded (POST /u/{token})
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
    # Writes DynamoDB refused for what they held (too large, an invalid value), kept in quarantine
    WRITES_QUARANTINED = "WritesQuarantined"
    EVENTS_PUBLISHED = "EventsPublished"  # raw events put on the msgtrack bus (events out)
    WEBHOOK_DELIVERIES_QUEUED = "WebhookDeliveriesQueued"
    WEBHOOK_DELIVERIES = "WebhookDeliveries"  # delivered (2xx)
    WEBHOOK_DELIVERY_FAILURES = "WebhookDeliveryFailures"  # attempts that failed, retried later
    WEBHOOK_DEAD_LETTERS = "WebhookDeadLetters"  # given up after 24 hours of failures
