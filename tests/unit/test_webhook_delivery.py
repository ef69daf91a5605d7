"""Webhook delivery: signed the Standard Webhooks way, retried with exponential backoff for 24 hours,
then dead-lettered and shown on the webhook; a slow receiver delays no other; the URL is checked
again at each attempt. In-memory webhooks and queue, a fake clock, fake senders and DNS."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from functions.events import delivery
from functions.events.delivery import Deliverer, deliver, deliver_all, retry_delay
from functions.events.messages import Delivery
from functions.shared import egress, timeutil
from functions.shared.webhooks import Webhook, secret_of
from tests.fakes_webhooks import FakeQueue, FakeWebhookRepository

KEY = b"test-webhook-key-0123456789"
START = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
LOG = {
    "event_id": "evt0123456789abcd",
    "type": "click",
    "delivery_id": "d1",
    "at": "2026-12-06T09:00:00.000Z",
}


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Receiver:
    """A fake sender: answers ``status`` (None: no answer), records what it was sent."""

    status: int | None = 204
    delay: float = 0.0
    received: list[tuple[egress.Target, bytes, dict[str, str]]] = field(default_factory=list)

    def __call__(
        self, target: egress.Target, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> egress.Answer:
        time.sleep(min(self.delay, timeout))
        self.received.append((target, body, dict(headers)))
        if self.delay > timeout:
            return egress.Answer(None, "no answer: TimeoutError: timed out", timeout)
        if self.status is None:
            return egress.Answer(None, "no answer: ConnectionRefusedError", 0.0)
        error = None if 200 <= self.status < 300 else f"answered {self.status}"
        return egress.Answer(self.status, error, self.delay)


def public_dns(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


def setup(
    sender: Any, *hooks: Webhook, clock: Clock | None = None, resolver: Any = public_dns, timeout: float = 5.0
) -> tuple[Deliverer, FakeWebhookRepository, FakeQueue]:
    repo, queue = FakeWebhookRepository(), FakeQueue()
    for hook in hooks or (webhook(),):
        repo.add(hook)
    deliverer = Deliverer(
        webhooks=repo,
        queue=queue,
        key=KEY,
        policy=egress.EgressPolicy(),
        clock=clock or Clock(),
        sender=sender,
        resolver=resolver,
        timeout=timeout,
    )
    return deliverer, repo, queue


def webhook(hook_id: str = "wh1", url: str = "https://hooks.example.com/in") -> Webhook:
    return Webhook(hook_id, url, ("click",), "salt-" + hook_id, "2026-12-06T08:00:00.000Z")


def message(hook_id: str = "wh1", **log: Any) -> Delivery:
    return Delivery(hook_id, {**LOG, **log}, timeutil.iso(START))


def test_a_receiver_verifies_the_delivery_with_the_standardwebhooks_package() -> None:
    # Given a webhook and a receiver that answers 204, at the real time (verification checks it)
    receiver = Receiver()
    deliverer, _, queue = setup(receiver, clock=Clock(timeutil.now()))
    # When a click is delivered
    outcome = deliver(message(), deliverer)
    # Then it was POSTed once with the Standard Webhooks headers
    assert outcome.status == "delivered"
    target, body, headers = receiver.received[0]
    assert (target.host, target.address, target.path) == ("hooks.example.com", "93.184.216.34", "/in")
    assert headers["webhook-id"] == LOG["event_id"]
    assert headers["webhook-signature"].startswith("v1,")
    # And the standardwebhooks package verifies it with the webhook's secret, and returns the LOG
    secret = secret_of("wh1", "salt-wh1", KEY)
    assert StandardWebhook(secret).verify(body, headers) == LOG
    # But not with another secret, nor once the body is changed
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(secret_of("wh1", "other", KEY)).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(secret).verify(body.replace(b"click", b"clack"), headers)
    assert queue.messages == []


def test_the_backoff_doubles_from_five_seconds_up_to_an_hour() -> None:
    assert [retry_delay(n) for n in range(1, 13)] == [
        5,
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        1280,
        2560,
        3600,
        3600,
    ]
    assert retry_delay(500) == 3600


def test_a_failed_attempt_is_queued_again_after_the_backoff_and_shown_on_the_webhook(
    reliability: Any,
) -> None:
    # Given a receiver answering 500
    clock = Clock()
    deliverer, repo, queue = setup(Receiver(500), clock=clock)
    # When the first attempt fails
    outcome = deliver(message(), deliverer)
    # Then the delivery is queued again for 5 s later, as attempt 2
    assert outcome.status == "retrying"
    [(retry, delay)] = queue.take()
    assert (retry.attempt, delay, retry.due_at) == (2, 5, timeutil.iso(START + timedelta(seconds=5)))
    # And the webhook shows the error and since when it fails
    hook = repo.hooks["wh1"]
    assert (hook.last_error, hook.failing_since) == ("answered 500", timeutil.iso(START))
    # When the receiver answers again
    clock.now += timedelta(seconds=5)
    deliverer_ok, _, _ = setup(Receiver(204), clock=clock)
    object.__setattr__(deliverer_ok, "webhooks", repo)
    assert deliver(retry, deliverer_ok).status == "delivered"
    # Then the webhook no longer fails (its last error is kept)
    assert repo.hooks["wh1"].failing_since is None
    assert repo.hooks["wh1"].last_error == "answered 500"
    reliability.record("webhooks", "receiver answers 500, then 204", 2, "retried after 5 s, delivered once")


def test_a_backoff_longer_than_sqs_allows_is_waited_out_on_the_queue() -> None:
    # Given the 10th attempt fails: the next is due 2560 s later, SQS delays 900 s at most
    clock = Clock()
    receiver = Receiver(503)
    deliverer, _, queue = setup(receiver, clock=clock)
    deliver(Delivery("wh1", LOG, timeutil.iso(START), attempt=10), deliverer)
    [(retry, delay)] = queue.take()
    assert delay == 900 and retry.due_at == timeutil.iso(START + timedelta(seconds=2560))
    # When the message comes back after 900 s
    clock.now += timedelta(seconds=900)
    # Then it goes back on the queue without an attempt
    assert deliver(retry, deliverer).status == "waiting"
    [(again, delay)] = queue.take()
    assert again == retry and delay == 900
    assert len(receiver.received) == 1


def test_a_receiver_down_for_24_hours_is_retried_then_dead_lettered(reliability: Any) -> None:
    # Given a receiver that never answers, and a clock that follows the queue
    clock = Clock()
    receiver = Receiver(None)
    deliverer, repo, queue = setup(receiver, clock=clock)
    pending = [(message(), 0)]
    attempts_at: list[datetime] = []
    # When every message is taken when it becomes visible, for as long as there is one
    while pending:
        [(current, delay)] = pending
        clock.now += timedelta(seconds=delay)
        if deliver(current, deliverer).status != "waiting":
            attempts_at.append(clock.now)
        pending = queue.take()
    # Then it was tried with growing gaps for 24 hours, the last attempt at the 24-hour mark
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(attempts_at)]
    assert gaps[:5] == [5, 10, 20, 40, 80]
    assert max(gaps) == 3600
    assert attempts_at[-1] == START + timedelta(hours=24)
    assert len(receiver.received) == len(attempts_at) < 40
    # And then dead-lettered, once, with its error, and the webhook says so
    [dead] = queue.dead
    assert dead.event_id == LOG["event_id"] and dead.last_error is not None
    hook = repo.hooks["wh1"]
    assert hook.dead_lettered == 1
    assert hook.failing_since == timeutil.iso(START)
    assert hook.last_error is not None and "no answer" in hook.last_error
    reliability.record(
        "webhooks",
        "receiver down for 24 hours",
        len(attempts_at),
        "retried with backoff 5 s to 1 h, dead-lettered at 24 h, webhook shows failing_since",
    )


def test_a_deleted_or_unsubscribed_webhook_gets_nothing() -> None:
    receiver = Receiver()
    deliverer, _repo, queue = setup(receiver)
    assert deliver(message("wh-gone"), deliverer).status == "dropped"
    assert deliver(message(type="open"), deliverer).status == "dropped"
    assert receiver.received == [] and queue.messages == []


def test_a_slow_receiver_does_not_delay_the_others(reliability: Any) -> None:
    # Given one receiver that takes 1.5 s and others that answer at once
    finished: dict[str, float] = {}
    started = time.monotonic()
    lock = threading.Lock()

    def sender(
        target: egress.Target, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> egress.Answer:
        if target.host == "slow.example.com":
            time.sleep(1.5)
        with lock:
            finished[target.host] = time.monotonic() - started
        return egress.Answer(204, None, 0.0)

    hooks = [webhook("slow", "https://slow.example.com/")] + [
        webhook(f"fast{n}", f"https://fast{n}.example.com/") for n in range(5)
    ]
    deliverer, _, _ = setup(sender, *hooks)
    # When a batch holding a delivery for each is delivered
    outcomes = deliver_all([message(hook.id) for hook in hooks], deliverer)
    # Then all are delivered, and the fast ones did not wait for the slow one
    assert {outcome.status for outcome in outcomes} == {"delivered"}
    assert max(t for host, t in finished.items() if host != "slow.example.com") < 0.5
    assert finished["slow.example.com"] >= 1.5
    reliability.record(
        "webhooks", "one receiver slow (1.5 s) among 6", 6, "the 5 others delivered within 0.5 s"
    )


def test_a_receiver_slower_than_the_timeout_is_a_failure_retried_later(reliability: Any) -> None:
    deliverer, _repo, queue = setup(Receiver(204, delay=0.3), timeout=0.1)
    outcome = deliver(message(), deliverer)
    assert outcome.status == "retrying" and "timed out" in (outcome.error or "")
    assert len(queue.take()) == 1
    reliability.record(
        "webhooks", "receiver slower than the timeout", 1, "failed at the timeout, retried later"
    )


def test_a_host_that_now_resolves_to_a_private_address_is_not_called(reliability: Any) -> None:
    # Given a webhook registered while its host resolved to a public address
    # When its DNS now answers a private address (or the metadata address)
    for address in ("10.0.0.8", "169.254.169.254", "127.0.0.1"):
        receiver = Receiver()
        deliverer, repo, _queue = setup(receiver, resolver=lambda host, port, a=address: [a])
        outcome = deliver(message(), deliverer)
        # Then nothing is sent, the attempt fails and is retried later
        assert receiver.received == []
        assert outcome.status == "retrying"
        assert "refused" in (repo.hooks["wh1"].last_error or "")
    reliability.record(
        "webhooks", "DNS changed to a private address after registration", 3, "not called, retried"
    )


def test_a_message_that_cannot_be_queued_again_is_left_on_the_queue() -> None:
    class BrokenQueue(FakeQueue):
        def send(self, deliveries: Any) -> None:
            raise RuntimeError("SQS is unavailable")

    deliverer, _, _ = setup(Receiver(500))
    object.__setattr__(deliverer, "queue", BrokenQueue())
    [outcome] = deliver_all([message()], deliverer)
    assert outcome.status == "unprocessed"


def test_the_attempt_timeout_defaults_to_five_seconds() -> None:
    assert delivery.TIMEOUT_SECONDS == 5.0
