"""The local stack's moto server takes one DynamoDB request at a time (moto's DynamoDB loses an item
when two requests make one partition at once), and lets other services' requests by meanwhile (an SQS
long poll must not hold DynamoDB)."""

from __future__ import annotations

import threading
from typing import Any

from local.aws import _OneDynamoDBRequestAtATime

DYNAMODB = {"HTTP_X_AMZ_TARGET": "DynamoDB_20120810.BatchWriteItem"}
SQS = {"HTTP_X_AMZ_TARGET": "AmazonSQS.ReceiveMessage"}


class HeldApp:
    """A WSGI app whose requests wait until released; it notes the most in flight at once."""

    def __init__(self) -> None:
        self.inside = self.most = 0
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self._count = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self._count:
            self.inside += 1
            self.most = max(self.most, self.inside)
        self.entered.release()
        self.release.wait(10)
        with self._count:
            self.inside -= 1
        return [b"{}"]


def _send(app: Any, environ: dict[str, str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: app(environ, lambda *_: None))
    thread.start()
    return thread


def test_two_dynamodb_requests_are_served_one_after_the_other() -> None:
    # Given moto's app behind the middleware, and a DynamoDB request being served
    held = HeldApp()
    app = _OneDynamoDBRequestAtATime(held)
    first = _send(app, DYNAMODB)
    assert held.entered.acquire(timeout=10)
    # When a second DynamoDB request comes
    second = _send(app, DYNAMODB)
    # Then it does not enter until the first is answered
    assert not held.entered.acquire(timeout=0.3)
    held.release.set()
    first.join(10)
    second.join(10)
    assert held.most == 1


def test_a_request_of_another_service_is_served_while_a_dynamodb_one_is() -> None:
    # Given a DynamoDB request being served
    held = HeldApp()
    app = _OneDynamoDBRequestAtATime(held)
    first = _send(app, DYNAMODB)
    assert held.entered.acquire(timeout=10)
    # When an SQS request comes, Then it is served at once, beside it
    other = _send(app, SQS)
    assert held.entered.acquire(timeout=10)
    assert held.most == 2
    held.release.set()
    first.join(10)
    other.join(10)
