"""The exports bucket and function: private, encrypted, TLS only, files expiring after 7 days, access
logged; the worker writes exports/ and reads tracking logs, the API only reads exports/ (to presign)."""

from __future__ import annotations

from aws_cdk.assertions import Match

from functions.shared.tables import TRACKING_LOGS, WORKFLOW
from tests.infrastructure.synth import Synthesized, environment, permissions


def test_the_exports_bucket_is_private_encrypted_tls_only_and_expires_files_after_7_days(
    synthesized: Synthesized,
) -> None:
    exports = synthesized.stack.exports
    bucket = synthesized.resources[synthesized.logical_id(exports.bucket)]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    [encryption] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    [rule] = bucket["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", 7)
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": synthesized.logical_id(exports.access_logs)
    }
    assert synthesized.resources[synthesized.logical_id(exports.bucket)]["DeletionPolicy"] == "Retain"


def test_both_buckets_refuse_requests_without_tls(synthesized: Synthesized) -> None:
    for bucket in (synthesized.stack.exports.bucket, synthesized.stack.exports.access_logs):
        synthesized.template.has_resource_properties(
            "AWS::S3::BucketPolicy",
            {
                "Bucket": {"Ref": synthesized.logical_id(bucket)},
                "PolicyDocument": {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Action": "s3:*",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                },
            },
        )


def test_the_worker_reads_tracking_logs_writes_exports_and_invokes_only_itself(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    exports_objects = synthesized.logical_id(stack.exports.bucket) + "/exports/*"
    worker = synthesized.logical_id(stack.exports.function)
    logs = synthesized.logical_id(stack.storage.table(TRACKING_LOGS))
    workflow = synthesized.logical_id(stack.storage.table(WORKFLOW))
    allowed = permissions(synthesized, stack.exports.handler.role)
    assert {(a, t) for a, t in allowed if not a.startswith("logs:")} == {
        ("dynamodb:Query", logs),
        ("dynamodb:GetItem", workflow),
        ("dynamodb:PutItem", workflow),
        ("s3:PutObject", exports_objects),
        ("s3:AbortMultipartUpload", exports_objects),
        ("lambda:InvokeFunction", worker),
    }


def test_the_api_may_read_exports_to_presign_and_start_the_worker_but_never_write_the_bucket(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    allowed = permissions(synthesized, stack.reports.handler.role)
    bucket = synthesized.logical_id(stack.exports.bucket)
    on_bucket = {(a, t) for a, t in allowed if t.startswith(bucket)}
    assert on_bucket == {("s3:GetObject", bucket + "/exports/*")}
    assert ("lambda:InvokeFunction", synthesized.logical_id(stack.exports.function)) in allowed


def test_the_worker_is_told_its_bucket_and_tables_and_the_api_the_worker(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    worker = environment(synthesized, stack.exports.function)
    assert worker["MSGTRACK_EXPORTS_BUCKET"] == {"Ref": synthesized.logical_id(stack.exports.bucket)}
    assert {name for name in worker if name.endswith("_TABLE")} == {
        "MSGTRACK_TRACKING_LOGS_TABLE",
        "MSGTRACK_WORKFLOW_TABLE",
    }
    api = environment(synthesized, stack.reports.function)
    assert api["MSGTRACK_EXPORTS_FUNCTION"] == {"Ref": synthesized.logical_id(stack.exports.function)}
    assert api["MSGTRACK_EXPORTS_BUCKET"] == {"Ref": synthesized.logical_id(stack.exports.bucket)}
    function = synthesized.resources[synthesized.logical_id(stack.exports.function)]["Properties"]
    assert (function["Timeout"], function["MemorySize"], function["Handler"]) == (
        900,
        512,
        "functions.exports.handler.lambda_handler",
    )
    synthesized.template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {"FunctionName": {"Ref": synthesized.logical_id(stack.exports.function)}, "MaximumRetryAttempts": 1},
    )
