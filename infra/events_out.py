"""Events out: every recorded hit onto the ``msgtrack`` EventBridge bus and to the webhooks that want it.

Built from engines, not a polling loop: the raw-events table's DynamoDB stream triggers the events-out
function (an event source mapping; a batch that keeps failing is bisected, then its position goes to
a failure queue), which holds each message's hits on the held-events queue, delayed by the burst
window; that queue triggers the held-events publisher, which judges the hits against their message's
honeypot hits (one Query of the raw-events table), puts each hit's LOG on the bus and one message per
subscribed webhook on the delivery queue (a held message failed five times goes to its dead letters);
that queue triggers the webhook deliverer, which signs and POSTs each message and
puts a failed one back on the queue with the backoff as its delay. After 24 hours of failures a
delivery goes to the webhook dead-letter queue (as does a message the deliverer could not process five
times). Alarms: anything dead-lettered, the dead-letter metric, a stream batch or held message given up,
and the stream falling behind.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.events.clients import BUS_ENV, DEAD_LETTER_QUEUE_ENV, DELIVERY_QUEUE_ENV, HELD_QUEUE_ENV
from functions.events.publish import BATCHING_WINDOW_SECONDS
from functions.shared.metric_names import MetricNames
from functions.shared.models import SETTINGS_PK, WEBHOOKS_PK
from functions.shared.tables import DELIVERIES, RAW_EVENTS, TRACKED_URLS, WORKFLOW
from functions.shared.webhooks import WEBHOOK_KEY_SECRET_ENV
from infra.constants import (
    DEAD_LETTER_RETENTION,
    EVENTS_OUT_MEMORY_MB,
    EVENTS_OUT_TIMEOUT,
    STREAM_BATCH_SIZE,
    STREAM_MAX_RECORD_AGE,
    STREAM_RETRY_ATTEMPTS,
    WEBHOOK_DELIVERER_MEMORY_MB,
    WEBHOOK_DELIVERER_TIMEOUT,
    WEBHOOK_KEY_LENGTH,
    WEBHOOK_MAX_RECEIVES,
    WEBHOOK_STREAM_LAG_ALARM,
)
from infra.function import MsgtrackFunction
from infra.monitoring import custom_metric
from infra.secrets import hand_rotated_secret
from infra.storage import Storage

FAST_PERIOD = Duration.minutes(5)


class EventsOut(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, code: lambda_.Code, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus", event_bus_name=Stack.of(self).stack_name)
        self.webhook_key = self._build_webhook_key()
        self.deliveries, self.dead_letters = self._consumed_queue(
            "WebhookDeliveries", "WebhookDeadLetters", WEBHOOK_DELIVERER_TIMEOUT
        )
        self.stream_failures = self._queue("StreamFailures", retention=DEAD_LETTER_RETENTION)
        Validations.of(self.stream_failures).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself a dead-letter queue: the stream positions of raw-event batches "
                "events out gave up on; an alarm watches its depth and nothing consumes it automatically.",
            )
        )
        # Each stream batch's hits wait here for their burst window (the message's delay), then are judged.
        self.held, self.held_dead_letters = self._consumed_queue(
            "HeldEvents", "HeldEventsDeadLetters", EVENTS_OUT_TIMEOUT
        )
        self.publisher = self._build_publisher(code, storage)
        self.held_publisher = self._build_held_publisher(code, storage)
        self.deliverer = self._build_deliverer(code, storage)
        self.alarms = self._build_alarms()

    # --- resources ------------------------------------------------------------------------------

    def _build_webhook_key(self) -> secretsmanager.Secret:
        return hand_rotated_secret(
            self,
            "WebhookKey",
            description="msgtrack webhook key: every webhook's signing secret is derived from it",
            length=WEBHOOK_KEY_LENGTH,
            why_by_hand="Rotated by hand on purpose: every webhook's secret is derived from this key, so a "
            "new key changes every receiver's secret at once; the README says how to re-register them.",
        )

    def _consumed_queue(
        self, construct_id: str, dead_letters_id: str, consumer_timeout: Duration
    ) -> tuple[sqs.Queue, sqs.Queue]:
        """A queue a function consumes, and the dead letters of a message it failed five times."""
        dead_letters = self._queue(dead_letters_id, retention=DEAD_LETTER_RETENTION)
        queue = self._queue(
            construct_id,
            # Lambda's advice for a queue it consumes: six times the function's timeout.
            visibility_timeout=Duration.seconds(consumer_timeout.to_seconds() * 6),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=WEBHOOK_MAX_RECEIVES, queue=dead_letters),
        )
        return queue, dead_letters

    def _queue(
        self,
        construct_id: str,
        *,
        retention: Duration | None = None,
        visibility_timeout: Duration | None = None,
        dead_letter_queue: sqs.DeadLetterQueue | None = None,
    ) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=retention,
            visibility_timeout=visibility_timeout,
            dead_letter_queue=dead_letter_queue,
        )
        return queue

    def _build_publisher(self, code: lambda_.Code, storage: Storage) -> MsgtrackFunction:
        handler = self._build_function(
            "Publisher",
            code,
            name="events_out",
            description="msgtrack events out: each new raw event held for its honeypot burst window",
        )
        function = handler.function
        # The burst window in force: the machine-detection settings item only.
        storage.grant(function, DELIVERIES, ("dynamodb:GetItem",), leading_keys=(SETTINGS_PK,))
        self._grant_send(function, self.held, HELD_QUEUE_ENV)
        function.add_event_source(
            sources.DynamoEventSource(
                storage.table(RAW_EVENTS),
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=STREAM_BATCH_SIZE,
                max_batching_window=Duration.seconds(BATCHING_WINDOW_SECONDS),
                bisect_batch_on_error=True,
                retry_attempts=STREAM_RETRY_ATTEMPTS,
                max_record_age=STREAM_MAX_RECORD_AGE,
                on_failure=sources.SqsDlq(self.stream_failures),
            )
        )
        policy = handler.role.node.try_find_child("DefaultPolicy")
        assert policy is not None  # the grants above made it
        Validations.of(policy).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="dynamodb:ListStreams, which Lambda's stream event source mapping needs, has no "
                "resource-level permission (AWS's own AWSLambdaDynamoDBExecutionRole grants it on *); every "
                "other stream action is granted on the raw-events table's stream alone.",
            )
        )
        return handler

    def _build_held_publisher(self, code: lambda_.Code, storage: Storage) -> MsgtrackFunction:
        handler = self._build_function(
            "HeldPublisher",
            code,
            name="events_held",
            description="msgtrack events out: held raw events, judged by the honeypot rule, to the bus and "
            "to their webhooks' queue",
        )
        function = handler.function
        storage.grant(function, RAW_EVENTS, ("dynamodb:Query",))  # a message's honeypot hits
        storage.grant(function, TRACKED_URLS, ("dynamodb:GetItem",))
        storage.grant(function, WORKFLOW, ("dynamodb:Query",), leading_keys=(WEBHOOKS_PK,))
        self.bus.grant_put_events_to(function)
        function.add_environment(BUS_ENV, self.bus.event_bus_name)
        self._grant_send(function, self.deliveries, DELIVERY_QUEUE_ENV)
        self._consume(function, self.held)
        return handler

    def _build_deliverer(self, code: lambda_.Code, storage: Storage) -> MsgtrackFunction:
        handler = self._build_function(
            "Deliverer",
            code,
            name="webhook_deliverer",
            description="msgtrack webhook deliverer: signs and POSTs each delivery, retries with backoff",
            memory_size=WEBHOOK_DELIVERER_MEMORY_MB,
            timeout=WEBHOOK_DELIVERER_TIMEOUT,
        )
        function = handler.function
        storage.grant(
            function, WORKFLOW, ("dynamodb:GetItem", "dynamodb:UpdateItem"), leading_keys=(WEBHOOKS_PK,)
        )
        self._grant_webhook_key(function)
        # A retry is a new message on the queue it came from; a delivery given up goes to the dead letters.
        self._grant_send(function, self.deliveries, DELIVERY_QUEUE_ENV)
        self._grant_send(function, self.dead_letters, DEAD_LETTER_QUEUE_ENV)
        self._consume(function, self.deliveries)
        return handler

    def _build_function(
        self,
        construct_id: str,
        code: lambda_.Code,
        *,
        name: str,
        description: str,
        memory_size: int = EVENTS_OUT_MEMORY_MB,
        timeout: Duration = EVENTS_OUT_TIMEOUT,
    ) -> MsgtrackFunction:
        """One of events out's functions; the publishers' size unless told otherwise."""
        return MsgtrackFunction(
            self,
            construct_id,
            code=code,
            name=name,
            description=description,
            memory_size=memory_size,
            timeout=timeout,
        )

    @staticmethod
    def _grant_send(function: lambda_.Function, queue: sqs.Queue, url_env: str) -> None:
        """Let ``function`` send to ``queue``, and tell it the queue's URL in ``url_env``."""
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[queue.queue_arn])
        )
        function.add_environment(url_env, queue.queue_url)

    @staticmethod
    def _consume(function: lambda_.Function, queue: sqs.Queue) -> None:
        """``queue`` triggers ``function``, ten messages at most a batch, failures reported one by one."""
        function.add_event_source(
            sources.SqsEventSource(queue, batch_size=10, report_batch_item_failures=True)
        )

    def _grant_webhook_key(self, function: lambda_.Function) -> None:
        self.webhook_key.grant_read(function)
        function.add_environment(WEBHOOK_KEY_SECRET_ENV, self.webhook_key.secret_arn)

    def grant_webhook_admin(self, function: lambda_.Function, storage: Storage) -> None:
        """Let the API function register, list and delete webhooks (their partition of the workflow
        table only) and derive a new webhook's secret to show it once."""
        storage.grant(
            function,
            WORKFLOW,
            ("dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem"),
            leading_keys=(WEBHOOKS_PK,),
        )
        self._grant_webhook_key(function)

    # --- alarms -------------------------------------------------------------------------------

    def _build_alarms(self) -> dict[str, cloudwatch.Alarm]:
        stream_age = cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name="IteratorAge",
            dimensions_map={"FunctionName": self.publisher.function.function_name},
            statistic="Maximum",
            period=FAST_PERIOD,
        )
        return {
            "WebhookDeliveriesDeadLettered": self._alarm(
                "WebhookDeliveriesDeadLettered",
                custom_metric(MetricNames.WEBHOOK_DEAD_LETTERS, FAST_PERIOD),
                1,
                "A webhook delivery failed for 24 hours and was given up: GET /api/webhooks shows which "
                "webhook (last_error, failing_since); the message is in the webhook dead-letter queue.",
            ),
            "WebhookDeadLetterQueueNotEmpty": self._queue_alarm(
                "WebhookDeadLetterQueueNotEmpty",
                self.dead_letters,
                "Webhook deliveries wait in the dead-letter queue: replay them onto the delivery queue once "
                "the receiver is fixed, or purge them.",
            ),
            "EventsOutBatchGivenUp": self._queue_alarm(
                "EventsOutBatchGivenUp",
                self.stream_failures,
                "The events-out function gave up on a batch of the raw-events stream: those hits are in "
                "the reports but were not published; the failure queue names the stream positions.",
            ),
            "EventsOutHeldGivenUp": self._queue_alarm(
                "EventsOutHeldGivenUp",
                self.held_dead_letters,
                "The held-events publisher failed a message five times: those hits are in the reports but "
                "were not published; the message is in the held-events dead-letter queue, to replay.",
            ),
            "EventsOutFallingBehind": self._alarm(
                "EventsOutFallingBehind",
                stream_age,
                WEBHOOK_STREAM_LAG_ALARM.to_milliseconds(),
                "Events out is behind the raw-events stream: webhooks and bus events are late.",
            ),
        }

    def _queue_alarm(self, construct_id: str, queue: sqs.Queue, description: str) -> cloudwatch.Alarm:
        """An alarm as soon as ``queue`` holds a message (dead letters, given-up batches)."""
        depth = queue.metric_approximate_number_of_messages_visible(period=FAST_PERIOD, statistic="Maximum")
        return self._alarm(construct_id, depth, 1, description)

    def _alarm(
        self, construct_id: str, metric: cloudwatch.Metric, threshold: float, description: str
    ) -> cloudwatch.Alarm:
        return metric.create_alarm(
            self,
            construct_id,
            alarm_name=f"{Stack.of(self).stack_name}-{construct_id}",
            alarm_description=description,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def notify(self, topic: sns.ITopic) -> None:
        """Send every alarm of events out to the operators' topic."""
        for alarm in self.alarms.values():
            alarm.add_alarm_action(actions.SnsAction(topic))
