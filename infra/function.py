"""What every msgtrack function has: the shared code asset, Python on arm64, its own role that starts
with no permission at all, its own log group with retention, and the Powertools settings."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constants import (
    HANDLERS,
    LOG_LEVEL,
    LOG_RETENTION,
    METRICS_NAMESPACE,
    PYTHON_VERSION,
    SERVICE_NAME,
)

# PYTHON_VERSION is also what pip installs the wheels for (bundling.py): a missing runtime fails here.
RUNTIME: lambda_.Runtime = getattr(lambda_.Runtime, "PYTHON_" + PYTHON_VERSION.replace(".", "_"))


class MsgtrackFunction(Construct):
    """One Lambda function: grants are added by the construct that owns the function's concern."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        name: str,
        description: str,
        memory_size: int,
        timeout: Duration,
        reserved_concurrency: int | None = None,
    ) -> None:
        """``reserved_concurrency`` is both what the function is guaranteed and its ceiling."""
        super().__init__(scope, construct_id)
        # An explicit role, not the default one with AWSLambdaBasicExecutionRole: it may write to its
        # own log group and nothing else until a grant says otherwise.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"msgtrack {name} function",
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=LOG_RETENTION)
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            code=code,
            handler=HANDLERS[name],
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            memory_size=memory_size,
            timeout=timeout,
            role=self.role,
            log_group=self.log_group,
            description=description,
            reserved_concurrent_executions=reserved_concurrency,
            environment={
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": LOG_LEVEL,
            },
        )
        Validations.of(self.function).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason=f"Python {PYTHON_VERSION} on purpose: the dependencies are bundled as cp"
                f"{PYTHON_VERSION.replace('.', '')} wheels and the code is tested on it; PYTHON_VERSION "
                "(infra/constants.py) moves the runtime and the wheels together once tests pass on a newer one.",
            )
        )
