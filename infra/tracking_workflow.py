"""The tracking workflow: the consolidation function, the state machine that runs it, its EventBridge
schedule and its dead letters.

The function turns raw events into tracking logs and indicators (the only writer of both), first
putting back into the raw-events table what the redirect left in the fallback queue, and records each
run in the workflow table. A run is an execution of the state machine (``workflow_state_machine.py``):
plan, one invoke of the function per group of shards in parallel, finish. EventBridge starts it on the
schedule; the API starts it on demand (``states:StartExecution``). A scheduled start EventBridge could
not deliver lands in the dead-letter queue (the next run catches up on the events anyway).
"""

from __future__ import annotations

from datetime import timedelta

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.shared.tables import DELIVERIES, INDICATORS, RAW_EVENTS, TRACKED_URLS, TRACKING_LOGS, WORKFLOW
from infra.constants import (
    DEAD_LETTER_RETENTION,
    RUN_BUDGET,
    RUN_LOCK,
    SCHEDULE_MAX_EVENT_AGE,
    SCHEDULE_RETRY_ATTEMPTS,
    WORKFLOW_MEMORY_MB,
    WORKFLOW_TIMEOUT,
)
from infra.function import MsgtrackFunction
from infra.storage import READ, WRITE, Storage
from infra.workflow_state_machine import WorkflowStateMachine
from local.scheduler import ScheduleError, parse_rate

# Reports refreshed less than daily are stale; this also keeps the missed-run alarm's two periods
# well within CloudWatch's evaluation range.
LONGEST_SCHEDULE = timedelta(days=1)


def schedule_period(schedule: str) -> Duration:
    """The period of a ``rate(...)`` schedule, the form the local stack runs too."""
    if schedule.strip().startswith("cron("):
        raise ScheduleError(
            f"context value 'schedule': {schedule!r} is a cron expression; msgtrack runs on "
            "rate(N minutes|hours|days), whose period the missed-run alarm watches"
        )
    try:
        period = parse_rate(schedule)
    except ScheduleError as error:
        raise ScheduleError(f"context value 'schedule': {error}") from error
    if period > LONGEST_SCHEDULE:
        raise ScheduleError(f"context value 'schedule': {schedule!r} is longer than one day")
    return Duration.seconds(period.total_seconds())


class TrackingWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        storage: Storage,
        schedule: str,
        workers: int,
    ) -> None:
        """``workers``: how many groups of shards a run consolidates in parallel."""
        super().__init__(scope, construct_id)
        self.schedule = schedule
        self.workers = workers
        self.period = schedule_period(schedule)
        self.dead_letters = self._build_dead_letter_queue()
        self.handler = MsgtrackFunction(
            self,
            "Consolidate",
            code=code,
            name="consolidate",
            description="msgtrack tracking workflow: raw events to tracking logs and indicators",
            memory_size=WORKFLOW_MEMORY_MB,
            timeout=WORKFLOW_TIMEOUT,
        )
        self.function = self.handler.function
        self.function.add_environment("MSGTRACK_WORKFLOW_WORKERS", str(workers))
        self.function.add_environment("MSGTRACK_RUN_LOCK_SECONDS", str(int(RUN_LOCK.to_seconds())))
        self.function.add_environment("MSGTRACK_RUN_BUDGET_SECONDS", str(int(RUN_BUDGET.to_seconds())))
        for spec in (TRACKED_URLS, DELIVERIES):
            storage.grant(self.function, spec, READ)
        # Raw events from the fallback queue go back into their table, the very items the redirect made;
        # BatchWriteItem deletes a recipient's raw events when they ask to be erased.
        storage.grant(self.function, RAW_EVENTS, (*READ, "dynamodb:PutItem", "dynamodb:BatchWriteItem"))
        storage.grant_fallback_drain(self.function)
        # An erasure finds the recipient's logs through their states (indicators), with no index.
        for spec in (TRACKING_LOGS, INDICATORS, WORKFLOW):
            storage.grant(self.function, spec, READ + WRITE)
        self.machine = WorkflowStateMachine(self, "Run", function=self.function, workers=workers)
        self.state_machine = self.machine.state_machine
        self.rule = self._build_rule()

    def grant_start(self, grantee: iam.IGrantable) -> None:
        """May start a run: ``states:StartExecution`` on this state machine, nothing else."""
        self.state_machine.grant_start_execution(grantee)

    def _build_dead_letter_queue(self) -> sqs.Queue:
        # SQS-managed encryption: EventBridge cannot send to a queue encrypted with the aws/sqs KMS key.
        queue = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
        )
        Validations.of(queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself a dead-letter queue: the schedule's EventBridge target drops here "
                "the starts it could not deliver (a target's DeadLetterConfig, which cdk-nag does not count as "
                "one); nothing reads it, an operator purges it after a re-run.",
            )
        )
        return queue

    def _build_rule(self) -> events.Rule:
        rule = events.Rule(
            self,
            "Schedule",
            description="msgtrack: run the tracking workflow",
            schedule=events.Schedule.expression(self.schedule),
        )
        rule.add_target(
            targets.SfnStateMachine(
                self.state_machine,
                input=events.RuleTargetInput.from_object({"trigger": "schedule"}),
                retry_attempts=SCHEDULE_RETRY_ATTEMPTS,
                max_event_age=SCHEDULE_MAX_EVENT_AGE,
                dead_letter_queue=self.dead_letters,
            )
        )
        return rule
