"""The msgtrack stack: composes one construct per concern; each grants only what its function needs."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from functions.shared.settings import DEFAULT_RAW_EVENT_SHARDS
from functions.shared.tables import TABLE_NAME
from infra.bundling import function_code
from infra.constants import (
    ALARM_EMAIL_CONTEXT,
    API_BURST_LIMIT,
    API_BURST_LIMIT_CONTEXT,
    API_RATE_LIMIT,
    API_RATE_LIMIT_CONTEXT,
    API_RESERVED_CONCURRENCY,
    API_RESERVED_CONCURRENCY_CONTEXT,
    CERTIFICATE_ARN_CONTEXT,
    DEFAULT_SCHEDULE,
    DEFAULT_WORKFLOW_WORKERS,
    MAX_RAW_EVENT_SHARDS,
    MAX_WORKFLOW_WORKERS,
    MIGRATION_CONTEXT,
    MIGRATION_OLD_LOGS_TABLE_CONTEXT,
    RAW_EVENT_SHARDS_CONTEXT,
    REDIRECT_RESERVED_CONCURRENCY,
    REDIRECT_RESERVED_CONCURRENCY_CONTEXT,
    SCHEDULE_CONTEXT,
    TRACKING_BURST_LIMIT,
    TRACKING_BURST_LIMIT_CONTEXT,
    TRACKING_DOMAIN_CONTEXT,
    TRACKING_RATE_LIMIT,
    TRACKING_RATE_LIMIT_CONTEXT,
    WORKFLOW_WORKERS_CONTEXT,
)
from infra.events_out import EventsOut
from infra.exports import Exports
from infra.http_api import ConfigurationError, HttpEntryPoint, Throttle
from infra.migration import StorageMigration
from infra.monitoring import Monitoring
from infra.reports_api import ReportsApi
from infra.secrets import Secrets
from infra.storage import Storage
from infra.tracking_endpoint import TrackingEndpoint
from infra.tracking_workflow import TrackingWorkflow


def _context(scope: Construct, name: str) -> str | None:
    """A context value (cdk.json or ``-c name=value``); unset and empty are the same."""
    value = scope.node.try_get_context(name)
    if value is None:
        return None
    return str(value).strip() or None


def _int_context(scope: Construct, name: str, default: int) -> int:
    """A whole-number context value, or ``default`` when unset."""
    value = _context(scope, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {value!r}") from None


def _concurrency_context(scope: Construct, name: str, default: int) -> int:
    """A reserved concurrency: a whole number, 0 for none."""
    value = _int_context(scope, name, default)
    if value < 0:
        raise ConfigurationError(f"{name} must be 0 (no reservation) or more, got {value}")
    return value


def _count_context(scope: Construct, name: str, default: int, maximum: int, why: str) -> int:
    """A whole-number context value from 1 to ``maximum`` (``why`` the bound, for the error)."""
    value = _int_context(scope, name, default)
    if not 1 <= value <= maximum:
        raise ConfigurationError(f"{name} must be 1 to {maximum} ({why}), got {value}")
    return value


def _workers_context(scope: Construct) -> int:
    """How many workers a run of the tracking workflow has: 1 to the inline Map's 40."""
    why = f"a Map state runs at most {MAX_WORKFLOW_WORKERS} iterations at once"
    return _count_context(
        scope, WORKFLOW_WORKERS_CONTEXT, DEFAULT_WORKFLOW_WORKERS, MAX_WORKFLOW_WORKERS, why
    )


def _raw_event_shards_context(scope: Construct) -> int:
    """How many partition keys the raw-events table has: 1 to MAX_RAW_EVENT_SHARDS."""
    why = "each shard takes about 1,000 hits a second"
    return _count_context(
        scope, RAW_EVENT_SHARDS_CONTEXT, DEFAULT_RAW_EVENT_SHARDS, MAX_RAW_EVENT_SHARDS, why
    )


def _migration_context(scope: Construct) -> tuple[bool, str | None]:
    """Whether this deploy grants the storage migration, and the retained tracking-logs table it reads."""
    flag = _context(scope, MIGRATION_CONTEXT)
    if flag is not None and flag.lower() not in ("true", "false"):
        raise ConfigurationError(f"{MIGRATION_CONTEXT} must be true or false, got {flag!r}")
    migration = flag is not None and flag.lower() == "true"
    old_logs_table = _context(scope, MIGRATION_OLD_LOGS_TABLE_CONTEXT)
    if old_logs_table is not None and not migration:
        raise ConfigurationError(
            f"{MIGRATION_OLD_LOGS_TABLE_CONTEXT} is read only by the storage migration: "
            f"deploy with -c {MIGRATION_CONTEXT}=true as well"
        )
    if old_logs_table is not None and not TABLE_NAME.fullmatch(old_logs_table):
        raise ConfigurationError(
            f"{MIGRATION_OLD_LOGS_TABLE_CONTEXT} must be a DynamoDB table name "
            f"(3 to 255 of A-Z a-z 0-9 _ . -), got {old_logs_table!r}"
        )
    return migration, old_logs_table


class TrackingStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, description="msgtrack: email message tracking", **kwargs)
        schedule = _context(self, SCHEDULE_CONTEXT) or DEFAULT_SCHEDULE
        code = function_code()  # one asset for the three functions
        self.storage = Storage(self, "Storage", raw_event_shards=_raw_event_shards_context(self))
        self.secrets = Secrets(self, "Secrets")
        self.entry_point = HttpEntryPoint(
            self,
            "Http",
            tracking_domain=_context(self, TRACKING_DOMAIN_CONTEXT),
            certificate_arn=_context(self, CERTIFICATE_ARN_CONTEXT),
            tracking_throttle=Throttle(
                _int_context(self, TRACKING_RATE_LIMIT_CONTEXT, TRACKING_RATE_LIMIT),
                _int_context(self, TRACKING_BURST_LIMIT_CONTEXT, TRACKING_BURST_LIMIT),
                "the tracking routes' throttle",
            ),
            api_throttle=Throttle(
                _int_context(self, API_RATE_LIMIT_CONTEXT, API_RATE_LIMIT),
                _int_context(self, API_BURST_LIMIT_CONTEXT, API_BURST_LIMIT),
                "the report API's throttle",
            ),
        )
        self.redirect = TrackingEndpoint(
            self,
            "Tracking",
            code=code,
            storage=self.storage,
            secrets=self.secrets,
            entry_point=self.entry_point,
            reserved_concurrency=_concurrency_context(
                self, REDIRECT_RESERVED_CONCURRENCY_CONTEXT, REDIRECT_RESERVED_CONCURRENCY
            ),
        )
        self.workflow = TrackingWorkflow(
            self,
            "Workflow",
            code=code,
            storage=self.storage,
            schedule=schedule,
            workers=_workers_context(self),
        )
        migration, old_logs_table = _migration_context(self)
        self.migration = (
            StorageMigration(
                self,
                "Migration",
                storage=self.storage,
                role=self.workflow.handler.role,
                old_logs_table=old_logs_table,
            )
            if migration
            else None
        )
        self.reports = ReportsApi(
            self,
            "Reports",
            code=code,
            storage=self.storage,
            secrets=self.secrets,
            entry_point=self.entry_point,
            workflow=self.workflow,
            reserved_concurrency=_concurrency_context(
                self, API_RESERVED_CONCURRENCY_CONTEXT, API_RESERVED_CONCURRENCY
            ),
        )
        self.exports = Exports(self, "Exports", code=code, storage=self.storage, api=self.reports.function)
        self.events_out = EventsOut(self, "EventsOut", code=code, storage=self.storage)
        self.events_out.grant_webhook_admin(self.reports.function, self.storage)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            storage=self.storage,
            redirect=self.redirect,
            workflow=self.workflow,
            reports=self.reports,
            alarm_email=_context(self, ALARM_EMAIL_CONTEXT),
        )
        self.events_out.notify(self.monitoring.topic)
        self._build_outputs()

    def _build_outputs(self) -> None:
        outputs = {
            "TrackingBaseUrl": (self.entry_point.tracking_base_url, "Where /r and /o tracked links point"),
            "ApiUrl": (self.entry_point.url, "The HTTP API: /api/*, /health and the dashboard at /"),
            "DashboardName": (
                self.monitoring.dashboard.dashboard_name,
                "The CloudWatch operations dashboard",
            ),
            "AlarmTopicArn": (self.monitoring.topic.topic_arn, "Subscribe here to receive the alarms"),
            "ApiTokenSecretArn": (self.secrets.api_token.secret_arn, "The report API's bearer token"),
            "SigningKeySecretArn": (self.secrets.signing_key.secret_arn, "The link-signing key (rotation)"),
            "WorkflowStateMachineArn": (
                self.workflow.state_machine.state_machine_arn,
                "Runs the tracking workflow: its executions are the runs",
            ),
            "WorkflowFunctionName": (
                self.workflow.function.function_name,
                "Plans, consolidates and finishes each run of the tracking workflow",
            ),
            "RedirectFunctionName": (self.redirect.function.function_name, "Serves /r and /o"),
            "ApiFunctionName": (
                self.reports.function.function_name,
                "Serves /api, /health and the dashboard",
            ),
            "EventBusName": (self.events_out.bus.event_bus_name, "Every recorded hit, detail-type per type"),
            "WebhookDeadLetterQueueUrl": (
                self.events_out.dead_letters.queue_url,
                "Webhook deliveries given up after 24 hours of failures",
            ),
            "ExportsBucketName": (
                self.exports.bucket.bucket_name,
                "Complete exports of tracking logs (7 days)",
            ),
            "WorkflowDeadLetterQueueUrl": (
                self.workflow.dead_letters.queue_url,
                "Scheduled starts of the tracking workflow that could not be delivered",
            ),
        }
        if self.entry_point.domain is not None:
            outputs["TrackingDomainTarget"] = (
                self.entry_point.domain.regional_domain_name,
                "Point the tracking domain's DNS record (CNAME or alias) here",
            )
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)
