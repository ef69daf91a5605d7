"""Events out: each new raw event of the stream becomes its LOG, goes on the bus and is queued once
for every webhook subscribed to its type. In-memory bus, queue, webhooks and tracked URLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from functions.api.report_schemas import LogItem
from functions.events.log import LinkInfo, log_of
from functions.events.publish import new_raw_events, publish
from functions.shared.raw_events import ONE_CLICK, RawEvent, to_item
from functions.shared.webhooks import Webhook
from tests.fakes_webhooks import FakeBus, FakeLinks, FakeQueue, FakeWebhookRepository

AT = datetime(2026, 12, 6, 9, 30, 15, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
LINKS = FakeLinks(
    {
        ("d1", "u1"): LinkInfo("https://shop.example.com/sale", "Sale", "click"),
        ("d1", "u2"): LinkInfo("https://shop.example.com/unsubscribe", "Unsubscribe", "opt_out"),
    }
)


def raw(kind: str = "click", url_id: str | None = "u1", **extra: Any) -> dict[str, Any]:
    """A raw-event item as the stream's NewImage carries it, in plain values."""
    event = RawEvent(
        extra.pop("event_id", "e" + kind + (url_id or "")),
        kind,
        "d1",
        "r1",
        url_id,
        AT,
        extra.pop("user_agent", CHROME),
        "p1",
        "203.0.113.0",
        extra.pop("proof", False),
        **extra,
    )
    return new_raw_events([stream_record(event)])[0]


def stream_record(event: RawEvent, name: str = "INSERT") -> dict[str, Any]:
    TypeSerializer()
    item = to_item(event, 30)
    return {
        "eventName": name,
        "dynamodb": {"NewImage": item if name != "REMOVE" else None, "Keys": {"shard": item["shard"]}},
    }


def hook(hook_id: str, *events: str) -> Webhook:
    return Webhook(hook_id, f"https://{hook_id}.example.com/", tuple(events), "salt", "2026-12-06T08:00:00Z")


def test_a_log_has_exactly_the_fields_of_the_logs_route() -> None:
    # Given a click on a tracked URL
    log = log_of(raw(), LINKS.link("d1", "u1"))
    # Then its fields are those GET .../tracking/logs answers, machine included
    assert set(log) == set(LogItem.model_fields)
    LogItem.model_validate(log)
    assert log["type"] == "click"
    assert (log["url_id"], log["url"], log["label"]) == ("u1", "https://shop.example.com/sale", "Sale")
    assert log["at"] == "2026-12-06T09:30:15.000Z"
    assert (log["browser"], log["os"], log["device"]) == ("Chrome", "Windows", "desktop")
    assert log["machine"] is None and log["proof"] is False


def test_a_click_takes_the_type_of_its_link_and_an_open_names_no_url() -> None:
    assert log_of(raw(url_id="u2"), LINKS.link("d1", "u2"))["type"] == "opt_out"
    opened = log_of(raw("open", None), None)
    assert (opened["type"], opened["url_id"], opened["url"], opened["label"]) == ("open", None, None, None)


def test_a_one_click_unsubscribe_is_an_opt_out_without_a_link() -> None:
    # Given the raw event a POST /u/{token} records (a click without URL, source one_click)
    log = log_of(raw(url_id=None, source=ONE_CLICK), None)
    # Then it is published as an opt-out, as the logs route shows it
    assert (log["type"], log["url_id"], log["url"], log["label"]) == ("opt_out", None, None, None)


def test_web_hits_and_machine_verdicts_are_carried() -> None:
    page = log_of(raw("page", None, site_id="s1", page_url="https://shop.example.com/p/1"), None)
    assert (page["type"], page["url"]) == ("page", "https://shop.example.com/p/1")
    bought = log_of(raw("transaction", None, site_id="s1", amount="12.499", currency="EUR"), None)
    assert (bought["type"], bought["amount"], bought["currency"]) == ("transaction", 12.5, "EUR")
    honeypot = log_of(raw(url_id=None, machine="scanner", machine_reason="honeypot", honeypot=True), None)
    assert (honeypot["type"], honeypot["url_id"], honeypot["machine"]) == ("click", None, "scanner")
    proof = log_of(raw(proof=True), LINKS.link("d1", "u1"))
    assert proof["proof"] is True


def test_only_inserted_items_are_new_hits() -> None:
    event = RawEvent("e1", "open", "d1", "r1", None, AT, None, None, None, False)
    records = [stream_record(event, "INSERT"), stream_record(event, "MODIFY"), stream_record(event, "REMOVE")]
    assert [item["event_id"] for item in new_raw_events(records)] == ["e1"]


def test_every_event_goes_on_the_bus_and_to_each_subscribed_webhook_once() -> None:
    # Given a webhook for clicks, one for opt-outs and opens, one for pages
    webhooks = FakeWebhookRepository()
    for webhook in (hook("a", "click"), hook("b", "opt_out", "open"), hook("c", "page")):
        webhooks.add(webhook)
    bus, queue = FakeBus(), FakeQueue()
    events = [raw(), raw(url_id="u2"), raw("open", None)]
    # When the stream batch is published
    published = publish(events, links=LINKS, bus=bus, queue=queue, webhooks=webhooks, now=AT)
    # Then every event is on the bus, in order
    assert [log["type"] for log in bus.logs] == ["click", "opt_out", "open"]
    # And each webhook gets exactly its types, right away (no delay), once each
    sent = sorted((d.webhook_id, d.type, delay) for d, delay in queue.messages)
    assert sent == [("a", "click", 0), ("b", "open", 0), ("b", "opt_out", 0)]
    assert (published.events, published.deliveries) == (3, 3)
    assert all(d.first_queued_at == "2026-12-06T09:30:15.000Z" and d.attempt == 1 for d, _ in queue.messages)


def test_a_bus_failure_fails_the_batch_before_anything_is_queued() -> None:
    # Given a bus that refuses: the stream will retry the whole batch (at least once)
    webhooks = FakeWebhookRepository()
    webhooks.add(hook("a", "click"))
    queue = FakeQueue()
    with pytest.raises(RuntimeError):
        publish([raw()], links=LINKS, bus=FakeBus(fail=True), queue=queue, webhooks=webhooks)
    assert queue.messages == []


def test_an_empty_batch_publishes_nothing() -> None:
    bus, queue = FakeBus(), FakeQueue()
    assert publish([], links=LINKS, bus=bus, queue=queue, webhooks=FakeWebhookRepository()).events == 0
    assert bus.logs == [] and queue.messages == []


def burst_raw(
    event_id: str, seconds: int, client: str, recipient: str = "r1", **extra: Any
) -> dict[str, Any]:
    event = RawEvent(
        event_id,
        "click",
        "d1",
        recipient,
        extra.pop("url_id", "u1"),
        AT + timedelta(seconds=seconds),
        CHROME,
        None,
        None,
        False,
        client_key=client,
        **extra,
    )
    return new_raw_events([stream_record(event)])[0]


def test_a_honeypot_hit_in_the_batch_makes_its_clients_burst_scanner_hits() -> None:
    # Given a batch: client A clicks, a person (client B) clicks, A hits the honeypot 2 s later, A clicked
    # 40 s before (outside the 30 s window), and A's key on another recipient's message clicks
    honeypot = {"url_id": None, "machine": "scanner", "machine_reason": "honeypot link", "honeypot": True}
    batch = [
        burst_raw("a-click", 0, "A"),
        burst_raw("b-click", 1, "B"),
        burst_raw("a-honeypot", 2, "A", burst_seconds=30, **honeypot),
        burst_raw("a-early", -40, "A"),
        burst_raw("other-message", 1, "A", recipient="r2"),
    ]
    bus = FakeBus()
    # When the batch is published
    publish(batch, links=LINKS, bus=bus, queue=FakeQueue(), webhooks=FakeWebhookRepository(), now=AT)
    machine = {log["event_id"]: (log["machine"], log["machine_reason"]) for log in bus.logs}
    # Then A's click within the window is a scanner hit, saying why; the others are as recorded
    assert machine["a-click"][0] == "scanner" and "honeypot" in (machine["a-click"][1] or "")
    assert machine["a-honeypot"] == ("scanner", "honeypot link")
    assert machine["b-click"] == (None, None)
    assert machine["a-early"] == (None, None)
    assert machine["other-message"] == (None, None)
