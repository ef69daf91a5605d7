"""Names and numbers of the AWS deployment, kept in one place so constructs and tests agree."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_logs as logs

# The facts the local stack shares with the deploy live where both can import them without the CDK.
from functions.consolidate.config import WORKER_RETRY_ATTEMPTS as WORKER_RETRY_ATTEMPTS
from functions.consolidate.config import WORKFLOW_TIMEOUT_SECONDS as WORKFLOW_TIMEOUT_SECONDS

REPO_ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = REPO_ROOT / "functions"
PYPROJECT = REPO_ROOT / "pyproject.toml"

STACK_NAME = "msgtrack"

# --- context values (cdk.json or `cdk deploy -c name=value`) ------------------------------------

SCHEDULE_CONTEXT = "schedule"
TRACKING_DOMAIN_CONTEXT = "tracking_domain"
CERTIFICATE_ARN_CONTEXT = "certificate_arn"
ALARM_EMAIL_CONTEXT = "alarm_email"
WORKFLOW_WORKERS_CONTEXT = "workflow_workers"
RAW_EVENT_SHARDS_CONTEXT = "raw_event_shards"
# Only for the one-off storage migration (README "Upgrading"): grant the consolidation function what its
# ``migrate`` step needs, on the indicators table and the retained tracking-logs table so named.
MIGRATION_CONTEXT = "migration"
MIGRATION_OLD_LOGS_TABLE_CONTEXT = "migration_old_logs_table"
DEFAULT_SCHEDULE = "rate(1 hour)"

# --- Lambda -----------------------------------------------------------------------------------

# The runtime and the wheels bundled for it must move together: pip is told this version.
PYTHON_VERSION = "3.12"
PIP_PLATFORM = "manylinux2014_aarch64"  # arm64 (Graviton) functions
HANDLERS = {
    "redirect": "functions.redirect.handler.lambda_handler",
    "consolidate": "functions.consolidate.handler.lambda_handler",
    "api": "functions.api.handler.lambda_handler",
    "events_out": "functions.events.handler.publish_handler",
    "events_held": "functions.events.handler.publish_held_handler",
    "webhook_deliverer": "functions.events.handler.deliver_handler",
    "exports": "functions.exports.handler.lambda_handler",
}
# A recipient waits on the redirect: more memory buys more CPU and a shorter cold start.
REDIRECT_MEMORY_MB = 512
REDIRECT_TIMEOUT = Duration.seconds(10)
API_MEMORY_MB = 1024
API_TIMEOUT = Duration.seconds(29)  # an HTTP API integration gives up after 30 s
WORKFLOW_MEMORY_MB = 1024
# Concurrency, out of the account's regional limit (1,000 by default; Lambda keeps 100 unreserved).
# The redirect is guaranteed its reservation, which nothing else in the account can take: at a few
# tens of milliseconds a click, 200 executions serve several times the stage's 2,000-request burst.
# The API is held to its reservation, so a flood of report calls (each bounded: render budget, 29 s)
# queues behind itself and never takes an execution a click needs. The workflow (one run at a time)
# uses the unreserved pool.
REDIRECT_RESERVED_CONCURRENCY = 200
API_RESERVED_CONCURRENCY = 20
# Context values override them; 0 reserves nothing (an account whose limit is below their sum + 100,
# new accounts often start at 10, cannot deploy the reservations until Service Quotas raises it).
REDIRECT_RESERVED_CONCURRENCY_CONTEXT = "redirect_reserved_concurrency"
API_RESERVED_CONCURRENCY_CONTEXT = "api_reserved_concurrency"
ACCOUNT_CONCURRENCY_LIMIT = 1_000  # Lambda's default; the reservations need at least their sum + 100
# Each step of a run (one invocation), Lambda's maximum (WORKFLOW_TIMEOUT_SECONDS, shared with the local
# stack and figure 11): the workflow watches its remaining time.
WORKFLOW_TIMEOUT = Duration.seconds(WORKFLOW_TIMEOUT_SECONDS)

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
LOG_LEVEL = "INFO"
# Powertools: every function logs and measures under one service; the alarms and dashboard read
# the custom metrics (functions.shared.observability.MetricNames) with this namespace and dimension.
SERVICE_NAME = "msgtrack"
METRICS_NAMESPACE = "msgtrack"
SERVICE_DIMENSION = "service"

# --- HTTP API ---------------------------------------------------------------------------------

# Each public tracking route key (GET and HEAD of /r, /o, /w) has its own limit, so no flood of the
# report API or the health check can make API Gateway refuse a click; /api, /health and the dashboard
# share the stage's default, lower one. Steady requests per second and burst; the account's own
# API Gateway quota (10,000 requests per second per region by default) caps their sum.
TRACKING_RATE_LIMIT = 1000
TRACKING_BURST_LIMIT = 2000
API_RATE_LIMIT = 50
API_BURST_LIMIT = 100
TRACKING_RATE_LIMIT_CONTEXT = "tracking_rate_limit"
TRACKING_BURST_LIMIT_CONTEXT = "tracking_burst_limit"
API_RATE_LIMIT_CONTEXT = "api_rate_limit"
API_BURST_LIMIT_CONTEXT = "api_burst_limit"

# --- raw-event fallback queue --------------------------------------------------------------------

FALLBACK_RETENTION = Duration.days(14)  # SQS's longest: room for many failed workflow runs
# A drained message is deleted within seconds of its receipt; if the run dies first, it comes back
# after this long, and putting the same raw-event item twice is harmless.
FALLBACK_VISIBILITY_TIMEOUT = Duration.minutes(2)

# --- tracking workflow ------------------------------------------------------------------------

# EventBridge delivering the scheduled start to the state machine (throttling, service errors); what
# it still cannot deliver waits in the dead-letter queue.
SCHEDULE_RETRY_ATTEMPTS = 4
SCHEDULE_MAX_EVENT_AGE = Duration.hours(1)
DEAD_LETTER_RETENTION = Duration.days(14)

# The state machine (Step Functions, standard workflow): Plan -> a Map of workers -> Finish, each
# step one synchronous invoke of the consolidation function (functions.consolidate.handler).
STATE_MACHINE_COMMENT = "msgtrack tracking workflow: plan the run, consolidate each group of shards, finish"
PLAN_STATE = "Plan"
SKIP_CHOICE = "Anything to do?"
NOTHING_TO_DO_STATE = "Nothing to do"
WORKERS_STATE = "Workers"
WORK_STATE = "Work"
WORKER_FAILED_STATE = "Worker failed"
MORE_WORK_CHOICE = "More to do?"
WORK_ON_STATE = "Work on"
WORKER_DONE_STATE = "Worker done"
FINISH_STATE = "Finish"
# Between the workers and Finish: Close, then a Map of the merge's slices (README "Scale-out").
CLOSE_STATE = "Close"
SLICES_STATE = "Merge slices"
MERGE_SLICE_STATE = "Merge slice"
SLICE_FAILED_STATE = "Slice left to Finish"
MERGE_SLICES = 16  # functions.consolidate.store.PARTIAL_SPREAD: the Map's MaxConcurrency
OUTCOME_CHOICE = "Run succeeded?"
SUCCEEDED_STATE = "Run succeeded"
FAILED_STATE = "Run failed"
RUN_FAILED_ERROR = "RunFailed"
# The workers of one run (MSGTRACK_WORKFLOW_WORKERS on the function, the Map's MaxConcurrency).
# An inline Map runs at most 40 iterations at once, so more would only queue.
DEFAULT_WORKFLOW_WORKERS = 1
MAX_WORKFLOW_WORKERS = 40
# The raw-events table's partition keys (MSGTRACK_RAW_EVENT_SHARDS of every function that uses it):
# each takes about 1,000 writes a second, so 64 record 64,000 hits a second. 1,000 keys would take a
# million, far beyond API Gateway's account quota (10,000 requests a second by default); each run
# queries every shard at least once, so more keys cost reads for nothing. The default (64) is
# functions.shared.settings.DEFAULT_RAW_EVENT_SHARDS, which the functions use when nothing sets it.
MAX_RAW_EVENT_SHARDS = 1_000
# Errors of the Lambda service itself (not of the function's code): every step retries them with
# jittered backoff from 2 s, each wait at most 10 s: 44 s of waiting at most. TooManyRequests: N
# workers may meet a throttle.
LAMBDA_SERVICE_ERRORS = (
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
SERVICE_ERROR_RETRY_ATTEMPTS = 6
SERVICE_ERROR_RETRY_INTERVAL = Duration.seconds(2)
SERVICE_ERROR_RETRY_MAX_DELAY = Duration.seconds(10)
# A worker or a slice of the merge that raised or ran out of time (States.TaskFailed) is tried
# WORKER_RETRY_ATTEMPTS times more (functions.consolidate.config, shared with the local stack). A worker
# still failing fails the run; a slice still failing is merged by Finish.
WORKER_RETRY_INTERVAL = Duration.seconds(30)
RETRY_BACKOFF_RATE = 2


def _retry_waits(attempts: int, interval: Duration, max_delay: Duration | None = None) -> Duration:
    """The longest a state waits between its tries, over ``attempts`` retries (full jitter waits less)."""
    waits = (interval.to_seconds() * RETRY_BACKOFF_RATE**n for n in range(attempts))
    cap = max_delay.to_seconds() if max_delay else float("inf")
    return Duration.seconds(sum(min(wait, cap) for wait in waits))


# --- a run's time: its budget, the merge after it, the execution's limit and the lock ------------------
#
# Runs start every SCHEDULE_PERIOD and must not overlap: an execution is stopped after
# STATE_MACHINE_TIMEOUT and its lock outlives that by LOCK_MARGIN, both within the period. The limit is
# the sum of what a run takes when no step is retried for a failure of its own:
#   RUN_BUDGET: the workers take batches until then from the run's start (Plan inside it)
# + the workers' tail: their last batch and flush (the safety margin)
# + MERGE_ALLOWANCE: Close, the slowest slice and Finish, one invocation each (figure 11 measures
#   Close + the slowest slice + Finish at 672 s for 20 million events with 40 workers)
# and each of the five states (Plan, Work, Close, Merge slice, Finish) its service-error waits.
# 1,800 + 60 + 900 + 5 x 44 = 2,980 s: a limit of 49 min 40 s and a lock of 54 min 40 s.
# A run that needs more (a worker or slice retried after using its whole 15 minutes, a merge slower
# than the allowance) is stopped at the limit, raising the alarm; its lock expires before the next
# scheduled run, whose Plan finishes the interrupted run exactly once. Holding every retry at its
# worst instead would need about 80 minutes with 15-minute invocations, or invocations of 6 minutes and
# a budget of 17 (about 11.5 million events an hour with 40 workers instead of 28.6 million).
# RUN_BUDGET_SECONDS is a plain number: figure 11 reads it.
SCHEDULE_PERIOD = Duration.hours(1)  # DEFAULT_SCHEDULE
SAFETY_MARGIN = Duration.seconds(60)  # functions.consolidate.config.SAFETY_MARGIN_MS
SERVICE_ERROR_WAITS = _retry_waits(
    SERVICE_ERROR_RETRY_ATTEMPTS, SERVICE_ERROR_RETRY_INTERVAL, SERVICE_ERROR_RETRY_MAX_DELAY
)
RUN_BUDGET_SECONDS = 1800
RUN_BUDGET = Duration.seconds(RUN_BUDGET_SECONDS)
MERGE_ALLOWANCE = Duration.minutes(15)
RUN_STATES = 5  # Plan, Work, Close, Merge slice, Finish: each with its service-error retries
STATE_MACHINE_TIMEOUT = Duration.seconds(
    RUN_BUDGET.to_seconds()
    + SAFETY_MARGIN.to_seconds()
    + MERGE_ALLOWANCE.to_seconds()
    + RUN_STATES * SERVICE_ERROR_WAITS.to_seconds()
)
# The run's lock (taken by Plan, released by Finish) outlives the longest execution, so a run cut short
# never overlaps the next one (MSGTRACK_RUN_LOCK_SECONDS of the consolidation function); it expires
# within the period, so a crashed run does not cost the next one.
LOCK_MARGIN = Duration.minutes(5)
RUN_LOCK = STATE_MACHINE_TIMEOUT.plus(LOCK_MARGIN)
if not RUN_LOCK.to_seconds() < SCHEDULE_PERIOD.to_seconds():
    raise ValueError("a run's time limit and lock must end within the schedule's period")

# --- exports --------------------------------------------------------------------------------------

# One 8 MiB part in memory at a time (functions/exports/worker.py), whatever the number of logs.
EXPORTS_MEMORY_MB = 512
# Lambda's maximum: the worker stops at a part boundary before it and goes on in a new invocation.
EXPORTS_TIMEOUT = Duration.minutes(15)
EXPORTS_RETRY_ATTEMPTS = 1
EXPORTS_ACCESS_LOG_RETENTION_DAYS = 90

# --- secrets ----------------------------------------------------------------------------------

SIGNING_KEY_LENGTH = 48
API_TOKEN_LENGTH = 48

# --- events out (the msgtrack bus and webhooks) -----------------------------------------------

EVENTS_OUT_MEMORY_MB = 512  # parses user agents, as the workflow does
EVENTS_OUT_TIMEOUT = Duration.seconds(60)
# A hit is out within seconds; a batch that keeps failing is bisected, retried, then given up (its
# stream positions go to the failure queue) so that one poison item cannot hold the stream for a day.
STREAM_BATCH_SIZE = 100
STREAM_RETRY_ATTEMPTS = 10
STREAM_MAX_RECORD_AGE = Duration.hours(6)
WEBHOOK_DELIVERER_MEMORY_MB = 256
# Ten deliveries of a batch run at once, each bounded by its 5 s timeout (functions/events/delivery.py).
WEBHOOK_DELIVERER_TIMEOUT = Duration.seconds(60)
WEBHOOK_MAX_RECEIVES = 5  # a message the deliverer could not even process goes to the dead letters
WEBHOOK_KEY_LENGTH = 48
WEBHOOK_STREAM_LAG_ALARM = Duration.minutes(1)  # the contract's bound is burst_seconds + 30 s
