"""The local stack: moto as local AWS, the three Lambda functions, a local API Gateway and the schedule.

Every function runs the handler the cloud runs. The environment is set before any handler is imported,
the same variables the CDK stack sets in AWS, with the local endpoint and plain-http cookie on top.
"""

from __future__ import annotations

import http.client
import os
import secrets
import sys
import threading
import time
import traceback
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from functions.consolidate.config import WORKFLOW_TIMEOUT_SECONDS
from functions.shared.settings import RAW_EVENT_SHARDS_ENV
from local.context import FunctionUnavailable, LocalFunction
from local.events import DELIVERER_CONTAINERS
from local.gateway import Gateway, LocalApiGateway
from local.scheduler import Scheduler, parse_rate
from local.state_machine import LocalStateMachine

DEFAULT_SCHEDULE = "rate(1 hour)"
REDIRECT_TIMEOUT_SECONDS = 30
API_TIMEOUT_SECONDS = 30
EVENTS_OUT_TIMEOUT_SECONDS = 60
DELIVERER_TIMEOUT_SECONDS = 60
LOCAL_RAW_EVENT_SHARDS = 16
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


def reachable_host(host: str) -> str:
    """The address a local client uses to reach a server bound to ``host``."""
    return "127.0.0.1" if host in _WILDCARD_HOSTS else host


@dataclass(frozen=True)
class Secrets:
    api_token: str
    api_token_generated: bool
    signing_key_generated: bool


def configure_environment(
    environ: MutableMapping[str, str],
    *,
    aws_endpoint: str,
    tracking_base_url: str,
    schedule: str,
    trust_forwarded_for: bool = False,
    allow_http_webhooks: bool = False,
) -> Secrets:
    """Set what the functions read from the environment; keep the user's token and key if given."""
    for name in ("AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_ENDPOINT_URL_DYNAMODB"):
        environ.pop(name, None)  # nothing may send the local stack's calls to a real account
    environ.update(
        {
            "AWS_ENDPOINT_URL": aws_endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "MSGTRACK_TABLE_PREFIX": "msgtrack-",
            "MSGTRACK_TRACKING_BASE_URL": tracking_base_url,
            "MSGTRACK_COOKIE_SECURE": "false",
            "MSGTRACK_SCHEDULE": schedule,
            "MSGTRACK_TRUST_FORWARDED_FOR": "true" if trust_forwarded_for else "false",
            "MSGTRACK_ALLOW_HTTP_WEBHOOKS": "true" if allow_http_webhooks else "false",
        }
    )
    # moto answers a Query by going over the whole table, so every raw-event shard costs the tracking
    # workflow a pass over every raw event locally: 16 shards keep local runs as quick as before the
    # 64 of AWS (what the shard count is for, 1,000 writes a second each, is no concern of moto).
    environ.setdefault(RAW_EVENT_SHARDS_ENV, str(LOCAL_RAW_EVENT_SHARDS))
    environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    token_generated = not environ.get("MSGTRACK_API_TOKEN")
    if token_generated:
        environ["MSGTRACK_API_TOKEN"] = secrets.token_urlsafe(24)
    if not environ.get("MSGTRACK_WEBHOOK_KEY"):  # webhook secrets are derived from it
        environ["MSGTRACK_WEBHOOK_KEY"] = secrets.token_urlsafe(32)
    key_generated = not environ.get("MSGTRACK_SIGNING_KEY")
    if key_generated:
        environ["MSGTRACK_SIGNING_KEY"] = secrets.token_urlsafe(32)
    return Secrets(environ["MSGTRACK_API_TOKEN"], token_generated, key_generated)


class ThreadLauncher:
    """Starts the tracking workflow now, on a background thread: the local stand-in for an async invoke."""

    def __init__(self, workflow: LocalFunction | LocalStateMachine) -> None:
        self._workflow = workflow
        self._threads: list[threading.Thread] = []

    def event(self, run_id: str) -> dict[str, Any]:
        return {"run_id": run_id, "trigger": "api"}

    def launch(self, run_id: str) -> None:
        thread = threading.Thread(target=run_logged, args=(self._workflow, self.event(run_id)), daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class ExportThreadLauncher(ThreadLauncher):
    """Starts the exports worker on a background thread: the local stand-in for its async invoke."""

    def event(self, export_id: str) -> dict[str, Any]:
        return {"export_id": export_id}


def run_logged(function: LocalFunction | LocalStateMachine, event: dict[str, Any]) -> None:
    """Invoke an asynchronously triggered function; like Lambda, log its failure instead of raising."""
    try:
        function.invoke(event)
    except Exception:
        print(f"[{function.name}] invocation failed:\n{traceback.format_exc()}", file=sys.stderr)


def drop_unpublished_metrics() -> None:
    """With POWERTOOLS_METRICS_DISABLED, Powertools keeps every metric it does not publish and prints
    them anyway once 100 values pile up; a container that lives for hours must drop them after each call.
    """
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if is_metrics_disabled():
        from functions.shared.observability import metrics

        metrics.clear_metrics()


def _check_endpoint(endpoint: str) -> None:
    """Both boto3 and PynamoDB must talk to moto, never to a real account."""
    import boto3

    from functions.shared import models

    seen = {
        "boto3": boto3.client("dynamodb").meta.endpoint_url,
        "pynamodb": models.DeliveryModel._get_connection().connection.client.meta.endpoint_url,
    }
    wrong = {client: url for client, url in seen.items() if url != endpoint}
    if wrong:
        raise RuntimeError(f"AWS clients ignore AWS_ENDPOINT_URL={endpoint}: {wrong}")


class LocalStack:
    """Start with ``start()``, stop with ``stop()``; ``base_url`` is the local API Gateway."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        schedule: str = DEFAULT_SCHEDULE,
        *,
        access_log: bool = False,
        trust_forwarded_for: bool = False,  # the client address is X-Forwarded-For's first entry
        allow_http_webhooks: bool = False,  # webhooks may also be http and on loopback (development)
    ) -> None:
        self.host = host
        self.access_log = access_log
        self.trust_forwarded_for = trust_forwarded_for
        self.port = port
        self.schedule = schedule
        self.period = parse_rate(schedule)  # refuse a bad schedule before starting anything
        self.redirect = LocalFunction(
            "msgtrack-redirect",
            "functions.redirect.handler.lambda_handler",
            timeout_seconds=REDIRECT_TIMEOUT_SECONDS,
            after_invoke=drop_unpublished_metrics,
        )
        self.api = LocalFunction(
            "msgtrack-api",
            "functions.api.handler.lambda_handler",
            timeout_seconds=API_TIMEOUT_SECONDS,
            after_invoke=drop_unpublished_metrics,
        )
        self.workflow = LocalFunction(
            "msgtrack-tracking-workflow",
            "functions.consolidate.handler.lambda_handler",
            timeout_seconds=WORKFLOW_TIMEOUT_SECONDS,
            memory_limit_in_mb=1024,
            after_invoke=drop_unpublished_metrics,
        )
        # The state machine runs the workflow's steps: MSGTRACK_WORKFLOW_WORKERS containers (``start``).
        self.state_machine = LocalStateMachine([self.workflow])
        self.launcher = ThreadLauncher(self.state_machine)
        self.exports_worker = LocalFunction(
            "msgtrack-exports",
            "functions.exports.handler.lambda_handler",
            timeout_seconds=WORKFLOW_TIMEOUT_SECONDS,
            memory_limit_in_mb=512,
            after_invoke=drop_unpublished_metrics,
        )
        self.export_launcher = ExportThreadLauncher(self.exports_worker)
        self.allow_http_webhooks = allow_http_webhooks
        self.events_out = LocalFunction(
            "msgtrack-events-out",
            "functions.events.handler.publish_handler",
            timeout_seconds=EVENTS_OUT_TIMEOUT_SECONDS,
            after_invoke=drop_unpublished_metrics,
        )
        self.events_held = LocalFunction(
            "msgtrack-events-held",
            "functions.events.handler.publish_held_handler",
            timeout_seconds=EVENTS_OUT_TIMEOUT_SECONDS,
            after_invoke=drop_unpublished_metrics,
        )
        self.deliverers = [
            LocalFunction(
                "msgtrack-webhook-deliverer",
                "functions.events.handler.deliver_handler",
                timeout_seconds=DELIVERER_TIMEOUT_SECONDS,
                after_invoke=drop_unpublished_metrics,
            )
            for _ in range(DELIVERER_CONTAINERS)
        ]
        self._event_loops: list[Any] = []
        self.secrets: Secrets | None = None
        self.aws_endpoint = ""
        self._moto: Any = None
        self._gateway: LocalApiGateway | None = None
        self._scheduler: Scheduler | None = None

    @property
    def base_url(self) -> str:
        return f"http://{reachable_host(self.host)}:{self.port}"

    def start(self) -> None:
        from local import aws

        # Locally metrics are not published, so an invocation without any is nothing to warn about.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        try:
            self._moto, self.aws_endpoint = aws.start_moto_server()
            # Bind first: with port 0 the tracking base URL needs the port the system chose.
            self._gateway = LocalApiGateway(
                Gateway(self.redirect, self.api), self.host, self.port, access_log=self.access_log
            )
            self.port = self._gateway.port
            self.secrets = configure_environment(
                os.environ,
                aws_endpoint=self.aws_endpoint,
                tracking_base_url=self.base_url,
                schedule=self.schedule,
                trust_forwarded_for=self.trust_forwarded_for,
                allow_http_webhooks=self.allow_http_webhooks,
            )
            from functions.api import launcher
            from functions.shared import models, settings, tokens

            settings.reset_caches()
            tokens.reset_signer()
            # Refuse a bad setting (a short signing key, say) now, not as a 502 on every request.
            self.state_machine.containers = self._workflow_containers(settings.settings().workflow_workers)
            settings.signing_secrets()
            settings.api_token()
            models.refresh_table_names()
            aws.create_tables()
            from functions.shared import fallback

            os.environ[fallback.QUEUE_URL_ENV] = aws.create_fallback_queue()
            from functions.shared import exports

            # Downloads come straight from moto's S3, presigned like S3's: the URL names its endpoint.
            os.environ[exports.BUCKET_ENV] = aws.create_exports_bucket()
            exports.configure(launcher=self.export_launcher)
            _check_endpoint(self.aws_endpoint)
            self._start_events_out()
            launcher.configure(self.launcher)
            self._gateway.start()
            self._scheduler = Scheduler(self.period, lambda event: run_logged(self.state_machine, event))
            self._scheduler.start()
        except BaseException:
            self.stop()
            raise

    def _start_events_out(self) -> None:
        """The raw-events stream to the events-out function, the held-events queue (after each hit's burst
        window) to the held-events function, the delivery queue to the deliverers."""
        import boto3

        from functions.events import clients
        from functions.shared import tables, webhooks
        from local import aws
        from local.events import QueuePoller, StreamPoller

        webhooks.webhook_key.cache_clear()
        bus, queue, dead_letters = aws.create_events_out()
        held = aws.create_held_events_queue()
        os.environ.update(
            {
                clients.BUS_ENV: bus,
                clients.DELIVERY_QUEUE_ENV: queue,
                clients.DEAD_LETTER_QUEUE_ENV: dead_letters,
                clients.HELD_QUEUE_ENV: held,
            }
        )
        sqs = boto3.client("sqs")
        self._event_loops = [
            StreamPoller(
                self.events_out,
                tables.RAW_EVENTS.table_name,
                boto3.client("dynamodb"),
                boto3.client("dynamodbstreams"),
            ),
            QueuePoller([self.events_held], held, sqs, name="events-held"),
            QueuePoller(self.deliverers, queue, sqs),
        ]
        for loop in self._event_loops:
            loop.start()

    def _workflow_containers(self, workers: int) -> list[LocalFunction]:
        """One container of the consolidation function per worker (the first is ``workflow``)."""
        more = [
            LocalFunction(
                f"msgtrack-tracking-workflow-{n}",
                "functions.consolidate.handler.lambda_handler",
                timeout_seconds=WORKFLOW_TIMEOUT_SECONDS,
                memory_limit_in_mb=1024,
                after_invoke=drop_unpublished_metrics,
            )
            for n in range(1, workers)
        ]
        return [self.workflow, *more]

    def unavailable_functions(self) -> dict[str, str]:
        """Load every handler now; name those that cannot be loaded (their requests will get a 502)."""
        problems: dict[str, str] = {}
        for function in (
            self.api,
            self.redirect,
            self.workflow,
            self.exports_worker,
            self.events_out,
            self.events_held,
            self.deliverers[0],
        ):
            try:
                function.load()
            except FunctionUnavailable as exc:
                problems[function.name] = str(exc)
        return problems

    def wait_until_healthy(self, timeout: float = 60.0) -> None:
        """Block until ``GET /health`` answers 200; TimeoutError with the last answer otherwise."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection(reachable_host(self.host), self.port, timeout=10)
            try:
                connection.request("GET", "/health")
                response = connection.getresponse()
                body = response.read().decode("utf-8", "replace")
                if response.status == 200:
                    return
                last = f"{response.status} {body[:200]}"
            except OSError as exc:
                last = repr(exc)
            finally:
                connection.close()
            time.sleep(0.2)
        raise TimeoutError(
            f"GET {self.base_url}/health did not answer 200 within {timeout:.0f} s (last: {last})"
        )

    def stop(self) -> None:
        from functions.api import launcher

        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
        for loop in self._event_loops:
            loop.stop()
        self._event_loops = []
        launcher.configure(None)
        from functions.shared import exports

        exports.configure(None)
        self.launcher.wait(timeout=10)  # let a run in flight record its outcome before moto goes away
        self.export_launcher.wait(timeout=10)
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
