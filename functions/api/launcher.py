"""How ``POST /api/workflows/tracking/runs`` starts the tracking workflow.

In AWS the consolidation function is invoked asynchronously; the local stack installs a launcher that
runs the same handler in a thread (``local/``). The payload is what the consolidation handler reads.
"""

from __future__ import annotations

import json
from typing import Protocol


class WorkflowLauncher(Protocol):
    def launch(self, run_id: str) -> None: ...


class LambdaLauncher:
    def __init__(self, function_name: str) -> None:
        self._function_name = function_name

    def launch(self, run_id: str) -> None:
        import boto3

        boto3.client("lambda").invoke(
            FunctionName=self._function_name,
            InvocationType="Event",
            Payload=json.dumps({"run_id": run_id, "trigger": "api"}).encode(),
        )


_launcher: WorkflowLauncher | None = None


def configure(launcher: WorkflowLauncher | None) -> None:
    global _launcher
    _launcher = launcher


def launcher() -> WorkflowLauncher:
    if _launcher is not None:
        return _launcher
    from functions.shared.settings import SettingsError, settings

    name = settings().workflow_function_name
    if not name:
        raise SettingsError("MSGTRACK_WORKFLOW_FUNCTION is not set and no local launcher is configured")
    return LambdaLauncher(name)
