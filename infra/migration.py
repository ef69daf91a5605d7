"""The storage migration's grant: deployed only with ``-c migration=true`` (README "Upgrading").

The ``migrate`` step of the consolidation function (``functions/consolidate/migrate.py``) does what a
run never does: it scans the indicators table for states under their old keys and deletes each one it
has moved, it scans the tracking-logs table CloudFormation retained when the key schema changed, and it
scans today's tracking-logs table for logs stored an item each before chains (it writes them into their
chains and deletes them with the BatchWriteItem a run has).
This policy adds exactly those actions to the consolidation function's role, as a policy of its own, so
that the deploy that follows the migration, without the context value, removes them again and leaves
every other resource as it was.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from functions.shared.tables import INDICATORS, TRACKING_LOGS
from infra.storage import Storage


class StorageMigration(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: Storage,
        role: iam.IRole,
        old_logs_table: str | None,
    ) -> None:
        """``old_logs_table``: the retained tracking-logs table's name, whose logs the migration copies
        (None: it moves the states only)."""
        super().__init__(scope, construct_id)
        statements = [
            # Items only, not the indexes: the scan reads the table's legacy r#/p# states.
            iam.PolicyStatement(
                sid="MoveLegacyStates",
                actions=["dynamodb:Scan", "dynamodb:DeleteItem"],
                resources=[storage.table(INDICATORS).table_arn],
            ),
            # Items only: the scan reads the logs stored an item each (``migrate.is_unchained``).
            iam.PolicyStatement(
                sid="ChainTrackingLogs",
                actions=["dynamodb:Scan"],
                resources=[storage.table(TRACKING_LOGS).table_arn],
            ),
        ]
        if old_logs_table is not None:
            # No longer the stack's: named by its ARN in the stack's own partition, region and account.
            old_logs_arn = Stack.of(self).format_arn(
                service="dynamodb", resource="table", resource_name=old_logs_table
            )
            statements.append(
                iam.PolicyStatement(
                    sid="ReadOldTrackingLogs", actions=["dynamodb:Scan"], resources=[old_logs_arn]
                )
            )
        self.policy = iam.Policy(self, "Policy", statements=statements, roles=[role])
