"""The tracking workflow: its schedule (hourly unless told otherwise) starting the state machine, the
dead letters, and the on-demand start from the API. The state machine itself: test_state_machine.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from infra.constants import SCHEDULE_RETRY_ATTEMPTS, WORKFLOW_TIMEOUT
from infra.tracking_workflow import schedule_period
from local.scheduler import ScheduleError
from tests.infrastructure.synth import NO_BUNDLING, Synthesized, cdk_json_context, environment, permissions


def _rule(synthesized: Synthesized) -> dict[str, Any]:
    (rule,) = synthesized.of_type("AWS::Events::Rule").values()
    return dict(rule["Properties"])


def test_an_hourly_rule_starts_the_state_machine_as_a_scheduled_run(synthesized: Synthesized) -> None:
    # Given the default deployment
    rule = _rule(synthesized)
    # Then the tracking workflow runs every hour
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    assert rule["State"] == "ENABLED"
    # And its only target is the state machine, not the function, started as a scheduled run
    (target,) = rule["Targets"]
    state_machine = synthesized.logical_id(synthesized.stack.workflow.state_machine)
    assert target["Arn"] == {"Ref": state_machine}
    assert json.loads(target["Input"]) == {"trigger": "schedule"}


def test_the_schedule_may_start_executions_of_the_state_machine_and_nothing_else(
    synthesized: Synthesized,
) -> None:
    (target,) = _rule(synthesized)["Targets"]
    # (EventBridge's role for the target, which CDK keeps under the state machine)
    role = synthesized.stack.workflow.state_machine.node.find_child("EventsRole")
    assert target["RoleArn"] == {"Fn::GetAtt": [synthesized.logical_id(role), "Arn"]}
    state_machine = synthesized.logical_id(synthesized.stack.workflow.state_machine)
    assert permissions(synthesized, role) == {("states:StartExecution", state_machine)}


def test_an_undeliverable_start_is_retried_then_kept_in_the_dead_letter_queue(
    synthesized: Synthesized,
) -> None:
    (target,) = _rule(synthesized)["Targets"]
    queue = synthesized.logical_id(synthesized.stack.workflow.dead_letters)
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": SCHEDULE_RETRY_ATTEMPTS,
        "MaximumEventAgeInSeconds": 3600,
    }
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue, "Arn"]}}


def test_the_function_is_invoked_by_the_state_machine_only_which_retries_it(synthesized: Synthesized) -> None:
    # Given the consolidation function
    properties = synthesized.resources[synthesized.logical_id(synthesized.stack.workflow.function)][
        "Properties"
    ]
    # Then it keeps Lambda's longest timeout
    assert properties["Timeout"] == WORKFLOW_TIMEOUT.to_seconds()
    # And nothing invokes it asynchronously any more: no retry or dead letter of Lambda's own (the state
    # machine's retries and catch handle its failures)
    assert "DeadLetterConfig" not in properties
    consolidate = {"Ref": synthesized.logical_id(synthesized.stack.workflow.function)}
    assert not [
        config
        for config in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
        if config["Properties"]["FunctionName"] == consolidate
    ]
    # And no service is granted its invocation by a resource policy (EventBridge starts the state machine)
    function = {"Fn::GetAtt": [synthesized.logical_id(synthesized.stack.workflow.function), "Arn"]}
    assert not [
        permission
        for permission in synthesized.of_type("AWS::Lambda::Permission").values()
        if permission["Properties"]["FunctionName"] == function
    ]


def test_the_dead_letter_queue_is_encrypted_and_refuses_plain_http(synthesized: Synthesized) -> None:
    queue_id = synthesized.logical_id(synthesized.stack.workflow.dead_letters)
    queue = synthesized.resources[queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    (policy,) = [
        policy
        for policy in synthesized.of_type("AWS::SQS::QueuePolicy").values()
        if policy["Properties"]["Queues"] == [{"Ref": queue_id}]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert {
        "Action": "sqs:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
    } in statements
    # Only the schedule's rule may drop undelivered events in it
    (allow,) = [s for s in statements if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"


def test_the_api_starts_runs_on_the_state_machine_and_reports_the_schedule(synthesized: Synthesized) -> None:
    state_machine = synthesized.logical_id(synthesized.stack.workflow.state_machine)
    variables = environment(synthesized, synthesized.stack.reports.function)
    assert variables["MSGTRACK_WORKFLOW_STATE_MACHINE"] == {"Ref": state_machine}
    assert "MSGTRACK_WORKFLOW_FUNCTION" not in variables
    assert variables["MSGTRACK_SCHEDULE"] == _rule(synthesized)["ScheduleExpression"]


def test_the_schedule_is_a_context_value_and_the_alarm_follows_it(
    synthesize_variant: Callable[..., Synthesized],
) -> None:
    # Given a deployment that consolidates every 15 minutes
    synthesized = synthesize_variant(schedule="rate(15 minutes)")
    # Then the rule, the API's report of the schedule and the missed-run alarm agree
    assert _rule(synthesized)["ScheduleExpression"] == "rate(15 minutes)"
    variables = environment(synthesized, synthesized.stack.reports.function)
    assert variables["MSGTRACK_SCHEDULE"] == "rate(15 minutes)"
    alarm = synthesized.stack.monitoring.alarms["NoSuccessfulWorkflowRun"]
    properties = synthesized.resources[synthesized.logical_id(alarm)]["Properties"]
    assert properties["Period"] == 15 * 60
    assert properties["EvaluationPeriods"] == 2


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [("rate(1 hour)", 3600), ("rate(5 minutes)", 300), ("rate(1 day)", 86400)],
)
def test_the_schedule_period_is_read_from_the_rate_expression(schedule: str, seconds: int) -> None:
    assert schedule_period(schedule).to_seconds() == seconds


@pytest.mark.parametrize("schedule", ["cron(0 * * * ? *)", "rate(1 hours)", "hourly", "rate(2 days)"])
def test_a_schedule_the_alarms_cannot_follow_is_refused_at_synth(schedule: str) -> None:
    from infra.app import build_app

    with pytest.raises(ScheduleError, match="schedule"):
        build_app(context={**cdk_json_context(), **NO_BUNDLING, "schedule": schedule})


def test_the_local_stack_gives_each_workflow_step_the_deployed_time_limit_from_one_definition(
    synthesized: Synthesized,
) -> None:
    import ast
    from pathlib import Path

    from functions.consolidate import config
    from local.stack import LocalStack

    # Given the consolidation function as deployed
    deployed = synthesized.resources[synthesized.logical_id(synthesized.stack.workflow.function)]
    # When the local stack builds its containers of it (one per worker)
    stack = LocalStack()
    containers = [stack.workflow, *stack._workflow_containers(3)[1:]]
    # Then each step has the deployed time limit, which is the shared one
    assert deployed["Properties"]["Timeout"] == config.WORKFLOW_TIMEOUT_SECONDS
    assert {c.timeout_seconds for c in containers} == {config.WORKFLOW_TIMEOUT_SECONDS}
    # And no module but functions/consolidate/config.py sets a number of its own for it
    root = Path(__file__).resolve().parents[2]
    setters = sorted(
        str(path.relative_to(root))
        for folder in ("functions", "infra", "local")
        for path in (root / folder).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", None) == "WORKFLOW_TIMEOUT_SECONDS" for t in node.targets)
    )
    assert setters == ["functions/consolidate/config.py"]
