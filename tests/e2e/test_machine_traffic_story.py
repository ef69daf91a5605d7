"""Human and machine traffic over HTTP, on a stack started with ``--trust-forwarded-for`` (as behind a
CDN): a script is a bot, an MPP prefetch from Apple's network is apple_mpp, a Chrome click is a person;
the operator's range marks later hits; bad settings are 422s; the change is audited."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.apigw import API_TOKEN
from tests.e2e.conftest import local_stack

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
HTML = '<html><body><p><a href="https://shop.example.com/sale">Sale</a></p></body></html>'
LINK = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"(?! aria-hidden)')
HONEYPOT = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)" aria-hidden="true" tabindex="-1"')
PIXEL = re.compile(r'src="(http://127\.0\.0\.1:\d+/o/[^"]+)"')
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
SETTINGS = "/api/settings/machine-detection"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, requests.Session]]:
    with local_stack(("--trust-forwarded-for",)) as base_url, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield base_url, api


def message(base_url: str, api: requests.Session, recipient: str) -> tuple[str, str, str, str]:
    delivery = api.post(
        f"{base_url}/api/deliveries", json={"label": f"Machines {RUN}", "html": HTML}, timeout=30
    )
    assert delivery.status_code == 201, delivery.text
    delivery_id = delivery.json()["id"]
    answer = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": recipient}]},
        timeout=30,
    )
    html = answer.json()["messages"][0]["html"]
    return delivery_id, LINK.findall(html)[0], PIXEL.findall(html)[0], HONEYPOT.findall(html)[0]


def get(url: str, address: str, user_agent: str) -> requests.Response:
    headers = {"User-Agent": user_agent, "X-Forwarded-For": address}
    return requests.get(url, headers=headers, allow_redirects=False, timeout=30)


def logs_after_a_run(base_url: str, api: requests.Session, delivery_id: str) -> list[dict[str, Any]]:
    started = api.post(f"{base_url}/api/workflows/tracking/runs", timeout=30)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = api.get(f"{base_url}/api/workflows/tracking", timeout=30).json()["runs"]
        if any(r["id"] == run_id and r["status"] in ("succeeded", "failed") for r in runs):
            break
        time.sleep(0.3)
    answer = api.get(
        f"{base_url}/api/deliveries/{delivery_id}/tracking/logs", params={"order": "asc"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def test_each_hit_is_logged_as_a_person_or_as_the_machine_that_made_it(stack: Any) -> None:
    base_url, api = stack
    # Given a rendered message
    delivery_id, link, pixel, honeypot = message(base_url, api, f"m-{RUN}")
    # When MPP prefetches the pixel from Apple's network (X-Forwarded-For, trusted), a person clicks in
    # Chrome, a script fetches the link, and a scanner follows the honeypot
    assert get(pixel, "17.58.1.2", "Mozilla/5.0").status_code == 200
    assert get(link, "198.51.100.23", CHROME).status_code == 302
    assert get(link, "198.51.100.24", "python-requests/2.31").status_code == 302
    trap = get(honeypot, "40.92.17.33", CHROME)
    assert (trap.status_code, trap.headers.get("Location"), trap.headers.get("Set-Cookie")) == (
        200,
        None,
        None,
    )
    # Then the LOGs say who made each hit and why
    logs = logs_after_a_run(base_url, api, delivery_id)
    verdicts = sorted(
        (log["type"], log["url_id"] is None, log["machine"] or "", log["machine_reason"] or "")
        for log in logs
    )
    assert (
        "open",
        True,
        "apple_mpp",
        "open with User-Agent Mozilla/5.0 from 17.0.0.0/8 (Apple, AS714)",
    ) in verdicts
    assert ("click", False, "bot", "User-Agent python-requests") in verdicts
    assert ("click", False, "", "") in verdicts  # the person: machine null
    assert all("machine" in log and "machine_reason" in log for log in logs)


def test_an_operator_range_marks_later_hits_and_bad_settings_are_422s(stack: Any, reliability: Any) -> None:
    base_url, api = stack
    # Given the built-in lists shown read-only
    shown = api.get(f"{base_url}{SETTINGS}", timeout=30).json()
    assert shown["builtin"]["ranges"] and shown["ranges"] == []
    # When bad settings are sent
    for body in (
        {"ranges": [{"cidr": "203.0.113.0/33", "kind": "scanner"}]},
        {"ranges": [{"cidr": "203.0.113.0/24", "kind": "robot"}]},
        {"burst_seconds": 100000},
        {"user_agents": [{"pattern": f"agent-{n}", "kind": "bot"} for n in range(201)]},
    ):
        answer = api.put(f"{base_url}{SETTINGS}", json=body, timeout=30)
        reliability.record(
            "Bad input",
            "PUT machine-detection settings over HTTP (bad CIDR, kind, window, too many)",
            1,
            "422",
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "validation_error"
    # And then the operator's own range
    body = {"ranges": [{"cidr": "203.0.113.0/24", "kind": "scanner"}], "burst_seconds": 45}
    answer = api.put(f"{base_url}{SETTINGS}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["ranges"], answer.json()["burst_seconds"]) == (body["ranges"], 45)
    # Then a hit from that range, once the redirect's minute-long cache has passed, is a scanner's
    delivery_id, link, _, _ = message(base_url, api, f"r-{RUN}")
    deadline = time.monotonic() + 75
    get(link, "203.0.113.50", CHROME)
    while time.monotonic() < deadline:
        time.sleep(5)
        get(link, "203.0.113.50", CHROME)
        logs = logs_after_a_run(base_url, api, delivery_id)
        if any(log["machine"] == "scanner" for log in logs):
            break
    assert ("scanner", "network 203.0.113.0/24") in {(log["machine"], log["machine_reason"]) for log in logs}
    # And the change is in the audit trail
    audit = api.get(f"{base_url}/api/audit", timeout=30).json()["items"]
    change = next(e for e in audit if e["target"] == "settings/machine-detection")
    assert change["action"] == "settings_changed"
    assert change["after"]["ranges"] == body["ranges"] and change["before"]["ranges"] == []
