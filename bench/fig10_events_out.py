"""Figure 10, events out: the delay from a hit to its webhook on the local stack, and what publishing
and webhooks add per million events in AWS.

Delay: the local stack starts in this process (``bench.local_stack``, with
``allow_http_webhooks``), a webhook is registered for clicks on a receiver on loopback, and clicks are
sent one after the other; each delay runs from sending the click to the receiver holding its POST
(stream poll, events-out handler, the hold for the burst window on the held-events queue, the held-events
handler, queue poll, deliverer, signature). Cost: the CPU the events-out
handler spends per event (the LOG: user agent, tracked URL, JSON) and the deliverer per delivery
(signing), measured with in-memory stand-ins for the bus, queue and tables, scaled to each function's
memory, with the requests each event causes at AWS list prices.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from bench.common import (
    LAMBDA_FULL_VCPU_MB,
    Figure,
    Table,
    command_for,
    configure_environment,
    ms,
    percentile,
    standalone,
)
from bench.local_stack import api, first_links, running_local_stack

CLICKS = 200
SPACING_S = 0.05
CPU_EVENTS = 20_000
# AWS list prices, us-east-1, in dollars.
LAMBDA_REQUESTS_PER_MILLION = 0.20
LAMBDA_GB_SECOND = 0.0000133334  # arm64
EVENTBRIDGE_CUSTOM_EVENTS_PER_MILLION = 1.00
SQS_REQUESTS_PER_MILLION = 0.40
READ_UNITS_PER_MILLION = 0.125
STREAM_BATCH = 100  # records per events-out invocation under load (at a trickle, one each)
DELIVERY_BATCH = 10
EVENTS_OUT_MB = 512
DELIVERER_MB = 256
RECEIVER_WAIT_S = 0.1  # a receiver's answer, which the deliverer waits for (ten at once per batch)
HTML = '<html><body><a href="https://shop.example.com/sale">Sale</a></body></html>'
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def _receiver(arrivals: dict[str, float]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            arrivals[json.loads(body)["recipient_id"]] = time.perf_counter()
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _delays() -> list[float]:
    arrivals: dict[str, float] = {}
    server = _receiver(arrivals)
    try:
        with running_local_stack(allow_http_webhooks=True) as base:
            api(
                base,
                "POST",
                "/api/webhooks",
                {"url": f"http://127.0.0.1:{server.server_address[1]}/", "events": ["click"]},
            )
            recipients = [{"id": f"r{n:04d}"} for n in range(CLICKS)]
            links = first_links(base, {"label": "Bench events out", "html": HTML}, recipients)
            sent: dict[str, float] = {}
            parts = urlsplit(base)
            for recipient, link in zip(recipients, links, strict=True):
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                sent[recipient["id"]] = time.perf_counter()
                connection.request("GET", urlsplit(link).path, headers={"User-Agent": CHROME})
                connection.getresponse().read()
                connection.close()
                time.sleep(SPACING_S)
            deadline = time.monotonic() + 120
            while len(arrivals) < CLICKS and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        server.shutdown()
    return [arrivals[r] - sent[r] for r in sent if r in arrivals]


def _cpu_per_event() -> tuple[float, float]:
    """CPU seconds of the events-out handler's logic per event, and of the deliverer's per delivery."""
    from functions.events.delivery import signed_request
    from functions.events.log import LinkInfo
    from functions.events.messages import Delivery
    from functions.events.publish import new_raw_events, publish
    from functions.shared.raw_events import RawEvent, to_item
    from functions.shared.webhooks import Webhook, secret_of

    class Links:
        def link(self, delivery_id: str, url_id: str) -> LinkInfo:
            return LinkInfo("https://shop.example.com/sale", "Sale", "click")

    class Sink:
        def put(self, logs: Any) -> None:
            json.dumps(list(logs))  # the bus client serializes each LOG

        def send(self, deliveries: Any) -> None:
            for delivery, _ in deliveries:
                delivery.to_json()

        def dead_letter(self, delivery: Any) -> None: ...

    class Hooks:
        def all(self) -> list[Webhook]:
            return [
                Webhook("wh1", "https://hooks.example.com/", ("click",), "salt", "2026-12-06T00:00:00.000Z")
            ]

    agents = [f"{CHROME} variant/{n}" for n in range(50)]
    now = datetime.now(UTC)
    records = [
        {
            "eventName": "INSERT",
            "dynamodb": {
                "NewImage": to_item(
                    RawEvent(
                        f"e{n:08d}",
                        "click",
                        "d1",
                        f"r{n}",
                        "u1",
                        now,
                        agents[n % 50],
                        "p1",
                        "203.0.113.0",
                        False,
                    ),
                    30,
                )
            },
        }
        for n in range(CPU_EVENTS)
    ]
    sink = Sink()
    publish(
        new_raw_events(records[:STREAM_BATCH]), links=Links(), bus=sink, queue=sink, webhooks=Hooks()
    )  # warm
    started = time.process_time()
    for start in range(0, CPU_EVENTS, STREAM_BATCH):
        publish(
            new_raw_events(records[start : start + STREAM_BATCH]),
            links=Links(),
            bus=sink,
            queue=sink,
            webhooks=Hooks(),
        )
    publish_cpu = (time.process_time() - started) / CPU_EVENTS
    secret = secret_of("wh1", "salt", b"bench-webhook-key-0123456789")
    log = {"event_id": "e1", "type": "click", "url": "https://shop.example.com/sale", "machine": None}
    started = time.process_time()
    for n in range(CPU_EVENTS):
        signed_request(Delivery("wh1", {**log, "event_id": f"e{n}"}, "2026-12-06T00:00:00.000Z"), secret, now)
    deliver_cpu = (time.process_time() - started) / CPU_EVENTS
    return publish_cpu, deliver_cpu


def _gb_seconds(cpu_s: float, memory_mb: int) -> float:
    """Billed GB-seconds of ``cpu_s`` of one vCPU's work, on a function with ``memory_mb``."""
    return cpu_s * max(1.0, LAMBDA_FULL_VCPU_MB / memory_mb) * memory_mb / 1024


def measure(inputs: dict[str, Figure]) -> Figure:
    configure_environment()
    publish_cpu, deliver_cpu = _cpu_per_event()
    delays = _delays()
    million = 1e6
    publishing = {
        "EventBridge PutEvents (custom events)": EVENTBRIDGE_CUSTOM_EVENTS_PER_MILLION,
        "events-out invocations (one per 100-record batch)": LAMBDA_REQUESTS_PER_MILLION / STREAM_BATCH,
        # Held: one message per message (delivery + recipient) and batch, at most one per event.
        "held-events SQS send, receive, delete (batches of 10)": SQS_REQUESTS_PER_MILLION
        * 3
        / DELIVERY_BATCH,
        "held-events invocations (one per 10 messages)": LAMBDA_REQUESTS_PER_MILLION / DELIVERY_BATCH,
        "honeypot hits (one Query of the shard per message)": READ_UNITS_PER_MILLION * 0.5,
        "events-out compute": million * _gb_seconds(publish_cpu, EVENTS_OUT_MB) * LAMBDA_GB_SECOND,
        "webhook list (one Query per held batch)": READ_UNITS_PER_MILLION * 0.5 / DELIVERY_BATCH,
    }
    per_webhook = {
        "SQS send, receive, delete (batches of 10)": SQS_REQUESTS_PER_MILLION * 3 / DELIVERY_BATCH,
        "deliverer invocations (one per 10 deliveries)": LAMBDA_REQUESTS_PER_MILLION / DELIVERY_BATCH,
        "deliverer compute (signing) and waiting (0.1 s per batch)": million
        * (_gb_seconds(deliver_cpu, DELIVERER_MB) + RECEIVER_WAIT_S / DELIVERY_BATCH * DELIVERER_MB / 1024)
        * LAMBDA_GB_SECOND,
        "webhook read (one GetItem per delivery)": READ_UNITS_PER_MILLION * 0.5,
    }
    publish_total = sum(publishing.values())
    webhook_total = sum(per_webhook.values())
    rows = [[name, f"${value:.4f}"] for name, value in publishing.items()]
    rows.append(["**publishing, per million events**", f"**${publish_total:.2f}**"])
    rows += [[name, f"${value:.4f}"] for name, value in per_webhook.items()]
    rows.append(["**each webhook subscribed, per million events**", f"**${webhook_total:.2f}**"])
    median, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
    return Figure(
        number=10,
        title="Events out",
        target="a hit reaches its webhook within burst_seconds + 30 s (30 s by default: 60 s)",
        status=Figure.verdict(len(delays) == CLICKS and p99 < 60.0),
        headline=(
            f"hit to webhook on the local stack: median {ms(median)}, p99 {ms(p99)} ({len(delays)}/{CLICKS} "
            f"delivered); publishing ${publish_total:.2f} per million events, ${webhook_total:.2f} more per "
            "webhook"
        ),
        command=command_for("fig10_events_out"),
        tables=[
            Table(
                ["clicks", "delivered", "median", "p90", "p99", "max"],
                [
                    [
                        str(CLICKS),
                        str(len(delays)),
                        ms(median),
                        ms(percentile(delays, 0.9)),
                        ms(p99),
                        ms(max(delays) if delays else float("nan")),
                    ]
                ],
                caption=f"One click every {SPACING_S * 1e3:.0f} ms over loopback; from sending the click to the "
                "receiver holding the signed POST.",
            ),
            Table(["cost item", "per million events"], rows, caption="AWS list prices, us-east-1."),
        ],
        notes=[
            f"CPU per event: events-out {publish_cpu * 1e6:,.0f} µs (LOG with user-agent parsing, 50 distinct "
            f"agents), deliverer {deliver_cpu * 1e6:,.0f} µs per delivery (JSON and signature); scaled to "
            f"{EVENTS_OUT_MB} MB and {DELIVERER_MB} MB functions (one vCPU at {LAMBDA_FULL_VCPU_MB} MB).",
            "The stream's reads by Lambda are free; EventBridge bills each entry up to 64 KB as one event. At "
            "a trickle each hit is its own stream batch: the events-out invocations then cost $0.20 per million "
            "instead of $0.002. The delay is mostly the hold: each hit waits on the held-events queue for the "
            "burst window (burst_seconds, 30 s by default) plus 5 s, so that every honeypot hit of its message "
            "from the same client within the window is recorded when it is judged; before that the stream's "
            "3-second batching window, then the local stream poll (every 0.2 s, backing off to 1 s while the "
            "stream is empty) and the queues' long polls (moto wakes one when a message arrives and sees a "
            "delayed one within a second); "
            "on AWS the event source mappings poll continuously. The Query per held message reads the "
            "message's raw-events shard over ±burst_seconds; its cost grows with the shard's traffic in that "
            "window (about 0.5 read unit per 4 KB read).",
        ],
        data={"delays_s": delays, "publish_cpu_s": publish_cpu, "deliver_cpu_s": deliver_cpu},
    )


if __name__ == "__main__":
    standalone(measure)
