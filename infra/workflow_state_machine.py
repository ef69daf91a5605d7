"""The tracking workflow's state machine (Step Functions): Plan, a Map of workers, Close, a Map of the
merge's slices, Finish.

Every step invokes the consolidation function synchronously with a ``step`` that says what to do
(``functions/consolidate/handler.py`` reads it):

- Plan ``{"step": "plan", "run_id"?, "trigger"?}`` -> ``{"run_id", "trigger", "skip", "groups"}``:
  takes the lock and splits the raw-event shards into groups, one per worker. ``skip`` (another run
  holds the lock, say) ends the execution at once, successfully.
- Work, once per group, in parallel ``{"step": "work", "run_id", "worker", "shards"}`` ->
  ``{"worker", "shards", "events_processed", "status", "error"?, "errors"?, "quarantined"?, "more",
  "next_shard"?}``; retried on Lambda's service errors and once on a failure of the function itself. A worker that stopped
  at its invocation's time limit with its group not drained, before the run's deadline (``more``), is
  invoked again for the same group (Work on): it goes on from its checkpoints at the shard after the
  last one it read (``next_shard``), carrying its notes (``errors``); its events and its count of
  quarantined items add up in its slot of the workflow table. So a run's workers have the run's whole budget
  (MSGTRACK_RUN_BUDGET_SECONDS), not one invocation each.
- Close ``{"step": "close", "run_id"}`` -> ``{"run_id", "slices"}``: closes the run for its workers;
  then each slice, in parallel, ``{"step": "merge_slice", "run_id", "slice"}``, retried like a worker;
  a slice (or Close) that still fails is left to Finish, which merges whatever no slice merged.
- Finish ``{"step": "finish", "run_id", "workers", "error"?}`` -> ``{"run_id", "status",
  "events_processed"}``: records the run. ``workers`` holds the results of the workers that returned;
  ``error`` (``{"Error", "Cause"}``, as Step Functions reports it) that of a worker that still failed
  after its retries. So the run is recorded failed, and what it left pending is replayed by the next
  one. Then the execution fails too (``RunFailed``), which the alarm watches.

A failed worker is caught inside its own iteration, not by the Map: the Map, and so Finish, which
releases the lock, waits until every worker has returned. (A Map that fails stops waiting for its
other iterations, while their Lambda invocations run on.) The Map's own catch sends anything else that
fails it to Finish the same way.

The definition is JSONata: a field whose value is missing (``run_id`` of a scheduled start, ``error``
of a run without one) is left out of the event rather than failing the state.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.constants import (
    CLOSE_STATE,
    FAILED_STATE,
    FINISH_STATE,
    LAMBDA_SERVICE_ERRORS,
    LOG_RETENTION,
    MERGE_SLICE_STATE,
    MERGE_SLICES,
    MORE_WORK_CHOICE,
    NOTHING_TO_DO_STATE,
    OUTCOME_CHOICE,
    PLAN_STATE,
    RETRY_BACKOFF_RATE,
    RUN_FAILED_ERROR,
    SERVICE_ERROR_RETRY_ATTEMPTS,
    SERVICE_ERROR_RETRY_INTERVAL,
    SERVICE_ERROR_RETRY_MAX_DELAY,
    SKIP_CHOICE,
    SLICE_FAILED_STATE,
    SLICES_STATE,
    STATE_MACHINE_COMMENT,
    STATE_MACHINE_TIMEOUT,
    SUCCEEDED_STATE,
    WORK_ON_STATE,
    WORK_STATE,
    WORKER_DONE_STATE,
    WORKER_FAILED_STATE,
    WORKER_RETRY_ATTEMPTS,
    WORKER_RETRY_INTERVAL,
    WORKERS_STATE,
)

# The events each step sends, and what the states pass on (JSONata; an object constructor leaves out
# a key whose value is missing).
# A scheduled start names no run: its id comes from the execution (its start time, sortable like the
# API's ids, and the execution's name), so a Plan retried after a Lambda service error asks for the same
# run and gets the same plan instead of finding the first attempt's lock and skipping.
PLAN_EVENT = (
    '{% {"step": "plan", "run_id": $exists($states.input.run_id) ? $states.input.run_id : '
    '$replace($states.context.Execution.StartTime, /[-:.]/, "") & "-" & '
    '$substring($states.context.Execution.Name, 0, 6), "trigger": $states.input.trigger} %}'
)
WORK_EVENT = {
    "step": "work",
    "run_id": "{% $states.input.run_id %}",
    "worker": "{% $states.context.Map.Item.Value.worker %}",
    "shards": "{% $states.context.Map.Item.Value.shards %}",
}
# A worker's result, with its run for the next invocation if it has more to do.
WORK_DONE = '{% $merge([$states.result, {"run_id": $states.input.run_id}]) %}'
MORE_WORK = "{% $states.input.more = true %}"
# The same group again, with what the worker noted so far and the shard its rounds go on at (a missing
# field is left out). Not its count of quarantined items: its slot holds it (an older execution's input
# that still carries one is accepted, and the count ignored).
WORK_ON_EVENT = (
    '{% {"step": "work", "run_id": $states.input.run_id, "worker": $states.input.worker, '
    '"shards": $states.input.shards, "errors": $states.input.errors, '
    '"next_shard": $states.input.next_shard} %}'
)
# A worker that still fails after its retries returns its error in place of a result.
WORKER_FAILURE = '{% {"failure": $states.errorOutput} %}'
# The results of the workers that returned, and the first failure if any ($append: always a list).
WORKERS_DONE = """{% (
  $failures := $states.result[$exists(failure)];
  {
    "run_id": $states.input.run_id,
    "workers": $append([], $states.result[$not($exists(failure))]),
    "error": $failures[0].failure
  }
) %}"""
MAP_FAILED = '{% {"run_id": $states.input.run_id, "workers": [], "error": $states.errorOutput} %}'
CLOSE_EVENT = '{% {"step": "close", "run_id": $states.input.run_id} %}'
CLOSED = '{% $merge([$states.input, {"slices": $states.result.slices}]) %}'  # Finish's input, and the slices
SLICE_EVENT = {
    "step": "merge_slice",
    "run_id": "{% $states.input.run_id %}",
    "slice": "{% $states.context.Map.Item.Value.slice %}",
}
UNCHANGED_INPUT = "{% $states.input %}"  # what Finish reads (run_id, workers, error) goes on past the slices
FINISH_EVENT = (
    '{% {"step": "finish", "run_id": $states.input.run_id, "workers": $states.input.workers, '
    '"error": $states.input.error} %}'
)
RUN_FAILED_CAUSE = (
    "{% 'run ' & $states.input.run_id & ' failed: its errors are in GET /api/workflows/tracking, "
    "the failed step in this execution history' %}"
)

# Step Functions' own log delivery (vended logs): CloudWatch Logs gives these actions no resource
# to name, so they are granted on "*". The role can do nothing else with them than set up delivery.
LOG_DELIVERY_ACTIONS = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)


class WorkflowStateMachine(Construct):
    """The state machine, its role (it may invoke the consolidation function and nothing else) and
    its log group."""

    def __init__(
        self, scope: Construct, construct_id: str, *, function: lambda_.IFunction, workers: int
    ) -> None:
        super().__init__(scope, construct_id)
        self._function = function
        self._workers = workers
        self.role = self._build_role()
        self.log_group = logs.LogGroup(self, "Logs", retention=LOG_RETENTION)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment=STATE_MACHINE_COMMENT,
            definition_body=sfn.DefinitionBody.from_chainable(self._build_definition()),
            query_language=sfn.QueryLanguage.JSONATA,
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=STATE_MACHINE_TIMEOUT,
            # The role is complete as built: grants CDK would add (every version of the function,
            # X-Ray) are not wanted.
            role=self.role.without_policy_updates(),
            # ALL: a run makes a few dozen events (one per state), and what they carry is run ids,
            # shard names, counts and errors, no personal data.
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=False,
        )
        # On the resource itself: the schedule's role, added under the state machine later, is no concern of it.
        resource = self.state_machine.node.default_child
        assert resource is not None
        Validations.of(resource).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SF2",
                reason="No X-Ray on purpose: msgtrack's functions do not trace (functions/shared/observability.py: "
                "import time for little insight), so a trace of this state machine would hold three Lambda spans "
                "with nothing under them; the execution history already times every state.",
            )
        )

    def _build_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="msgtrack tracking workflow state machine",
        )
        # The unqualified function only (the task's own grant would add every version and alias).
        role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self._function.function_arn])
        )
        role.add_to_policy(iam.PolicyStatement(actions=list(LOG_DELIVERY_ACTIONS), resources=["*"]))
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Step Functions delivers its execution logs through CloudWatch Logs' log delivery API, "
                "whose actions (CreateLogDelivery, PutResourcePolicy, ...) support no resource-level permission; "
                "the role's only other permission is invoking the one consolidation function.",
            )
        )
        return role

    # --- the definition ---------------------------------------------------------------------

    def _invoke(
        self, construct_id: str, payload: sfn.TaskInput, comment: str, outputs: str | None = None
    ) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke.jsonata(
            self,
            construct_id,
            lambda_function=self._function,
            payload=payload,
            payload_response_only=True,
            retry_on_service_exceptions=False,  # added below, with throttling and jitter
            comment=comment,
            outputs=outputs,
        )
        task.add_retry(
            errors=list(LAMBDA_SERVICE_ERRORS),
            max_attempts=SERVICE_ERROR_RETRY_ATTEMPTS,
            interval=SERVICE_ERROR_RETRY_INTERVAL,
            backoff_rate=RETRY_BACKOFF_RATE,
            max_delay=SERVICE_ERROR_RETRY_MAX_DELAY,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return task

    def _map_item(
        self,
        construct_id: str,
        comment: str,
        failed: sfn.Pass,
        caught: str | None = None,
        outputs: str | None = None,
    ) -> tasks.LambdaInvoke:
        """A Map iteration's invoke of its item: tried once more when the function fails, then caught
        inside the iteration (so the Map waits for every other one), with ``caught`` as its output."""
        task = self._invoke(construct_id, sfn.TaskInput.from_text("{% $states.input %}"), comment, outputs)
        task.add_retry(
            errors=[sfn.Errors.TASKS_FAILED],
            max_attempts=WORKER_RETRY_ATTEMPTS,
            interval=WORKER_RETRY_INTERVAL,
            backoff_rate=RETRY_BACKOFF_RATE,
        )
        task.add_catch(failed, errors=[sfn.Errors.ALL], outputs=caught)
        return task

    def _build_definition(self) -> sfn.IChainable:
        plan = self._invoke(
            PLAN_STATE,
            sfn.TaskInput.from_text(PLAN_EVENT),
            "Take the lock, list the pending work and split the shards into one group per worker",
        )
        work = self._map_item(
            WORK_STATE,
            "Consolidate one group of shards, until the invocation's or the run's time is up",
            sfn.Pass.jsonata(self, WORKER_FAILED_STATE, comment="Hand the error to Finish"),
            caught=WORKER_FAILURE,
            outputs=WORK_DONE,
        )
        workers = sfn.Map.jsonata(
            self,
            WORKERS_STATE,
            items=sfn.ProvideItems.jsonata("{% $states.input.groups %}"),
            item_selector=WORK_EVENT,
            max_concurrency=self._workers,
            outputs=WORKERS_DONE,
            comment="One worker per group, all at once",
        )
        work_on = sfn.Pass.jsonata(
            self,
            WORK_ON_STATE,
            outputs=WORK_ON_EVENT,
            comment="Invoke the worker again for the same group: it goes on from its checkpoints",
        )
        more = (
            sfn.Choice.jsonata(self, MORE_WORK_CHOICE)
            .when(sfn.Condition.jsonata(MORE_WORK), work_on.next(work))
            .otherwise(sfn.Succeed.jsonata(self, WORKER_DONE_STATE))
        )
        workers.item_processor(work.next(more))
        finish = self._invoke(
            FINISH_STATE,
            sfn.TaskInput.from_text(FINISH_EVENT),
            "Record the run (succeeded, or failed with the error), release the lock, publish metrics",
        )
        workers.add_catch(finish, errors=[sfn.Errors.ALL], outputs=MAP_FAILED)
        slices = self._build_slices(finish)
        outcome = (
            sfn.Choice.jsonata(self, OUTCOME_CHOICE)
            .when(
                sfn.Condition.jsonata("{% $states.input.status = 'failed' %}"),
                sfn.Fail.jsonata(self, FAILED_STATE, error=RUN_FAILED_ERROR, cause=RUN_FAILED_CAUSE),
            )
            .otherwise(sfn.Succeed.jsonata(self, SUCCEEDED_STATE))
        )
        skip = (
            sfn.Choice.jsonata(self, SKIP_CHOICE)
            .when(
                sfn.Condition.jsonata("{% $states.input.skip = true %}"),
                sfn.Succeed.jsonata(
                    self, NOTHING_TO_DO_STATE, comment="The plan says skip: another run holds the lock"
                ),
            )
            .otherwise(workers.next(slices).next(finish).next(outcome))
        )
        return plan.next(skip)

    def _build_slices(self, finish: tasks.LambdaInvoke) -> sfn.Chain:
        """Close, then the merge's slices side by side. A slice that still fails after its retries
        (or a failed Close) is left to Finish, which merges any slice not merged yet: the run does
        not fail for it unless Finish does."""
        close = self._invoke(
            CLOSE_STATE,
            sfn.TaskInput.from_text(CLOSE_EVENT),
            "Close the run for its workers, apply what they left pending, list the slices of the merge",
            outputs=CLOSED,
        )
        close.add_catch(finish, errors=[sfn.Errors.ALL], outputs=UNCHANGED_INPUT)
        merge_slice = self._map_item(
            MERGE_SLICE_STATE,
            "Merge one slice of the workers' partial items (persons, URL rows, hours, click streams)",
            sfn.Pass.jsonata(self, SLICE_FAILED_STATE, comment="Finish merges this slice itself"),
        )
        slices = sfn.Map.jsonata(
            self,
            SLICES_STATE,
            items=sfn.ProvideItems.jsonata("{% $states.input.slices %}"),
            item_selector=SLICE_EVENT,
            max_concurrency=MERGE_SLICES,
            outputs=UNCHANGED_INPUT,
            comment="One invoke per slice of the merge, all at once",
        )
        slices.item_processor(merge_slice)
        slices.add_catch(finish, errors=[sfn.Errors.ALL], outputs=UNCHANGED_INPUT)
        return sfn.Chain.start(close.next(slices))
