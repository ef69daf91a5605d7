"""A step's time budget and the workflow's settings (functions/consolidate/config.py): an invocation is
spent within SAFETY_MARGIN_MS of its time limit, a run at its deadline, and a run's budget must end
before its lock expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.consolidate.config import SAFETY_MARGIN_MS, Budget, WorkflowConfig

DEADLINE = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)


def at(moment: datetime) -> Budget:
    """A worker's budget with time left in its invocation, its clock at ``moment``."""
    return Budget(lambda: 600_000, DEADLINE, clock=lambda: moment)


def test_an_invocation_is_spent_once_less_than_the_safety_margin_is_left() -> None:
    assert not Budget(lambda: SAFETY_MARGIN_MS).invocation_spent()
    assert Budget(lambda: SAFETY_MARGIN_MS - 1).invocation_spent()
    assert Budget(lambda: SAFETY_MARGIN_MS - 1).exhausted()
    # a step with no time limit (a test, the local stack's whole run) is never spent
    assert not Budget(None).invocation_spent() and not Budget(None).exhausted()


def test_a_run_is_spent_at_its_deadline() -> None:
    assert not at(DEADLINE - timedelta(milliseconds=1)).run_spent()
    assert at(DEADLINE).run_spent() and at(DEADLINE).exhausted()
    assert not at(DEADLINE - timedelta(milliseconds=1)).exhausted()
    # without a deadline (the planner, the finisher) only the invocation's time counts
    assert not Budget(lambda: 600_000, None, clock=lambda: DEADLINE + timedelta(days=1)).exhausted()


def test_a_budget_reads_the_time_left_and_the_clock_each_time_it_is_asked() -> None:
    left = iter([600_000, SAFETY_MARGIN_MS - 1])
    now = iter([DEADLINE - timedelta(seconds=1), DEADLINE])
    budget = Budget(lambda: next(left), DEADLINE, clock=lambda: next(now))
    assert not budget.invocation_spent() and budget.invocation_spent()
    assert not budget.run_spent() and budget.run_spent()


@pytest.mark.parametrize(("budget", "lock"), [(0, 1200), (-1, 1200), (1200, 1200), (1300, 1200)])
def test_a_run_budget_that_is_not_positive_or_outlasts_the_lock_is_refused(budget: int, lock: int) -> None:
    with pytest.raises(
        ValueError,
        match=f"a run's budget \\({budget} s\\) must be positive and shorter than its lock \\({lock} s\\)",
    ):
        WorkflowConfig(run_budget_seconds=budget, lock_seconds=lock)


@pytest.mark.parametrize(("budget", "lock"), [(1, 1200), (1199, 1200), (900, 1200)])
def test_a_run_budget_within_the_lock_is_taken(budget: int, lock: int) -> None:
    assert WorkflowConfig(run_budget_seconds=budget, lock_seconds=lock).run_budget_seconds == budget
