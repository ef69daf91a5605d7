"""``store.transact``: a transaction DynamoDB cancelled for a conflict or throttling is tried again; one
cancelled for a condition is the caller's answer at once (README "Scale-out")."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from functions.consolidate.store import TRANSACTION_TRIES, TransactionsConflicting, transact


class Cancelling:
    """A DynamoDB client whose transactions are cancelled with these reasons, then go through."""

    def __init__(self, *answers: list[str]) -> None:
        self.exceptions = boto3.client("dynamodb", region_name="us-east-1").exceptions
        self.answers = list(answers)
        self.calls = 0

    def transact_write_items(self, TransactItems: list[Any]) -> dict[str, Any]:
        self.calls += 1
        if self.answers:
            codes = self.answers.pop(0)
            raise self.exceptions.TransactionCanceledException(
                {
                    "Error": {"Code": "TransactionCanceledException"},
                    "CancellationReasons": [{"Code": c} for c in codes],
                },
                "TransactWriteItems",
            )
        return {}


def test_a_transaction_cancelled_for_conflicts_and_throttling_is_tried_again_until_it_goes_through() -> None:
    # Given DynamoDB cancelling a transaction for a conflict, then for throttling
    client = Cancelling(["None", "TransactionConflict"], ["ThrottlingError", "None"])
    waits: list[float] = []
    # When it is sent
    transact(client, [{}, {}], sleep=waits.append)
    # Then it went through on the third try, after two short waits
    assert client.calls == 3 and len(waits) == 2 and all(0 <= w <= 0.05 for w in waits)


@pytest.mark.parametrize(
    "codes", [["ConditionalCheckFailed", "None"], ["ConditionalCheckFailed", "TransactionConflict"]]
)
def test_a_transaction_cancelled_for_a_condition_is_the_callers_answer_at_once(codes: list[str]) -> None:
    # Given DynamoDB cancelling a transaction because a condition failed (with a conflict or not)
    client = Cancelling(codes)
    # When it is sent, Then the cancellation is raised after one try (the run is closed, the lock lost)
    with pytest.raises(client.exceptions.TransactionCanceledException):
        transact(client, [{}, {}], sleep=lambda _: None)
    assert client.calls == 1


def test_conflicts_that_outlast_the_tries_fail_the_step_not_as_a_lost_lock() -> None:
    # Given DynamoDB cancelling every try for a conflict
    client = Cancelling(*[["TransactionConflict"]] * TRANSACTION_TRIES)
    # When it is sent, Then it fails as a fault (the state machine retries the step), not as LockLost,
    # naming the last cancellation's reasons for the run's errors
    with pytest.raises(TransactionsConflicting) as failed:
        transact(client, [{}], sleep=lambda _: None)
    assert client.calls == TRANSACTION_TRIES
    assert str(failed.value) == (
        f"a transaction conflicted {TRANSACTION_TRIES} times (the last cancelled for TransactionConflict)"
    )
