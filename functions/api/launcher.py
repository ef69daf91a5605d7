"""How ``POST /api/workflows/tracking/runs`` (and an erasure request) starts the tracking workflow.

In AWS a run is an execution of the workflow's state machine (``infra/workflow_state_machine.py``),
named after the run so that the run listed by the API and its execution history are found by one id.
The local stack installs a launcher that runs the consolidation handler in a thread (``local/``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol


class WorkflowLauncher(Protocol):
    def launch(self, run_id: str) -> None: ...


class StateMachineLauncher:
    """Starts an execution of the state machine with the input its Plan step reads."""

    def __init__(self, state_machine_arn: str, client: Any = None) -> None:
        """``client``: a Step Functions client (boto3's by default, made on first use)."""
        self._state_machine_arn = state_machine_arn
        self._client = client

    def launch(self, run_id: str) -> None:
        if self._client is None:
            import boto3

            self._client = boto3.client("stepfunctions")
        self._client.start_execution(
            stateMachineArn=self._state_machine_arn,
            name=run_id,
            input=json.dumps({"run_id": run_id, "trigger": "api"}),
        )


_launcher: WorkflowLauncher | None = None


def configure(launcher: WorkflowLauncher | None) -> None:
    global _launcher
    _launcher = launcher


def launcher() -> WorkflowLauncher:
    if _launcher is not None:
        return _launcher
    from functions.shared.settings import SettingsError, settings

    arn = settings().workflow_state_machine_arn
    if not arn:
        raise SettingsError("MSGTRACK_WORKFLOW_STATE_MACHINE is not set and no local launcher is configured")
    return StateMachineLauncher(arn)
