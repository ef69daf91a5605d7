"""Starting the tracking workflow from the API: in AWS, an execution of its state machine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.api import launcher as launchers
from functions.api import reports
from functions.api.launcher import StateMachineLauncher
from functions.shared import settings
from functions.shared.settings import SettingsError

STATE_MACHINE_ARN = "arn:aws:states:eu-west-1:111122223333:stateMachine:msgtrack-workflow"


class FakeStepFunctions:
    """Records what a boto3 Step Functions client would have been asked."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start_execution(self, **request: Any) -> dict[str, Any]:
        self.started.append(request)
        return {
            "executionArn": f"{request['stateMachineArn']}:{request['name']}",
            "startDate": datetime.now(UTC),
        }


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Settings read afresh from the environment the test sets, and no local launcher installed."""
    monkeypatch.delenv("MSGTRACK_WORKFLOW_STATE_MACHINE", raising=False)
    settings.reset_caches()
    launchers.configure(None)
    yield monkeypatch
    settings.reset_caches()


def test_a_run_started_from_the_api_is_an_execution_named_after_the_run() -> None:
    # Given the launcher AWS uses, with a Step Functions client that records its calls
    client = FakeStepFunctions()
    # When the API starts a run
    started = reports.start_run(
        now=datetime(2026, 12, 6, 9, 30, tzinfo=UTC), launcher=StateMachineLauncher(STATE_MACHINE_ARN, client)
    )
    # Then one execution of the state machine is started, named after the run the API answers with
    (request,) = client.started
    assert request["stateMachineArn"] == STATE_MACHINE_ARN
    assert request["name"] == started.id
    assert started.id.startswith("20261206T093000000Z-")
    # And its input is what the Plan step reads: the run's id, started from the API
    assert json.loads(request["input"]) == {"run_id": started.id, "trigger": "api"}


def test_in_aws_the_launcher_starts_the_state_machine_named_by_the_setting(
    environment: pytest.MonkeyPatch,
) -> None:
    # Given the API function's environment in AWS: the state machine's ARN, no local launcher
    environment.setenv("MSGTRACK_WORKFLOW_STATE_MACHINE", STATE_MACHINE_ARN)
    client = FakeStepFunctions()
    made: list[str] = []

    def boto3_client(service: str, *args: Any, **kwargs: Any) -> FakeStepFunctions:
        made.append(service)
        return client

    environment.setattr("boto3.client", boto3_client)
    # When a run is started
    launchers.launcher().launch("20261206T093000000Z-abcdef")
    # Then a Step Functions client starts an execution of that state machine
    assert made == ["stepfunctions"]
    assert [(r["stateMachineArn"], r["name"]) for r in client.started] == [
        (STATE_MACHINE_ARN, "20261206T093000000Z-abcdef")
    ]


def test_a_local_launcher_takes_precedence_over_the_state_machine(environment: pytest.MonkeyPatch) -> None:
    # Given the local stack's launcher installed (it runs the handler in a thread)
    environment.setenv("MSGTRACK_WORKFLOW_STATE_MACHINE", STATE_MACHINE_ARN)
    launched: list[str] = []

    class Local:
        def launch(self, run_id: str) -> None:
            launched.append(run_id)

    local = Local()
    launchers.configure(local)
    try:
        # When a run is started, Then the local launcher runs it
        launchers.launcher().launch("run-1")
    finally:
        launchers.configure(None)
    assert launched == ["run-1"]


def test_without_a_state_machine_or_a_local_launcher_no_run_can_start(
    environment: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SettingsError, match="MSGTRACK_WORKFLOW_STATE_MACHINE"):
        launchers.launcher()
