"""The local EventBridge rule: rate expressions as EventBridge accepts them, and the event it sends."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.scheduler import RULE_ARN, ScheduleError, Scheduler, parse_rate, scheduled_event


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
        (" rate(2 hours) ", timedelta(hours=2)),
    ],
)
def test_valid_rate_expressions_give_their_period(expression: str, period: timedelta) -> None:
    assert parse_rate(expression) == period


@pytest.mark.parametrize(
    ("expression", "hint"),
    [
        ("rate(1 minutes)", "rate(1 minute)"),  # EventBridge: singular for 1
        ("rate(1 hours)", "rate(1 hour)"),
        ("rate(5 minute)", "rate(5 minutes)"),  # plural otherwise
        ("rate(2 day)", "rate(2 days)"),
        ("cron(0 * * * ? *)", "cron expressions are not supported"),
        ("rate(0 minutes)", "not a rate expression"),
        ("rate(-1 hours)", "not a rate expression"),
        ("rate(1.5 hours)", "not a rate expression"),
        ("rate(1 week)", "not a rate expression"),
        ("rate(1 hour", "not a rate expression"),
        ("rate(1hour)", "not a rate expression"),
        ("1 hour", "not a rate expression"),
        ("", "not a rate expression"),
    ],
)
def test_invalid_expressions_are_refused_with_a_clear_reason(expression: str, hint: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(hint)):
        parse_rate(expression)


def test_the_scheduled_event_has_eventbridges_shape() -> None:
    # Given the moment the rule fires
    fired = datetime(2026, 11, 23, 9, 0, 0, 417000, tzinfo=UTC)

    # When the event is built
    event = scheduled_event(fired, event_id="53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa")

    # Then it is what EventBridge sends a scheduled rule's target
    assert event == {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-23T09:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/msgtrack-tracking-workflow"],
        "detail": {},
    }
    assert event["resources"][0] == RULE_ARN


def test_each_scheduled_event_has_its_own_id() -> None:
    now = datetime.now(UTC)
    assert scheduled_event(now)["id"] != scheduled_event(now)["id"]


def test_the_scheduler_first_fires_one_period_after_start_and_keeps_firing_until_stopped() -> None:
    # Given a scheduler with a short period whose target records what it receives
    received: list[dict[str, Any]] = []
    second_run = threading.Event()

    def target(event: dict[str, Any]) -> None:
        received.append(event)
        if len(received) >= 2:
            second_run.set()

    scheduler = Scheduler(timedelta(seconds=0.3), target)

    # When it starts
    scheduler.start()
    try:
        # Then nothing runs at once ...
        assert received == []
        # ... and scheduled events arrive period after period
        assert second_run.wait(timeout=5)
    finally:
        scheduler.stop()
    assert all(event["detail-type"] == "Scheduled Event" for event in received)
    count = len(received)
    second_run.clear()
    assert not second_run.wait(timeout=0.7)  # stopped: no more runs
    assert len(received) == count


def test_a_failing_run_does_not_end_the_schedule() -> None:
    # Given a target that fails on its first run
    calls: list[int] = []
    recovered = threading.Event()

    def target(event: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the table is not there")
        recovered.set()

    scheduler = Scheduler(timedelta(seconds=0.05), target)

    # When it runs twice
    scheduler.start()
    try:
        # Then the second run still happens
        assert recovered.wait(timeout=5)
    finally:
        scheduler.stop()
