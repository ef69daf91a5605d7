"""What operators watch: alarms (to an SNS topic) and one CloudWatch dashboard.

Custom metrics are the Powertools ones every function emits (``MetricNames``), in the
``METRICS_NAMESPACE`` namespace with the ``service`` dimension; Lambda's own metrics come from the
functions. The README's Operations section says what each alarm means and what to do.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from functions.shared.observability import MetricNames
from infra.constants import METRICS_NAMESPACE, SERVICE_DIMENSION, SERVICE_NAME
from infra.reports_api import ReportsApi
from infra.storage import Storage
from infra.tracking_endpoint import TrackingEndpoint
from infra.tracking_workflow import TrackingWorkflow

FAST_PERIOD = Duration.minutes(5)  # redirect health: a recipient notices within minutes
HOUR = Duration.hours(1)


def custom_metric(
    name: str, period: Duration, statistic: str = "Sum", label: str | None = None
) -> cloudwatch.Metric:
    """A Powertools metric as the functions emit it."""
    return cloudwatch.Metric(
        namespace=METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={SERVICE_DIMENSION: SERVICE_NAME},
        statistic=statistic,
        period=period,
        label=label,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: Storage,
        redirect: TrackingEndpoint,
        workflow: TrackingWorkflow,
        reports: ReportsApi,
        alarm_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._storage = storage
        self._redirect = redirect
        self._workflow = workflow
        self._reports = reports
        self.topic = self._build_topic(alarm_email)
        self.alarms = self._build_alarms()
        for alarm in self.alarms.values():
            alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.dashboard = self._build_dashboard()

    def _build_topic(self, alarm_email: str | None) -> sns.Topic:
        topic = sns.Topic(self, "Alarms", display_name="msgtrack alarms", enforce_ssl=True)
        if alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        return topic

    # --- alarms -----------------------------------------------------------------------------

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        below: bool = False,
        evaluation_periods: int = 1,
        missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        """An alarm at 1: ``metric >= 1`` (or ``< 1`` when ``below``) in every evaluated period."""
        return cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            alarm_name=f"{Stack.of(self).stack_name}-{construct_id}",
            alarm_description=description,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
            if below
            else cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=evaluation_periods,
            treat_missing_data=missing_data,
        )

    def _build_alarms(self) -> dict[str, cloudwatch.Alarm]:
        """The alarms by construct id; the README's Operations section explains each one."""
        redirect = self._redirect.function
        workflow = self._workflow
        alarms = [
            self._alarm(
                "WorkflowRunFailed",
                custom_metric(MetricNames.WORKFLOW_RUNS_FAILED, FAST_PERIOD),
                "A run of the tracking workflow failed: GET /api/workflows/tracking shows its error; "
                "the next run replays what it left pending.",
            ),
            self._alarm(
                "NoSuccessfulWorkflowRun",
                custom_metric(MetricNames.WORKFLOW_RUNS_SUCCEEDED, workflow.period),
                f"No run of the tracking workflow succeeded for two schedule periods ({workflow.schedule}): "
                "reports are going stale.",
                below=True,
                evaluation_periods=2,
                # No data means no run at all: the very thing to alarm on.
                missing_data=cloudwatch.TreatMissingData.BREACHING,
            ),
            self._alarm(
                "WritesQuarantined",
                custom_metric(MetricNames.WRITES_QUARANTINED, FAST_PERIOD),
                "DynamoDB refused a write of the tracking workflow for what it held (too large, an invalid "
                "value), or a raw event could not be read: the run went on without it and kept it in quarantine (workflow table, pk "
                "'quarantine'); README Operations says how to re-drive or discard it.",
            ),
            self._alarm(
                "WorkflowExecutionFailed",
                self._failed_executions(),
                "An execution of the tracking workflow's state machine failed or timed out: a run failed "
                "(a worker still failing after its retries, Plan or Finish failing) or ran past the "
                "state machine's time limit. Its execution history in the Step Functions console names the "
                "failed state and its error; the next run replays what it left pending.",
            ),
            self._alarm(
                "WorkflowDeadLetters",
                workflow.dead_letters.metric_approximate_number_of_messages_visible(
                    period=FAST_PERIOD, statistic="Maximum"
                ),
                "A scheduled start of the tracking workflow could not be delivered to its state machine: "
                "the event waits in the workflow's dead-letter queue.",
            ),
            self._alarm(
                "RedirectErrors",
                redirect.metric_errors(period=FAST_PERIOD, statistic="Sum"),
                "The redirect function failed (it answers every request it can, so an error means it could "
                "not start or ran out of time): recipients may have seen a 5xx.",
            ),
            self._alarm(
                "RedirectThrottles",
                redirect.metric_throttles(period=FAST_PERIOD, statistic="Sum"),
                "Lambda throttled the redirect function (concurrency exhausted): clicks and opens were "
                "refused with a 5xx.",
            ),
            self._alarm(
                "RawEventWriteFailures",
                custom_metric(MetricNames.RAW_EVENT_WRITE_FAILURES, FAST_PERIOD),
                "The redirect function could not record raw events: the recipients were served, but those "
                "clicks or opens are missing from the reports.",
            ),
        ]
        return {alarm.node.id: alarm for alarm in alarms}

    def _failed_executions(self) -> cloudwatch.IMetric:
        """Executions that failed or timed out in five minutes, as one number (no data: none)."""
        state_machine = self._workflow.state_machine
        return cloudwatch.MathExpression(
            expression="FILL(failed, 0) + FILL(timed_out, 0)",
            using_metrics={
                "failed": state_machine.metric_failed(period=FAST_PERIOD, statistic="Sum"),
                "timed_out": state_machine.metric_timed_out(period=FAST_PERIOD, statistic="Sum"),
            },
            label="failed or timed-out executions",
            period=FAST_PERIOD,
        )

    # --- dashboard --------------------------------------------------------------------------

    def _build_dashboard(self) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-operations",
            default_interval=Duration.days(2),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=24, height=3
            )
        )
        dashboard.add_widgets(*self._workflow_widgets())
        dashboard.add_widgets(self._executions_widget())
        dashboard.add_widgets(self._last_runs_widget())
        dashboard.add_widgets(*self._traffic_widgets())
        dashboard.add_widgets(self._fallback_widget(), self._report_api_widget())
        return dashboard

    def _workflow_widgets(self) -> list[cloudwatch.IWidget]:
        period = self._workflow.period
        return [
            cloudwatch.GraphWidget(
                title="Tracking workflow runs",
                left=[
                    custom_metric(MetricNames.WORKFLOW_RUNS_SUCCEEDED, period, label="succeeded"),
                    custom_metric(MetricNames.WORKFLOW_RUNS_FAILED, period, label="failed"),
                    custom_metric(MetricNames.WORKFLOW_RUNS_SKIPPED, period, label="skipped (lock taken)"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Raw events processed by the tracking workflow",
                left=[custom_metric(MetricNames.EVENTS_PROCESSED, period, label="events processed")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Tracking workflow run duration (seconds)",
                left=[
                    custom_metric(MetricNames.WORKFLOW_RUN_DURATION, period, "Maximum", label="longest run"),
                    custom_metric(MetricNames.WORKFLOW_RUN_DURATION, period, "Average", label="average run"),
                ],
                width=8,
            ),
        ]

    def _executions_widget(self) -> cloudwatch.IWidget:
        # The state machine's own view of the runs: each scheduled or on-demand start is an execution.
        state_machine = self._workflow.state_machine
        period = self._workflow.period
        return cloudwatch.GraphWidget(
            title="Tracking workflow executions (Step Functions)",
            left=[
                state_machine.metric_started(period=period, statistic="Sum", label="started"),
                state_machine.metric_succeeded(period=period, statistic="Sum", label="succeeded"),
                state_machine.metric_failed(period=period, statistic="Sum", label="failed"),
                state_machine.metric_timed_out(period=period, statistic="Sum", label="timed out"),
                state_machine.metric_aborted(period=period, statistic="Sum", label="aborted"),
            ],
            right=[
                state_machine.metric_time(period=period, statistic="Maximum", label="longest execution (ms)")
            ],
            width=24,
        )

    def _last_runs_widget(self) -> cloudwatch.IWidget:
        # The last execution of the tracking workflow, with its outcome, straight from its JSON logs.
        return cloudwatch.LogQueryWidget(
            title="Last runs of the tracking workflow",
            log_group_names=[self._workflow.handler.log_group.log_group_name],
            query_lines=[
                "fields @timestamp, run_id, trigger, status, events_processed, duration_s",
                "filter message = 'tracking workflow run finished' or level = 'ERROR'",
                "sort @timestamp desc",
                "limit 20",
            ],
            width=24,
            height=6,
        )

    def _traffic_widgets(self) -> list[cloudwatch.IWidget]:
        redirect = self._redirect.function
        return [
            cloudwatch.GraphWidget(
                title="Clicks and opens per hour",
                left=[
                    custom_metric(MetricNames.CLICKS, HOUR, label="clicks"),
                    custom_metric(MetricNames.OPENS, HOUR, label="opens"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Redirect latency (ms)",
                left=[
                    redirect.metric_duration(period=FAST_PERIOD, statistic="p50", label="p50"),
                    redirect.metric_duration(period=FAST_PERIOD, statistic="p99", label="p99"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Redirect errors",
                left=[
                    redirect.metric_errors(period=FAST_PERIOD, statistic="Sum", label="function errors"),
                    redirect.metric_throttles(period=FAST_PERIOD, statistic="Sum", label="throttles"),
                    custom_metric(
                        MetricNames.REDIRECT_FAILURES, FAST_PERIOD, label="hits not served normally"
                    ),
                    custom_metric(MetricNames.RAW_EVENT_WRITE_FAILURES, FAST_PERIOD, label="raw events lost"),
                    custom_metric(MetricNames.INVALID_TOKENS, FAST_PERIOD, label="invalid tokens (404)"),
                ],
                width=8,
            ),
        ]

    def _fallback_widget(self) -> cloudwatch.IWidget:
        # Raw events DynamoDB refused: handed to the fallback queue, put back by the next workflow run.
        queue = self._storage.fallback_queue
        return cloudwatch.GraphWidget(
            title="Raw-event fallback queue",
            left=[
                custom_metric(MetricNames.RAW_EVENT_FALLBACKS, FAST_PERIOD, label="raw events handed over"),
                queue.metric_approximate_number_of_messages_visible(
                    period=FAST_PERIOD, statistic="Maximum", label="waiting"
                ),
            ],
            right=[
                queue.metric_approximate_age_of_oldest_message(
                    period=FAST_PERIOD, statistic="Maximum", label="oldest waiting (s)"
                )
            ],
            width=12,
        )

    def _report_api_widget(self) -> cloudwatch.IWidget:
        api = self._reports.function
        return cloudwatch.GraphWidget(
            title="Report API function",
            left=[api.metric_errors(period=FAST_PERIOD, statistic="Sum", label="errors")],
            right=[api.metric_duration(period=FAST_PERIOD, statistic="p99", label="p99 latency (ms)")],
            width=12,
        )
