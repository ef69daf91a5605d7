"""Complete exports: the exports bucket, its access-log bucket and the exports function.

The API function records an export and invokes the exports function asynchronously; the exports
function reads the delivery's tracking logs, writes the file to ``exports/`` of the bucket (S3
multipart upload) and records its progress in the workflow table (``pk = "exports"``), invoking itself
again when its time runs low. The API function then signs a GET link to the file. So:

- the exports function may query tracking logs (no index), read and write export records, put objects
  (and abort uploads) under ``exports/`` and invoke itself, nothing else;
- the API function may add, read and update export records, invoke the exports function and read
  objects under ``exports/`` (what a presigned link is allowed is what its signer is allowed);
- the bucket is private (Block Public Access, bucket-owner-enforced ownership, no ACLs), encrypted,
  TLS only, logs its access to a log bucket, and expires files after 7 days and abandoned uploads
  after 1.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from functions.shared import exports
from functions.shared.models import EXPORTS_PK
from functions.shared.tables import TRACKING_LOGS, WORKFLOW
from infra.constants import (
    EXPORTS_ACCESS_LOG_RETENTION_DAYS,
    EXPORTS_MEMORY_MB,
    EXPORTS_RETRY_ATTEMPTS,
    EXPORTS_TIMEOUT,
)
from infra.function import MsgtrackFunction
from infra.storage import Storage

OBJECTS = exports.OBJECT_PREFIX + "*"
RECORD_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem")


class Exports(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        storage: Storage,
        api: lambda_.Function,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = self._build_access_log_bucket()
        self.bucket = self._build_bucket()
        self.handler = MsgtrackFunction(
            self,
            "Worker",
            code=code,
            name="exports",
            description="msgtrack exports: a delivery's tracking logs to a file in S3",
            memory_size=EXPORTS_MEMORY_MB,
            timeout=EXPORTS_TIMEOUT,
        )
        self.function = self.handler.function
        # A crashed invocation is tried once more: it resumes from the last part it recorded.
        self.function.configure_async_invoke(
            retry_attempts=EXPORTS_RETRY_ATTEMPTS, max_event_age=Duration.hours(1)
        )
        self._grant_worker(storage)
        self._grant_api(storage, api)

    def _build_access_log_bucket(self) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # S3 server access logging cannot write to SSE-KMS
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(EXPORTS_ACCESS_LOG_RETENTION_DAYS))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        return bucket  # cdk-nag's S1 does not ask a log-destination bucket to log its own access

    def _build_bucket(self) -> s3.Bucket:
        return s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="exports-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(exports.RETENTION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            # Files expire within a week anyway; deleting the stack must not fail on a non-empty bucket.
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _grant_worker(self, storage: Storage) -> None:
        function = self.function
        storage.grant(function, TRACKING_LOGS, ("dynamodb:Query",))
        storage.grant(function, WORKFLOW, RECORD_ACTIONS, leading_keys=(EXPORTS_PK,))
        # PutObject covers CreateMultipartUpload, UploadPart and CompleteMultipartUpload.
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[self.bucket.arn_for_objects(OBJECTS)],
            )
        )
        function.add_environment(exports.BUCKET_ENV, self.bucket.bucket_name)
        self._acknowledge_object_prefix(function)
        # Going on in a new invocation: a policy of its own, since the role's default policy naming the
        # function it belongs to would make the function depend on itself.
        iam.Policy(
            self,
            "InvokeItself",
            roles=[self.handler.role],
            statements=[
                iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn])
            ],
        )

    def _grant_api(self, storage: Storage, api: lambda_.Function) -> None:
        storage.grant(api, WORKFLOW, RECORD_ACTIONS, leading_keys=(EXPORTS_PK,))
        api.add_to_role_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[self.bucket.arn_for_objects(OBJECTS)])
        )
        # The unqualified function only: lambda_.Function.grant_invoke would add every version too.
        api.add_to_role_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[self.function.function_arn])
        )
        api.add_environment(exports.BUCKET_ENV, self.bucket.bucket_name)
        api.add_environment(exports.FUNCTION_ENV, self.function.function_name)
        self._acknowledge_object_prefix(api)

    def _acknowledge_object_prefix(self, function: lambda_.Function) -> None:
        """cdk-nag flags ``exports/*`` as a wildcard: it is the prefix, the only way to name objects
        whose keys are made at run time."""
        stack = Stack.of(self)
        bucket = self.bucket.node.default_child
        assert isinstance(bucket, CfnResource)
        logical_id = stack.resolve(stack.get_logical_id(bucket))
        assert function.role is not None
        Validations.of(function.role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{OBJECTS}]",
                reason="Objects under exports/ only: each export's key (exports/<delivery>/<export id>.<format>) "
                "is made at run time, so the grant names the prefix, never the whole bucket.",
            )
        )
