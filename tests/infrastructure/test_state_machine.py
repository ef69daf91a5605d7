"""The tracking workflow's state machine: Plan, a Map of workers, Close, a Map of slices, Finish; retries, the way a failed
worker reaches Finish, its role (the consolidation function and nothing else), logs and time limit."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from functions.consolidate.store import PARTIAL_SPREAD
from infra.constants import (
    CLOSE_STATE,
    FAILED_STATE,
    FINISH_STATE,
    LAMBDA_SERVICE_ERRORS,
    MAX_WORKFLOW_WORKERS,
    MERGE_SLICE_STATE,
    MORE_WORK_CHOICE,
    NOTHING_TO_DO_STATE,
    OUTCOME_CHOICE,
    PLAN_STATE,
    RUN_FAILED_ERROR,
    SCHEDULE_PERIOD,
    SKIP_CHOICE,
    SLICE_FAILED_STATE,
    SLICES_STATE,
    STATE_MACHINE_TIMEOUT,
    SUCCEEDED_STATE,
    WORK_ON_STATE,
    WORK_STATE,
    WORKER_DONE_STATE,
    WORKER_FAILED_STATE,
    WORKER_RETRY_ATTEMPTS,
    WORKERS_STATE,
    WORKFLOW_TIMEOUT,
)
from infra.http_api import ConfigurationError
from tests.infrastructure.synth import NO_BUNDLING, Synthesized, cdk_json_context, environment, permissions

# What Step Functions needs to deliver execution logs to CloudWatch Logs (its developer guide): setting
# up the log delivery and the log group's resource policy; none of it reads or writes a log event.
LOG_DELIVERY = re.compile(r"logs:(\w+LogDeliver(y|ies)|\w+ResourcePolic(y|ies)|DescribeLogGroups)")


def _state_machine(synthesized: Synthesized) -> dict[str, Any]:
    return dict(
        synthesized.resources[synthesized.logical_id(synthesized.stack.workflow.state_machine)]["Properties"]
    )


def _definition(synthesized: Synthesized) -> dict[str, Any]:
    """The state machine's definition, every CloudFormation reference written as <LogicalId>."""
    body = _state_machine(synthesized)["DefinitionString"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(
        part if isinstance(part, str) else f"<{(part.get('Ref') or part.get('Fn::GetAtt', ['?'])[0])}>"
        for part in parts
    )
    return dict(json.loads(text))


def _function(synthesized: Synthesized) -> str:
    return f"<{synthesized.logical_id(synthesized.stack.workflow.function)}>"


def test_a_run_plans_then_works_in_a_map_then_finishes(synthesized: Synthesized) -> None:
    definition = _definition(synthesized)
    states = definition["States"]
    # Given the definition, in JSONata
    assert definition["QueryLanguage"] == "JSONata"
    # Then a run starts with Plan, an invoke of the consolidation function
    assert definition["StartAt"] == PLAN_STATE
    plan = states[PLAN_STATE]
    assert (plan["Type"], plan["Resource"]) == ("Task", _function(synthesized))
    # And goes on to the Map of workers unless the plan says skip, which ends it successfully
    skip = states[plan["Next"]]
    assert plan["Next"] == SKIP_CHOICE and skip["Type"] == "Choice"
    ((choice,),) = [skip["Choices"]]
    assert choice["Condition"] == "{% $states.input.skip = true %}"
    assert choice["Next"] == NOTHING_TO_DO_STATE and states[NOTHING_TO_DO_STATE]["Type"] == "Succeed"
    assert skip["Default"] == WORKERS_STATE
    workers = states[WORKERS_STATE]
    assert workers["Type"] == "Map"
    # And each worker is one invoke of the consolidation function
    processor = workers["ItemProcessor"]
    assert processor["ProcessorConfig"] == {"Mode": "INLINE"}
    assert processor["StartAt"] == WORK_STATE
    work = processor["States"][WORK_STATE]
    assert (work["Type"], work["Resource"]) == ("Task", _function(synthesized))
    # And after the workers Close and the Map of the merge's slices (test below), then Finish once more
    assert workers["Next"] == CLOSE_STATE and states[CLOSE_STATE]["Next"] == SLICES_STATE
    assert states[SLICES_STATE]["Next"] == FINISH_STATE
    finish = states[FINISH_STATE]
    assert (finish["Type"], finish["Resource"]) == ("Task", _function(synthesized))
    # And the execution ends as the run did: failed runs fail it (the alarm watches), others succeed
    outcome = states[finish["Next"]]
    assert finish["Next"] == OUTCOME_CHOICE
    ((failed,),) = [outcome["Choices"]]
    assert failed["Condition"] == "{% $states.input.status = 'failed' %}"
    assert states[failed["Next"]]["Type"] == "Fail" and failed["Next"] == FAILED_STATE
    assert states[FAILED_STATE]["Error"] == RUN_FAILED_ERROR
    assert states[outcome["Default"]] == {"Type": "Succeed"} and outcome["Default"] == SUCCEEDED_STATE


def test_each_step_sends_the_event_the_function_reads(synthesized: Synthesized) -> None:
    states = _definition(synthesized)["States"]
    # Plan: the run id and trigger of the start; a schedule's start names no run, so its id is made from
    # the execution's start time and name: a retried Plan asks for the same run (checked with jsonata
    # 2.0.6: StartTime 2026-12-06T08:00:00.123Z, name 3f2a9c1e-… -> 20261206T080000123Z-3f2a9c)
    assert states[PLAN_STATE]["Arguments"] == (
        '{% {"step": "plan", "run_id": $exists($states.input.run_id) ? $states.input.run_id : '
        '$replace($states.context.Execution.StartTime, /[-:.]/, "") & "-" & '
        '$substring($states.context.Execution.Name, 0, 6), "trigger": $states.input.trigger} %}'
    )
    # Work: the run and one group of the plan, per item of the plan's groups
    workers = states[WORKERS_STATE]
    assert workers["Items"] == "{% $states.input.groups %}"
    assert workers["ItemSelector"] == {
        "step": "work",
        "run_id": "{% $states.input.run_id %}",
        "worker": "{% $states.context.Map.Item.Value.worker %}",
        "shards": "{% $states.context.Map.Item.Value.shards %}",
    }
    assert workers["ItemProcessor"]["States"][WORK_STATE]["Arguments"] == "{% $states.input %}"
    # Finish: the run, the workers' results and the error if any
    assert states[FINISH_STATE]["Arguments"] == (
        '{% {"step": "finish", "run_id": $states.input.run_id, "workers": $states.input.workers, '
        '"error": $states.input.error} %}'
    )
    # The function's answer is each task's output as it is (payload only, not Lambda's envelope); a
    # worker's with its run, for the next invocation of the worker if it has more to do
    for task in (states[PLAN_STATE], states[FINISH_STATE], workers["ItemProcessor"]["States"][WORK_STATE]):
        assert "Payload" not in json.dumps(task)
    assert "Output" not in states[PLAN_STATE] and "Output" not in states[FINISH_STATE]
    assert workers["ItemProcessor"]["States"][WORK_STATE]["Output"] == (
        '{% $merge([$states.result, {"run_id": $states.input.run_id}]) %}'
    )


def test_a_worker_with_more_to_do_is_invoked_again_for_its_group_until_it_has_none(
    synthesized: Synthesized,
) -> None:
    iteration = _definition(synthesized)["States"][WORKERS_STATE]["ItemProcessor"]["States"]
    # Given a worker's result, When it says it has more (stopped at its invocation's limit before the
    # run's deadline), Then the iteration goes to Work on, else the worker is done
    work = iteration[WORK_STATE]
    assert work["Next"] == MORE_WORK_CHOICE
    choice = iteration[MORE_WORK_CHOICE]
    ((more,),) = [choice["Choices"]]
    assert (choice["Type"], more["Condition"]) == ("Choice", "{% $states.input.more = true %}")
    assert choice["Default"] == WORKER_DONE_STATE and iteration[WORKER_DONE_STATE]["Type"] == "Succeed"
    # And Work on sends Work the same group of the same run, with the notes the worker returned and
    # the shard it goes on at (not its count of quarantined items: its slot holds it)
    work_on = iteration[more["Next"]]
    assert more["Next"] == WORK_ON_STATE and (work_on["Type"], work_on["Next"]) == ("Pass", WORK_STATE)
    assert work_on["Output"] == (
        '{% {"step": "work", "run_id": $states.input.run_id, "worker": $states.input.worker, '
        '"shards": $states.input.shards, "errors": $states.input.errors, '
        '"next_shard": $states.input.next_shard} %}'
    )
    # And the loop is Work's own: retries and the catch of a failure apply to every invocation
    assert set(iteration) == {
        WORK_STATE,
        MORE_WORK_CHOICE,
        WORK_ON_STATE,
        WORKER_DONE_STATE,
        WORKER_FAILED_STATE,
    }


def _longest_waits(retrier: dict[str, Any]) -> float:
    """The most a retrier waits over all its retries, as Step Functions computes each wait."""
    waits = (
        retrier["IntervalSeconds"] * retrier.get("BackoffRate", 2.0) ** n
        for n in range(retrier["MaxAttempts"])
    )
    return float(sum(min(wait, retrier.get("MaxDelaySeconds", float("inf"))) for wait in waits))


def _worst(task: dict[str, Any], invocation: float) -> float:
    """The longest a task state may take: every try at the function's time limit, every wait its longest
    (a service error fails at once; a failure of the function itself may come at its time limit)."""
    retriers = _retriers(task)
    tries = 1 + sum(r["MaxAttempts"] for errors, r in retriers.items() if "States.TaskFailed" in errors)
    return tries * invocation + sum(_longest_waits(r) for r in retriers.values())


def test_the_time_limit_holds_the_budget_the_merge_allowance_and_the_service_waits_within_the_period(
    synthesized: Synthesized,
) -> None:
    # Given the run's budget, after which its workers take no more batches (MSGTRACK_RUN_BUDGET_SECONDS),
    # the function's time limit for each step and the retries the state machine configures
    variables = environment(synthesized, synthesized.stack.workflow.function)
    budget = int(variables["MSGTRACK_RUN_BUDGET_SECONDS"])
    lock = int(variables["MSGTRACK_RUN_LOCK_SECONDS"])
    function = synthesized.resources[synthesized.logical_id(synthesized.stack.workflow.function)]
    invocation = float(function["Properties"]["Timeout"])
    definition = _definition(synthesized)
    states, timeout = definition["States"], definition["TimeoutSeconds"]
    work = states[WORKERS_STATE]["ItemProcessor"]["States"][WORK_STATE]
    merge_slice = states[SLICES_STATE]["ItemProcessor"]["States"][MERGE_SLICE_STATE]
    tasks = (states[PLAN_STATE], work, states[CLOSE_STATE], merge_slice, states[FINISH_STATE])
    # When no step fails on its own: every state's longest service-error waits, the workers' last batch
    # and flush (the safety margin), then Close, the slowest slice and Finish within one invocation's time
    service_waits = sum(_longest_waits(_retriers(task)[LAMBDA_SERVICE_ERRORS]) for task in tasks)
    # Then the execution's time limit holds it all, and the run's lock outlives it, within the hour
    assert budget + 60 + invocation + service_waits <= timeout < lock < SCHEDULE_PERIOD.to_seconds() == 3600
    assert timeout == STATE_MACHINE_TIMEOUT.to_seconds()
    # And the budget is well over one invocation (so Plan fits in it); workers taking batches hold the lock
    assert 2 * invocation <= budget < lock
    # And a worker or slice failing on its own is tried again: that run may pass the limit, which the
    # next run's Plan finishes exactly once (tests/unit/test_workflow_workers.py)
    assert _worst(merge_slice, invocation) >= 2 * invocation and _worst(work, invocation) >= 2 * invocation


def _retriers(task: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(retrier["ErrorEquals"]): retrier for retrier in task["Retry"]}


def test_every_step_retries_the_lambda_service_errors(synthesized: Synthesized) -> None:
    states = _definition(synthesized)["States"]
    work = states[WORKERS_STATE]["ItemProcessor"]["States"][WORK_STATE]
    for task in (states[PLAN_STATE], work, states[FINISH_STATE]):
        retrier = _retriers(task)[LAMBDA_SERVICE_ERRORS]
        assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException"} <= set(LAMBDA_SERVICE_ERRORS)
        assert retrier["MaxAttempts"] >= 3 and retrier["BackoffRate"] > 1
        assert retrier["JitterStrategy"] == "FULL"
        # the first retrier that matches applies: service errors before the worker's task-failure one
        assert task["Retry"][0] == retrier


def test_a_worker_that_fails_is_retried_then_its_error_goes_to_finish(synthesized: Synthesized) -> None:
    states = _definition(synthesized)["States"]
    workers = states[WORKERS_STATE]
    iteration = workers["ItemProcessor"]["States"]
    work = iteration[WORK_STATE]
    # Given a worker whose function raised or timed out: it is tried again
    retrier = _retriers(work)[("States.TaskFailed",)]
    assert retrier["MaxAttempts"] == WORKER_RETRY_ATTEMPTS >= 1
    # When it still fails, its iteration catches the error and returns it in place of a result, so the
    # Map waits for every other worker before Finish releases the lock
    (catch,) = work["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"]
    assert catch["Output"] == '{% {"failure": $states.errorOutput} %}'
    assert iteration[catch["Next"]]["Type"] == "Pass" and iteration[catch["Next"]]["End"] is True
    assert catch["Next"] == WORKER_FAILED_STATE
    # Then the Map hands Finish the results of the workers that returned, and the first error
    output = workers["Output"]
    assert '"workers": $append([], $states.result[$not($exists(failure))])' in output
    assert '"error": $failures[0].failure' in output
    assert "$failures := $states.result[$exists(failure)]" in output
    # And whatever else fails the Map goes to Finish too, with its error and no worker results
    (map_catch,) = workers["Catch"]
    assert map_catch["ErrorEquals"] == ["States.ALL"] and map_catch["Next"] == FINISH_STATE
    assert map_catch["Output"] == (
        '{% {"run_id": $states.input.run_id, "workers": [], "error": $states.errorOutput} %}'
    )
    # And Plan and Finish are not retried on a failure of the function itself: a failed plan or
    # finish fails the execution, which raises the alarm
    assert ("States.TaskFailed",) not in _retriers(states[PLAN_STATE])
    assert ("States.TaskFailed",) not in _retriers(states[FINISH_STATE])


def test_one_worker_per_group_all_at_once_by_default_one(synthesized: Synthesized) -> None:
    assert _definition(synthesized)["States"][WORKERS_STATE]["MaxConcurrency"] == 1
    assert environment(synthesized, synthesized.stack.workflow.function)["MSGTRACK_WORKFLOW_WORKERS"] == "1"


def test_the_number_of_workers_is_a_context_value(synthesize_variant: Callable[..., Synthesized]) -> None:
    # Given a deployment with four workers
    synthesized = synthesize_variant(workflow_workers="4")
    # Then the function splits the shards into four groups and the Map runs them all at once
    assert environment(synthesized, synthesized.stack.workflow.function)["MSGTRACK_WORKFLOW_WORKERS"] == "4"
    assert _definition(synthesized)["States"][WORKERS_STATE]["MaxConcurrency"] == 4


@pytest.mark.parametrize("workers", ["0", "-1", str(MAX_WORKFLOW_WORKERS + 1), "four"])
def test_a_number_of_workers_the_map_cannot_run_is_refused_at_synth(workers: str) -> None:
    from infra.app import build_app

    with pytest.raises(ConfigurationError, match="workflow_workers"):
        build_app(context={**cdk_json_context(), **NO_BUNDLING, "workflow_workers": workers})


def test_an_execution_ends_within_the_hour_and_leaves_room_for_a_retried_worker(
    synthesized: Synthesized,
) -> None:
    properties = _state_machine(synthesized)
    assert properties["StateMachineType"] == "STANDARD"  # express workflows stop after 5 minutes
    timeout = _definition(synthesized)["TimeoutSeconds"]
    assert (1 + WORKER_RETRY_ATTEMPTS) * WORKFLOW_TIMEOUT.to_seconds() < timeout < 3600
    # And the run's lock outlives it: a run cut short by the limit never overlaps the next one
    variables = environment(synthesized, synthesized.stack.workflow.function)
    assert timeout < int(variables["MSGTRACK_RUN_LOCK_SECONDS"]) < 3600


def test_the_state_machine_may_invoke_the_consolidation_function_and_nothing_else(
    synthesized: Synthesized,
) -> None:
    machine = synthesized.stack.workflow.machine
    role_id = synthesized.logical_id(machine.role)
    assert _state_machine(synthesized)["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    role = synthesized.resources[role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    # The unqualified function (no version or alias), and the log delivery, which names no resource
    allowed = permissions(synthesized, machine.role)
    function = synthesized.logical_id(synthesized.stack.workflow.function)
    assert {(action, target) for action, target in allowed if target != "*"} == {
        ("lambda:InvokeFunction", function)
    }
    on_anything = {action for action, target in allowed if target == "*"}
    assert {"logs:CreateLogDelivery", "logs:PutResourcePolicy"} <= on_anything
    assert all(LOG_DELIVERY.fullmatch(action) for action in on_anything), on_anything


def test_every_execution_is_logged_to_its_own_log_group(synthesized: Synthesized) -> None:
    machine = synthesized.stack.workflow.machine
    log_group = synthesized.logical_id(machine.log_group)
    logging = _state_machine(synthesized)["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    assert logging["Destinations"] == [
        {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": [log_group, "Arn"]}}}
    ]
    assert synthesized.resources[log_group]["Properties"]["RetentionInDays"] == 30


def test_the_state_machine_traces_like_the_functions_not_at_all(synthesized: Synthesized) -> None:
    tracing = _state_machine(synthesized).get("TracingConfiguration", {"Enabled": False})
    assert tracing == {"Enabled": False}
    for function in synthesized.of_type("AWS::Lambda::Function").values():
        assert function["Properties"].get("TracingConfig", {"Mode": "PassThrough"}) == {"Mode": "PassThrough"}


def test_the_merges_slices_run_side_by_side_between_close_and_finish_each_retried_like_a_worker(
    synthesized: Synthesized,
) -> None:
    states = _definition(synthesized)["States"]
    # Given Close, an invoke of the consolidation function with the run id
    close = states[CLOSE_STATE]
    assert (close["Type"], close["Resource"]) == ("Task", _function(synthesized))
    assert close["Arguments"] == '{% {"step": "close", "run_id": $states.input.run_id} %}'
    # And it passes on what Finish reads, with the slices the function answered
    assert close["Output"] == '{% $merge([$states.input, {"slices": $states.result.slices}]) %}'
    # Then the Map runs one merge_slice invoke per slice, all 16 at once
    slices = states[SLICES_STATE]
    assert slices["Type"] == "Map" and slices["MaxConcurrency"] == PARTIAL_SPREAD
    assert slices["Items"] == "{% $states.input.slices %}"
    assert slices["ItemSelector"] == {
        "step": "merge_slice",
        "run_id": "{% $states.input.run_id %}",
        "slice": "{% $states.context.Map.Item.Value.slice %}",
    }
    assert slices["Output"] == "{% $states.input %}"  # Finish gets the workers' results, not the slices'
    processor = slices["ItemProcessor"]
    merge = processor["States"][MERGE_SLICE_STATE]
    assert (merge["Type"], merge["Resource"], merge["End"]) == ("Task", _function(synthesized), True)
    assert merge["Arguments"] == "{% $states.input %}"
    # And a slice is retried like a worker (the Lambda service's errors, then once on its own failure)
    work = states[WORKERS_STATE]["ItemProcessor"]["States"][WORK_STATE]
    assert merge["Retry"] == work["Retry"]
    # And a slice still failing, or a failed Close or Map, leaves the merge to Finish with its input
    (catch,) = merge["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == SLICE_FAILED_STATE
    assert processor["States"][SLICE_FAILED_STATE]["Type"] == "Pass"
    for state in (close, slices):
        (caught,) = state["Catch"]
        assert (caught["ErrorEquals"], caught["Next"], caught["Output"]) == (
            ["States.ALL"],
            FINISH_STATE,
            "{% $states.input %}",
        )


class _FailingSteps:
    """A consolidation container whose work and merge_slice steps always raise, counting each try."""

    def __init__(self) -> None:
        self.tries: dict[str, int] = {"work": 0, "merge_slice": 0}

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        step = event["step"]
        if step == "plan":
            return {"skip": False, "run_id": "run-1", "groups": [{"worker": 0, "shards": ["0"]}]}
        if step == "close":
            return {"slices": [{"slice": 3}]}
        if step == "finish":
            return {"run_id": event["run_id"], "status": "failed", "events_processed": 0}
        self.tries[step] += 1
        raise RuntimeError(f"{step} failed")


def test_the_local_state_machine_tries_a_failed_worker_and_slice_as_often_as_the_deployed_one(
    synthesized: Synthesized,
) -> None:
    from local.state_machine import LocalStateMachine

    # Given the deployed definition's retry of a worker and of a slice failing on their own
    states = _definition(synthesized)["States"]
    work = states[WORKERS_STATE]["ItemProcessor"]["States"][WORK_STATE]
    merge_slice = states[SLICES_STATE]["ItemProcessor"]["States"][MERGE_SLICE_STATE]
    deployed_tries = {
        name: 1 + _retriers(task)[("States.TaskFailed",)]["MaxAttempts"]
        for name, task in (("work", work), ("merge_slice", merge_slice))
    }
    # When the local stack's state machine runs a worker and a slice that always fail
    container = _FailingSteps()
    answer = LocalStateMachine([container]).invoke({"trigger": "manual"})  # type: ignore[list-item]
    # Then each is tried exactly as often as in AWS, and the run still reaches Finish
    assert container.tries == deployed_tries and min(deployed_tries.values()) >= 2
    assert answer["status"] == "failed"
