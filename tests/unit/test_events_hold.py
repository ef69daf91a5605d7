"""Events out holds each hit until its burst window has passed, then judges it against every honeypot
hit of its message from the same client (``publish.hold`` then ``publish.publish_held``). In-memory
raw events, hold queue, bus, delivery queue and webhooks; times are given, no clock runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.events.publish import HOLD_MARGIN_SECONDS, Held, hold, new_raw_events, publish_held
from functions.shared.machine import BURST_REASON
from functions.shared.raw_events import RawEvent
from tests.fakes_webhooks import (
    FakeBus,
    FakeHoldQueue,
    FakeQueue,
    FakeRawEvents,
    FakeWebhookRepository,
)
from tests.unit.test_events_publish import LINKS, hook, stream_record

AT = datetime(2026, 12, 6, 9, 30, 15, tzinfo=UTC)
BURST = 30


def hit(
    event_id: str, seconds: float, client: str | None, *, honeypot: bool = False, **extra: Any
) -> dict[str, Any]:
    """A click of message (d1, r1) ``seconds`` after AT, as the stream's NewImage carries it."""
    event = RawEvent(
        event_id,
        "click",
        extra.pop("delivery_id", "d1"),
        extra.pop("recipient_id", "r1"),
        None if honeypot else "u1",
        AT + timedelta(seconds=seconds),
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0",
        None,
        "203.0.113.0",
        extra.pop("proof", False),
        client_key=client,
        honeypot=honeypot,
        machine="scanner" if honeypot else None,
        machine_reason="honeypot link" if honeypot else None,
        burst_seconds=BURST if honeypot else None,
        **extra,
    )
    return new_raw_events([stream_record(event)])[0]


def published(*batches: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """Every stream batch recorded and held, then every held message published after its delay:
    each published event's (machine, machine_reason) by event id."""
    recorded, held, bus = FakeRawEvents(), FakeHoldQueue(), FakeBus()
    for batch in batches:
        recorded.add(batch)
        hold(batch, queue=held, burst_seconds=BURST)
    for message, delay in held.take():
        assert delay == BURST + HOLD_MARGIN_SECONDS
        publish_held(
            Held.from_json(message.to_json()),
            honeypots=recorded,
            links=LINKS,
            bus=bus,
            queue=FakeQueue(),
            webhooks=FakeWebhookRepository(),
        )
    return {log["event_id"]: (log["machine"], log["machine_reason"]) for log in bus.logs}


def test_a_honeypot_hit_ten_seconds_after_a_click_from_the_same_client_makes_it_a_scanner() -> None:
    # Given a click from client A, and 10 s later (another stream batch) a honeypot hit from client A
    machines = published([hit("c1", 0, "A")], [hit("h1", 10, "A", honeypot=True)])
    # Then the click is published as the scanner's, with the reason the tracking workflow logs
    assert machines["c1"] == ("scanner", BURST_REASON)
    assert machines["h1"] == ("scanner", "honeypot link")


def test_another_clients_click_stays_a_persons() -> None:
    # Given a click from client B next to a honeypot hit from client A on the same message
    machines = published([hit("c1", 0, "B")], [hit("h1", 10, "A", honeypot=True)])
    # Then the click is published as a person's
    assert machines["c1"] == (None, None)


def test_a_click_outside_the_burst_window_or_on_another_message_stays_a_persons() -> None:
    machines = published(
        [hit("early", -(BURST + 1), "A"), hit("other", 0, "A", recipient_id="r2")],
        [hit("h1", 0, "A", honeypot=True)],
    )
    assert machines["early"] == (None, None)
    assert machines["other"] == (None, None)


def test_a_gateway_burst_across_two_stream_batches_is_a_scanner_whole() -> None:
    # Given a gateway's burst: two clicks in one stream batch, the honeypot hit and a click in the next
    machines = published(
        [hit("c1", 0, "A"), hit("c2", 1, "A")],
        [hit("h1", 2, "A", honeypot=True), hit("c3", 3, "A")],
    )
    # Then every hit of the burst is published as the scanner's
    assert machines == {
        "c1": ("scanner", BURST_REASON),
        "c2": ("scanner", BURST_REASON),
        "h1": ("scanner", "honeypot link"),
        "c3": ("scanner", BURST_REASON),
    }


def test_the_stream_holds_one_message_per_recipient_message_and_publishes_each_event_once() -> None:
    # Given a stream batch with hits of two messages and a webhook for clicks
    batch = [hit("c1", 0, "A"), hit("c2", 0, "A", recipient_id="r2"), hit("c3", 1, "A")]
    held = FakeHoldQueue()
    # When the batch is held
    assert hold(batch, queue=held, burst_seconds=BURST) == 3
    messages = held.take()
    # Then one message per (delivery, recipient), delayed by the burst window and the margin
    assert sorted([e["event_id"] for e in m.events] for m, _ in messages) == [["c1", "c3"], ["c2"]]
    webhooks = FakeWebhookRepository()
    webhooks.add(hook("a", "click"))
    bus, queue, recorded = FakeBus(), FakeQueue(), FakeRawEvents()
    recorded.add(batch)
    for message, _delay in messages:
        publish_held(message, honeypots=recorded, links=LINKS, bus=bus, queue=queue, webhooks=webhooks)
    # And each event goes on the bus and to the webhook exactly once; one window read per message
    assert sorted(log["event_id"] for log in bus.logs) == ["c1", "c2", "c3"]
    assert sorted(d.event_id for d, delay in queue.messages) == ["c1", "c2", "c3"]
    assert recorded.reads == 2


def test_a_proof_honeypot_hit_and_one_without_client_reclassify_nothing() -> None:
    # Given a click from A and one without a client key; then a honeypot proof hit from A (the operator's
    # own check) and a honeypot hit without a client key
    machines = published(
        [hit("c1", 0, "A"), hit("c2", 0, None)],
        [hit("h1", 1, "A", honeypot=True, proof=True), hit("h2", 1, None, honeypot=True)],
    )
    # Then both clicks stay a person's, as the tracking workflow logs them
    assert machines["c1"] == (None, None) and machines["c2"] == (None, None)


def test_a_held_message_the_bus_refuses_is_retried_whole_and_loses_nothing(reliability: Any) -> None:
    # Given a held message of two clicks and a webhook for clicks, and a bus refusing everything
    webhooks = FakeWebhookRepository()
    webhooks.add(hook("a", "click"))
    batch = [hit("c1", 0, "A"), hit("c2", 1, "B")]
    recorded, held = FakeRawEvents(), FakeHoldQueue()
    recorded.add(batch)
    hold(batch, queue=held, burst_seconds=BURST)
    [(message, _delay)] = held.take()
    bus, queue = FakeBus(fail=True), FakeQueue()
    # When it is published: it fails, so the queue hands it out again; nothing went to the webhook
    with pytest.raises(RuntimeError):
        publish_held(message, honeypots=recorded, links=LINKS, bus=bus, queue=queue, webhooks=webhooks)
    assert queue.messages == []
    # Then the retry, with the bus back, publishes each event once
    bus.fail = False
    publish_held(message, honeypots=recorded, links=LINKS, bus=bus, queue=queue, webhooks=webhooks)
    assert sorted(log["event_id"] for log in bus.logs) == ["c1", "c2"]
    assert sorted(d.event_id for d, _ in queue.messages) == ["c1", "c2"]
    reliability.record("webhooks", "bus refuses a held message once", 2, "retried whole, each event out once")
