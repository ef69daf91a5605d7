"""What operators watch: the alarms, the dashboard and the stack outputs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.shared.observability import MetricNames
from infra.constants import METRICS_NAMESPACE, SERVICE_DIMENSION, SERVICE_NAME
from tests.infrastructure.synth import Synthesized

POWERTOOLS_DIMENSIONS = [{"Name": SERVICE_DIMENSION, "Value": SERVICE_NAME}]


def _alarm(synthesized: Synthesized, name: str) -> dict[str, Any]:
    alarm = synthesized.stack.monitoring.alarms[name]
    return dict(synthesized.resources[synthesized.logical_id(alarm)]["Properties"])


def _dashboard_body(synthesized: Synthesized) -> dict[str, Any]:
    """The dashboard JSON with every CloudFormation reference written as <LogicalId>."""
    (dashboard,) = synthesized.of_type("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(
        part if isinstance(part, str) else f"<{(part.get('Ref') or part.get('Fn::GetAtt', ['?'])[0])}>"
        for part in parts
    )
    return dict(json.loads(text))


def _graphed(body: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Widget title -> its metric rows."""
    return {
        widget["properties"]["title"]: widget["properties"].get("metrics", [])
        for widget in body["widgets"]
        if widget["type"] == "metric"
    }


def test_a_failed_workflow_run_raises_an_alarm(synthesized: Synthesized) -> None:
    alarm = _alarm(synthesized, "WorkflowRunFailed")
    assert (alarm["Namespace"], alarm["MetricName"]) == (METRICS_NAMESPACE, MetricNames.WORKFLOW_RUNS_FAILED)
    assert alarm["Dimensions"] == POWERTOOLS_DIMENSIONS
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Sum",
        "GreaterThanOrEqualToThreshold",
        1,
    )


def test_a_failed_or_timed_out_execution_of_the_state_machine_raises_an_alarm(
    synthesized: Synthesized,
) -> None:
    # Given the alarm on the tracking workflow's executions
    alarm = _alarm(synthesized, "WorkflowExecutionFailed")
    state_machine = {"Ref": synthesized.logical_id(synthesized.stack.workflow.state_machine)}
    # Then it adds up the state machine's failed and timed-out executions in five minutes
    queries = {query["Id"]: query for query in alarm["Metrics"]}
    (expression,) = [query for query in queries.values() if "Expression" in query]
    assert expression["Expression"] == "FILL(failed, 0) + FILL(timed_out, 0)"
    assert expression["ReturnData"] is True
    for name, metric_name in (("failed", "ExecutionsFailed"), ("timed_out", "ExecutionsTimedOut")):
        stat = queries[name]["MetricStat"]
        assert stat["Metric"] == {
            "Namespace": "AWS/States",
            "MetricName": metric_name,
            "Dimensions": [{"Name": "StateMachineArn", "Value": state_machine}],
        }
        assert (stat["Stat"], stat["Period"], queries[name]["ReturnData"]) == ("Sum", 300, False)
    # And alarms from the first one, like the other alarms; no execution is no failure
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert (alarm["EvaluationPeriods"], alarm["TreatMissingData"]) == (1, "notBreaching")
    assert alarm["AlarmName"] == "msgtrack-WorkflowExecutionFailed"


def test_a_write_the_workflow_quarantined_raises_an_alarm(synthesized: Synthesized) -> None:
    alarm = _alarm(synthesized, "WritesQuarantined")
    assert (alarm["Namespace"], alarm["MetricName"]) == (METRICS_NAMESPACE, "WritesQuarantined")
    assert alarm["Dimensions"] == POWERTOOLS_DIMENSIONS
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Sum",
        "GreaterThanOrEqualToThreshold",
        1,
    )
    assert alarm["TreatMissingData"] == "notBreaching"


def test_no_successful_run_for_two_schedule_periods_raises_an_alarm_even_without_data(
    synthesized: Synthesized,
) -> None:
    alarm = _alarm(synthesized, "NoSuccessfulWorkflowRun")
    assert alarm["MetricName"] == MetricNames.WORKFLOW_RUNS_SUCCEEDED
    assert alarm["Dimensions"] == POWERTOOLS_DIMENSIONS
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Sum",
        "LessThanThreshold",
        1,
    )
    assert alarm["Period"] == 3600  # the default schedule, rate(1 hour)
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (2, 2)
    # a workflow that never starts emits nothing: missing data must count as a missed run
    assert alarm["TreatMissingData"] == "breaching"


@pytest.mark.parametrize(
    ("name", "metric"), [("RedirectErrors", "Errors"), ("RedirectThrottles", "Throttles")]
)
def test_redirect_errors_and_throttles_raise_alarms(synthesized: Synthesized, name: str, metric: str) -> None:
    alarm = _alarm(synthesized, name)
    redirect = synthesized.logical_id(synthesized.stack.redirect.function)
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", metric)
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": redirect}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)


def test_lost_raw_events_raise_an_alarm(synthesized: Synthesized) -> None:
    alarm = _alarm(synthesized, "RawEventWriteFailures")
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        METRICS_NAMESPACE,
        MetricNames.RAW_EVENT_WRITE_FAILURES,
    )
    assert alarm["Dimensions"] == POWERTOOLS_DIMENSIONS


def test_every_alarm_notifies_the_alarm_topic_and_explains_itself(synthesized: Synthesized) -> None:
    topic = synthesized.logical_id(synthesized.stack.monitoring.topic)
    alarms = synthesized.of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) == len(synthesized.stack.monitoring.alarms) == 8
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]
        assert len(alarm["Properties"]["AlarmDescription"]) > 40


def test_the_dashboard_shows_workflow_runs_traffic_and_redirect_health(synthesized: Synthesized) -> None:
    body = _dashboard_body(synthesized)
    graphed = _graphed(body)
    redirect = f"<{synthesized.logical_id(synthesized.stack.redirect.function)}>"

    def metric_names(title: str) -> set[str]:
        return {str(row[1]) for row in graphed[title]}

    assert metric_names("Tracking workflow runs") == {
        MetricNames.WORKFLOW_RUNS_SUCCEEDED,
        MetricNames.WORKFLOW_RUNS_FAILED,
        MetricNames.WORKFLOW_RUNS_SKIPPED,
    }
    assert MetricNames.EVENTS_PROCESSED in metric_names("Raw events processed by the tracking workflow")
    assert MetricNames.WORKFLOW_RUN_DURATION in metric_names("Tracking workflow run duration (seconds)")
    # the state machine's executions, per schedule period, and the longest one
    executions = graphed["Tracking workflow executions (Step Functions)"]
    state_machine = f"<{synthesized.logical_id(synthesized.stack.workflow.state_machine)}>"
    assert all(row[:4] == ["AWS/States", row[1], "StateMachineArn", state_machine] for row in executions)
    assert {row[1] for row in executions} == {
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
        "ExecutionTime",
    }
    assert all(row[-1]["period"] == 3600 for row in executions)
    # clicks and opens, per hour
    hourly = graphed["Clicks and opens per hour"]
    assert {row[1] for row in hourly} == {MetricNames.CLICKS, MetricNames.OPENS}
    assert all(row[-1]["period"] == 3600 for row in hourly)
    # redirect latency at p50 and p99, and its errors
    latency = graphed["Redirect latency (ms)"]
    assert {row[-1]["stat"] for row in latency} == {"p50", "p99"}
    assert all(row[:4] == ["AWS/Lambda", "Duration", "FunctionName", redirect] for row in latency)
    assert {"Errors", "Throttles", MetricNames.RAW_EVENT_WRITE_FAILURES} <= metric_names("Redirect errors")
    # raw events DynamoDB refused, waiting for the next run in the fallback queue
    assert {MetricNames.RAW_EVENT_FALLBACKS, "ApproximateAgeOfOldestMessage"} <= metric_names(
        "Raw-event fallback queue"
    )


def test_the_dashboard_lists_the_last_runs_of_the_tracking_workflow(synthesized: Synthesized) -> None:
    body = _dashboard_body(synthesized)
    (query,) = [w["properties"] for w in body["widgets"] if w["type"] == "log"]
    log_group = synthesized.logical_id(synthesized.stack.workflow.handler.log_group)
    assert f"SOURCE '<{log_group}>'" in query["query"]
    # the line the consolidation handler logs at the end of every run
    assert "tracking workflow run finished" in query["query"]


def test_the_outputs_give_the_urls_the_dashboard_and_what_operators_need(synthesized: Synthesized) -> None:
    outputs = synthesized.template_json["Outputs"]
    stack = synthesized.stack
    assert {"TrackingBaseUrl", "ApiUrl", "DashboardName"} <= set(outputs)
    assert outputs["DashboardName"]["Value"] == {"Ref": synthesized.logical_id(stack.monitoring.dashboard)}
    assert outputs["ApiTokenSecretArn"]["Value"] == {"Ref": synthesized.logical_id(stack.secrets.api_token)}
    assert outputs["WorkflowFunctionName"]["Value"] == {
        "Ref": synthesized.logical_id(stack.workflow.function)
    }
    assert outputs["WorkflowStateMachineArn"]["Value"] == {
        "Ref": synthesized.logical_id(stack.workflow.state_machine)
    }
