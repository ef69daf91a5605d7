"""Load on the local stack over loopback: concurrent clients, bounded in count and time.

Zero errors, and every hit sent becomes one raw event, counted by the tracking workflow.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

CLIENTS = 16
HITS_PER_CLIENT = 40
TIME_LIMIT_SECONDS = 90
HTML = '<p><a href="https://shop.example/a">A</a> <a href="https://shop.example/b">B</a></p>'


def run_workflow_until(api: requests.Session, stack_url: str, done: Any, attempts: int = 5) -> dict[str, Any]:
    """Run the workflow (again, if another test's run held the lock) until `done(statistics)`."""
    statistics: dict[str, Any] = {}
    for _ in range(attempts):
        run_id = api.post(f"{stack_url}/api/workflows/tracking/runs").json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = api.get(f"{stack_url}/api/workflows/tracking", params={"limit": 50}).json()["runs"]
            if any(r["id"] == run_id and r["status"] != "running" for r in runs):
                break
            time.sleep(0.2)
        statistics = done()
        if statistics.get("done"):
            break
    return statistics


def test_concurrent_clients_get_no_error_and_every_hit_is_counted(
    api: requests.Session, stack_url: str, reliability: Any
) -> None:
    # Given a delivery rendered for 40 recipients
    delivery = api.post(f"{stack_url}/api/deliveries", json={"label": "load", "html": HTML}).json()["id"]
    recipients = [{"id": f"load-{n}"} for n in range(40)]
    messages = api.post(
        f"{stack_url}/api/deliveries/{delivery}/messages", json={"recipients": recipients}
    ).json()
    links = [
        link
        for message in messages["messages"]
        for link in re.findall(
            r'(?:href|src)="(http://[^"]+/(?:r|o)/[^"]+)"(?! aria-hidden)', message["html"]
        )
    ]
    assert len(links) == 40 * 3

    # When 16 clients hit the tracked links at once, within a time limit
    deadline = time.monotonic() + TIME_LIMIT_SECONDS

    def client(n: int) -> tuple[int, int, int]:
        sent = errors = clicks = 0
        with requests.Session() as session:
            for i in range(HITS_PER_CLIENT):
                if time.monotonic() > deadline:
                    break
                link = links[(n * HITS_PER_CLIENT + i) % len(links)]
                response = session.get(link, allow_redirects=False, timeout=30)
                sent += 1
                clicks += "/r/" in link
                errors += response.status_code not in (200, 302)
        return sent, errors, clicks

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))
    sent = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    clicks = sum(r[2] for r in results)

    # Then no request failed, and the workflow counts exactly the hits sent
    def counted() -> dict[str, Any]:
        stats = api.get(f"{stack_url}/api/deliveries/{delivery}/tracking/statistics").json()
        stats["done"] = stats["total_opens"] + stats["total_clicks"] >= sent
        return stats

    stats = run_workflow_until(api, stack_url, counted)
    total = stats["total_opens"] + stats["total_clicks"]
    reliability.record(
        "Load",
        f"{CLIENTS} concurrent clients on the local stack over loopback",
        sent,
        f"{errors} errors; {total} events counted for {sent} hits",
        max(0, sent - total),
        max(0, total - sent),
    )
    assert errors == 0
    assert sent == CLIENTS * HITS_PER_CLIENT
    assert (stats["total_clicks"], stats["total_opens"]) == (clicks, sent - clicks)
