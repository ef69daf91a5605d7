"""Webhooks over HTTP on a stack started with ``--allow-http-webhooks``, with a real receiver on
loopback: a click reaches it, signed so that the standardwebhooks package verifies it, within
burst_seconds + 30 s and without a workflow run; a receiver answering 500 gets the event again; a
deleted webhook gets nothing more; the listing shows a failing webhook's error."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook as StandardWebhook

from functions.events.publish import BATCHING_WINDOW_SECONDS, HOLD_MARGIN_SECONDS
from functions.shared.machine import BURST_REASON
from tests.apigw import API_TOKEN
from tests.e2e.conftest import local_stack
from tests.webhook_receiver import Receiver, receiver

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
HTML = (
    '<html><body><p><a href="https://shop.example.com/sale" data-label="Sale">Sale</a>'
    '<a href="https://shop.example.com/unsubscribe" data-track="optout">Unsubscribe</a></p></body></html>'
)
LINK = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"(?! aria-hidden)')
HONEYPOT = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)" aria-hidden="true"')
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
# A short honeypot burst window keeps the stories fast: events out holds each hit this long.
BURST_SECONDS = 6
BURST_SECONDS_BOUND = BURST_SECONDS + 30  # the contract's bound on publishing


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, requests.Session]]:
    with local_stack(("--allow-http-webhooks",)) as base_url, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {API_TOKEN}"
        settings = {"ranges": [], "user_agents": [], "honeypot": True, "burst_seconds": BURST_SECONDS}
        answer = api.put(f"{base_url}/api/settings/machine-detection", json=settings, timeout=30)
        assert answer.status_code == 200, answer.text
        yield base_url, api


def register(base_url: str, api: requests.Session, hook: Receiver, events: list[str]) -> dict[str, Any]:
    answer = api.post(f"{base_url}/api/webhooks", json={"url": hook.url, "events": events}, timeout=30)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def links(base_url: str, api: requests.Session, recipient: str) -> tuple[str, list[str]]:
    delivery = api.post(
        f"{base_url}/api/deliveries", json={"label": f"Hooks {RUN}", "html": HTML}, timeout=30
    )
    assert delivery.status_code == 201, delivery.text
    delivery_id = delivery.json()["id"]
    answer = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": recipient}]},
        timeout=30,
    )
    return delivery_id, LINK.findall(answer.json()["messages"][0]["html"])


def send_one(base_url: str, api: requests.Session, label: str, recipient: str) -> tuple[str, dict[str, Any]]:
    """A new delivery and its message to one recipient: (delivery id, the message as answered)."""
    delivery = api.post(f"{base_url}/api/deliveries", json={"label": label, "html": HTML}, timeout=30)
    delivery_id = delivery.json()["id"]
    answer = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": recipient}]},
        timeout=30,
    )
    return delivery_id, dict(answer.json()["messages"][0])


def click(link: str) -> float:
    clicked = time.time()
    assert (
        requests.get(link, headers={"User-Agent": CHROME}, allow_redirects=False, timeout=30).status_code
        == 302
    )
    return clicked


def test_a_click_reaches_the_receiver_signed_and_in_time(stack: Any) -> None:
    base_url, api = stack
    with receiver() as hook:
        # Given a webhook for clicks and opt-outs on a loopback receiver
        created = register(base_url, api, hook, ["click", "opt_out"])
        delivery_id, (sale, unsubscribe) = links(base_url, api, f"wh-{RUN}")
        # When the recipient clicks the sale link, then the unsubscribe link (no workflow run)
        clicked = click(sale)
        click(unsubscribe)
        # Then both arrive within the bound, each once
        received = hook.wait_for(2, BURST_SECONDS_BOUND, delivery_id)
        assert len(received) == 2, received
        assert received[0].at - clicked < BURST_SECONDS_BOUND
        # And each verifies with the standardwebhooks package and the secret shown at registration
        logs = [StandardWebhook(created["secret"]).verify(r.body, r.headers) for r in received]
        by_type = {log["type"]: log for log in logs}
        assert set(by_type) == {"click", "opt_out"}
        sale_log = by_type["click"]
        assert sale_log["delivery_id"] == delivery_id and sale_log["recipient_id"] == f"wh-{RUN}"
        assert (sale_log["url"], sale_log["label"], sale_log["machine"]) == (
            "https://shop.example.com/sale",
            "Sale",
            None,
        )
        assert received[0].headers["webhook-id"] == logs[0]["event_id"]
        # And what the Tracking tab logs after a run says the same
        api.post(f"{base_url}/api/workflows/tracking/runs", timeout=30)
        deadline = time.monotonic() + 60
        items: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(items) < 2:
            items = api.get(f"{base_url}/api/deliveries/{delivery_id}/tracking/logs", timeout=30).json()[
                "items"
            ]
            time.sleep(0.3)
        assert {item["event_id"]: item for item in items}[sale_log["event_id"]] == sale_log
        api.delete(f"{base_url}/api/webhooks/{created['id']}", timeout=30)


def test_a_receiver_that_fails_gets_the_event_again_and_the_webhook_shows_it(
    stack: Any, reliability: Any
) -> None:
    base_url, api = stack
    with receiver(status=500) as hook:
        created = register(base_url, api, hook, ["click"])
        delivery_id, (sale, _) = links(base_url, api, f"wh500-{RUN}")
        click(sale)
        # Given the receiver answered 500 to the first attempt
        assert len(hook.wait_for(1, BURST_SECONDS_BOUND, delivery_id)) == 1
        # Then the listing shows the error (recorded once the answer is in)
        deadline = time.monotonic() + 10
        mine: dict[str, Any] = {}
        while time.monotonic() < deadline and not mine.get("last_error"):
            listed = {
                item["id"]: item for item in api.get(f"{base_url}/api/webhooks", timeout=30).json()["items"]
            }
            mine = listed[created["id"]]
            time.sleep(0.1)
        assert mine["last_error"] == "answered 500" and mine["failing_since"] is not None
        assert "secret" not in mine
        # When it answers 204 again (before the retry, due 5 s after the failure)
        hook.status = 204
        # Then the same event comes again after the backoff (5 s), and the webhook is healthy again
        second = hook.wait_for(2, 30, delivery_id)
        assert len(second) >= 2
        assert second[1].headers["webhook-id"] == second[0].headers["webhook-id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = {
                item["id"]: item for item in api.get(f"{base_url}/api/webhooks", timeout=30).json()["items"]
            }
            if listed[created["id"]]["failing_since"] is None:
                break
            time.sleep(0.2)
        assert listed[created["id"]]["failing_since"] is None
        api.delete(f"{base_url}/api/webhooks/{created['id']}", timeout=30)
    reliability.record(
        "webhooks", "receiver answers 500 (local stack, over HTTP)", 2, "retried after 5 s, delivered"
    )


def test_a_deleted_webhook_gets_nothing_more(stack: Any) -> None:
    base_url, api = stack
    with receiver() as hook:
        created = register(base_url, api, hook, ["click"])
        assert api.delete(f"{base_url}/api/webhooks/{created['id']}", timeout=30).status_code == 204
        _, (sale, _) = links(base_url, api, f"whdel-{RUN}")
        click(sale)
        # (the click is held for the burst window, then published: past that, still nothing)
        time.sleep(BATCHING_WINDOW_SECONDS + BURST_SECONDS + HOLD_MARGIN_SECONDS + 3)
        assert hook.requests == []


def test_a_private_or_http_url_is_refused_even_locally_unless_loopback(stack: Any) -> None:
    base_url, api = stack
    for url in (
        "http://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
    ):
        answer = api.post(f"{base_url}/api/webhooks", json={"url": url, "events": ["click"]}, timeout=30)
        assert answer.status_code == 422, (url, answer.text)


def test_msgtrack_webhooks_listen_prints_each_verified_event(stack: Any) -> None:
    import json
    import threading

    from local.webhooks_listen import listen

    base_url, api = stack
    # Given `msgtrack webhooks listen` for clicks against the stack
    printed: list[str] = []
    stop = threading.Event()
    listener = threading.Thread(target=listen, args=(base_url, API_TOKEN, ["click"], printed.append, stop))
    listener.start()
    try:
        deadline = time.monotonic() + 10
        while not printed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert printed and printed[0].startswith("listening on http://127.0.0.1:")
        # When a link is clicked
        delivery_id, (sale, _) = links(base_url, api, f"whlisten-{RUN}")
        click(sale)
        # Then the event is printed, verified
        deadline = time.monotonic() + BURST_SECONDS_BOUND
        mine: list[dict[str, Any]] = []
        while not mine and time.monotonic() < deadline:
            time.sleep(0.05)
            mine = [e for e in map(json.loads, printed[1:]) if e["delivery_id"] == delivery_id]
        assert [event["type"] for event in mine] == ["click"]
    finally:
        stop.set()
        listener.join(timeout=30)
    # And the webhook it registered is deleted when it stops
    assert all(
        "127.0.0.1" not in item["url"] or "/events" not in item["url"]
        for item in api.get(f"{base_url}/api/webhooks", timeout=30).json()["items"]
    )


def test_a_slow_receiver_does_not_delay_another(stack: Any, reliability: Any) -> None:
    base_url, api = stack
    with receiver() as slow, receiver() as fast:
        # Given two webhooks for clicks, one whose receiver takes 4 s to answer
        slow.delay = 4.0
        hooks = [register(base_url, api, hook, ["click"]) for hook in (slow, fast)]
        delivery_id, (sale, _) = links(base_url, api, f"whslow-{RUN}")
        # When a link is clicked
        clicked = click(sale)
        # Then both have it in time, and the fast one did not wait for the slow one's 4 s answer
        [fast_got] = fast.wait_for(1, BURST_SECONDS_BOUND, delivery_id)
        [slow_got] = slow.wait_for(1, BURST_SECONDS_BOUND, delivery_id)
        assert fast_got.at - clicked < BURST_SECONDS_BOUND
        apart = fast_got.at - slow_got.at
        assert apart < 2.0, apart
        for created in hooks:
            api.delete(f"{base_url}/api/webhooks/{created['id']}", timeout=30)
    reliability.record(
        "webhooks",
        "one receiver slow (4 s) beside another (local stack, over HTTP)",
        1,
        "the other got it at once",
    )


def test_a_scanner_following_every_link_is_published_as_a_scanner(stack: Any) -> None:
    base_url, api = stack
    with receiver() as hook:
        created = register(base_url, api, hook, ["click", "opt_out"])
        # Given a message, and a gateway that follows its links and its honeypot within a second
        delivery_id, message = send_one(base_url, api, f"Scan {RUN}", f"scan-{RUN}")
        html = message["html"]
        for link in [*LINK.findall(html), *HONEYPOT.findall(html)]:
            requests.get(link, headers={"User-Agent": CHROME}, allow_redirects=False, timeout=30)
        # Then every hit reaches the webhook as a scanner's, the links' hits for the honeypot's sake
        received = hook.wait_for(3, BURST_SECONDS_BOUND, delivery_id)
        logs = [json.loads(r.body) for r in received]
        assert len(logs) == 3
        assert {log["machine"] for log in logs} == {"scanner"}
        reasons = sorted(str(log["machine_reason"]) for log in logs)
        assert reasons == sorted(["honeypot link", BURST_REASON, BURST_REASON])
        api.delete(f"{base_url}/api/webhooks/{created['id']}", timeout=30)


def test_a_honeypot_hit_seconds_after_a_click_makes_the_published_click_a_scanners(stack: Any) -> None:
    base_url, api = stack
    with receiver() as hook:
        created = register(base_url, api, hook, ["click"])
        # Given a message whose sale link a gateway follows, then its honeypot a few seconds later, in
        # another stream batch (past the batching window) but within the burst window
        delivery_id, message = send_one(base_url, api, f"Late {RUN}", f"late-{RUN}")
        html = message["html"]
        clicked = click(LINK.findall(html)[0])
        time.sleep(BATCHING_WINDOW_SECONDS + 1)
        requests.get(
            HONEYPOT.findall(html)[0], headers={"User-Agent": CHROME}, allow_redirects=False, timeout=30
        )
        # Then the click reaches the webhook as the scanner's, with the reason the Tracking tab logs,
        # within the contract's bound
        received = hook.wait_for(2, BURST_SECONDS_BOUND, delivery_id)
        logs = {log["url"]: log for log in (json.loads(r.body) for r in received)}
        assert len(received) == 2, received
        assert min(r.at for r in received) - clicked < BURST_SECONDS_BOUND
        sale = logs["https://shop.example.com/sale"]
        assert (sale["machine"], sale["machine_reason"]) == ("scanner", BURST_REASON)
        assert {log["machine"] for log in logs.values()} == {"scanner"}
        api.delete(f"{base_url}/api/webhooks/{created['id']}", timeout=30)


def test_a_one_click_unsubscribe_reaches_the_webhook_as_an_opt_out(stack: Any) -> None:
    base_url, api = stack
    with receiver() as hook:
        created = register(base_url, api, hook, ["opt_out"])
        delivery_id, message = send_one(base_url, api, f"Unsub {RUN}", f"unsub-{RUN}")
        # Given the message's List-Unsubscribe URL, when the mailbox provider POSTs the one-click body
        unsubscribe = re.search(r"<(http[^>]+/u/[^>]+)>", message["headers"]["List-Unsubscribe"])
        assert unsubscribe is not None
        answer = requests.post(
            unsubscribe[1],
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": CHROME},
            timeout=30,
        )
        assert answer.status_code == 200
        # Then the webhook gets an opt-out of that recipient, without a link
        [received] = hook.wait_for(1, BURST_SECONDS_BOUND, delivery_id)
        log = json.loads(received.body)
        assert (log["type"], log["recipient_id"], log["url_id"]) == ("opt_out", f"unsub-{RUN}", None)
        api.delete(f"{base_url}/api/webhooks/{created['id']}", timeout=30)
