"""The API function: the report API (``/api/*``), the health check and the dashboard (``/``,
``/dashboard/*``).

It writes deliveries (with their messages and send counts, in transactions) and tracked URLs, reads
tracking logs (and their by-recipient index), indicators and workflow runs, and starts a run of the
tracking workflow (an execution of its state machine). It never writes raw events,
tracking logs or indicators. In the workflow table it reaches only the partitions it uses (runs,
the audit trail, pending erasure requests), never the workflow's lock, checkpoints or pending batch.
"""

from __future__ import annotations

from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from functions.shared.models import AUDIT_PK, ERASURE_PENDING_PK, RUNS_PK
from functions.shared.tables import DELIVERIES, INDICATORS, TRACKED_URLS, TRACKING_LOGS, WORKFLOW
from infra.constants import API_MEMORY_MB, API_RESERVED_CONCURRENCY, API_TIMEOUT
from infra.function import MsgtrackFunction
from infra.http_api import HttpEntryPoint
from infra.secrets import Secrets
from infra.storage import CONDITION_CHECK, READ, WRITE, Storage
from infra.tracking_workflow import TrackingWorkflow

API_PATH = "/api/{proxy+}"
PAGE_PATHS = ("/health", "/", "/dashboard/{proxy+}")  # /dashboard/*: the dashboard's static assets

_PUBLIC_PAGES = (
    "Public on purpose: the health check answers uptime probes with no data, and the dashboard page "
    "and its static assets hold no data either; the page asks the user for the API token itself."
)
_BEARER_CHECKED_IN_FUNCTION = (
    "Every /api route checks the bearer token inside the API function (functions/api/auth.py, one "
    "constant-time comparison with the token from Secrets Manager), the same code the local stack runs."
)


class ReportsApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        storage: Storage,
        secrets: Secrets,
        entry_point: HttpEntryPoint,
        workflow: TrackingWorkflow,
        reserved_concurrency: int = API_RESERVED_CONCURRENCY,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = MsgtrackFunction(
            self,
            "Api",
            code=code,
            name="api",
            description="msgtrack report API and dashboard",
            memory_size=API_MEMORY_MB,
            timeout=API_TIMEOUT,
            # A ceiling: report calls, however many, never take the executions clicks need.
            reserved_concurrency=reserved_concurrency or None,
        )
        self.function = self.handler.function
        self._grant_data(storage)
        secrets.grant_signing_key(self.function)  # renders tracked links, signs list cursors
        secrets.grant_api_token(self.function)
        self._grant_workflow_start(workflow)
        self.function.add_environment("MSGTRACK_TRACKING_BASE_URL", entry_point.tracking_base_url)
        self.function.add_environment("MSGTRACK_SCHEDULE", workflow.schedule)
        self._build_routes(entry_point)

    def _grant_data(self, storage: Storage) -> None:
        storage.grant(self.function, DELIVERIES, READ + WRITE + CONDITION_CHECK, index_query=True)
        storage.grant(self.function, TRACKED_URLS, READ + WRITE)
        storage.grant(self.function, TRACKING_LOGS, READ, index_query=True)
        storage.grant(self.function, INDICATORS, READ)
        # The workflow table, by partition key (every key of the table is a fixed partition): it lists
        # runs and the audit trail, and adds audit entries and erasure requests (the workflow carries
        # them out). The lock, checkpoints and pending batch ("state") and done erasures stay out of reach.
        storage.grant(self.function, WORKFLOW, ("dynamodb:Query",), leading_keys=(RUNS_PK, AUDIT_PK))
        storage.grant(
            self.function, WORKFLOW, ("dynamodb:PutItem",), leading_keys=(AUDIT_PK, ERASURE_PENDING_PK)
        )

    def _grant_workflow_start(self, workflow: TrackingWorkflow) -> None:
        workflow.grant_start(self.function)
        self.function.add_environment(
            "MSGTRACK_WORKFLOW_STATE_MACHINE", workflow.state_machine.state_machine_arn
        )

    def _build_routes(self, entry_point: HttpEntryPoint) -> None:
        integration = integrations.HttpLambdaIntegration("ApiIntegration", self.function)
        entry_point.add_routes(
            API_PATH,
            [apigwv2.HttpMethod.ANY],
            integration,
            why_no_authorizer=_BEARER_CHECKED_IN_FUNCTION,
        )
        for path in PAGE_PATHS:
            entry_point.add_routes(
                path, [apigwv2.HttpMethod.GET], integration, why_no_authorizer=_PUBLIC_PAGES
            )
