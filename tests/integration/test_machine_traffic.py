"""Machine detection through the real API, redirect and consolidation handlers on moto's DynamoDB:
settings stored by the API and read by the redirect, every raw event carrying its verdict and client
key (never the full address), the honeypot hit, and the LOG's machine fields."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import launcher
from functions.api.handler import lambda_handler as api
from functions.consolidate import handler as consolidate_handler
from functions.redirect import handler as redirect_handler
from functions.redirect.store import DynamoMachineSettings
from functions.shared import models, settings
from functions.shared.models import RawEventModel
from tests.apigw import FakeContext, http_event, json_body

HTML = '<html><body><p><a href="https://shop.example/a">Shop</a></p></body></html>'
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
LINK = re.compile(r'<a href="https://tracking\.example\.com(/r/[^"]+)">Shop')
HONEYPOT = re.compile(r'<a href="https://tracking\.example\.com(/r/[^"]+)" aria-hidden="true"')
PIXEL = re.compile(r'src="https://tracking\.example\.com(/o/[^"]+)"')


class RunNow:
    def launch(self, run_id: str) -> None:
        consolidate_handler.lambda_handler({"run_id": run_id, "trigger": "api"}, FakeContext())


@pytest.fixture(autouse=True)
def stack(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    settings.reset_caches()
    for name in ("_targets", "_sink", "_detection"):
        monkeypatch.setattr(redirect_handler, name, None)
    launcher.configure(RunNow())
    yield
    launcher.configure(None)


def ok(method: str, path: str, body: Any = None) -> Any:
    response = api(http_event(method, path, body=body), FakeContext())
    assert response["statusCode"] in (200, 201, 202), response.get("body")
    return json_body(response)


def hit(path: str, source_ip: str, user_agent: str) -> dict[str, Any]:
    event = http_event("GET", path, token=None, source_ip=source_ip, user_agent=user_agent)
    return redirect_handler.lambda_handler(event, FakeContext())


def test_settings_round_trip_from_the_api_to_the_redirects_read() -> None:
    # Given no settings: the redirect reads none
    assert DynamoMachineSettings().machine_settings() is None
    # When the operator stores a range and a 60 s window
    body = {"ranges": [{"cidr": "192.0.2.0/24", "kind": "bot"}], "burst_seconds": 60}
    ok("PUT", "/api/settings/machine-detection", body)
    # Then the redirect's reader gets the stored document, and GET shows it
    stored = json.loads(DynamoMachineSettings().machine_settings() or "{}")
    assert stored == {**body, "user_agents": [], "honeypot": True}
    got = ok("GET", "/api/settings/machine-detection")
    assert (got["ranges"], got["burst_seconds"]) == (body["ranges"], 60)
    # And the settings item stays out of every delivery listing
    assert ok("GET", "/api/deliveries")["items"] == []
    assert models.MachineDetectionSettingsModel.get(
        models.SETTINGS_PK, models.MACHINE_DETECTION_SK
    ).updated_at


def test_every_hit_carries_its_verdict_to_the_raw_event_and_the_log() -> None:
    # Given a delivery, one message, and the operator's range 192.0.2.0/24 as a scanner
    ok("PUT", "/api/settings/machine-detection", {"ranges": [{"cidr": "192.0.2.0/24", "kind": "scanner"}]})
    delivery = ok("POST", "/api/deliveries", {"label": "N", "html": HTML})["id"]
    [message] = ok("POST", f"/api/deliveries/{delivery}/messages", {"recipients": [{"id": "r1"}]})["messages"]
    click, honeypot, pixel = (p.findall(message["html"])[0] for p in (LINK, HONEYPOT, PIXEL))
    # When a person, MPP, a script, the operator's range and a scanner's honeypot hit come in
    assert hit(click, "198.51.100.23", CHROME)["statusCode"] == 302
    assert hit(pixel, "17.58.1.2", "Mozilla/5.0")["statusCode"] == 200
    assert hit(click, "198.51.100.24", "python-requests/2.31")["statusCode"] == 302
    assert hit(click, "192.0.2.9", CHROME)["statusCode"] == 302
    trap = hit(honeypot, "192.0.2.9", CHROME)
    assert (trap["statusCode"], "Location" in trap["headers"], "cookies" in trap) == (200, False, False)
    # Then each raw event carries the verdict, a client key, the /24 and never the address
    # (sorted by address: hits within one millisecond have no order of their own)
    events = sorted(RawEventModel.scan(), key=lambda e: (e.ip, e.machine_reason or "", e.url_id or ""))
    assert [(e.kind, e.url_id, e.machine, e.machine_reason, e.ip) for e in events] == [
        (
            "open",
            None,
            "apple_mpp",
            "open with User-Agent Mozilla/5.0 from 17.0.0.0/8 (Apple, AS714)",
            "17.58.1.0",
        ),
        ("click", None, "scanner", "honeypot link", "192.0.2.0"),
        ("click", "1", "scanner", "network 192.0.2.0/24", "192.0.2.0"),
        ("click", "1", None, None, "198.51.100.0"),
        ("click", "1", "bot", "User-Agent python-requests", "198.51.100.0"),
    ]
    assert all(e.client_key and len(e.client_key) == 16 for e in events)
    assert events[1].client_key == events[2].client_key != events[3].client_key
    assert (events[1].honeypot, events[1].burst_seconds) == (True, 30)
    stored = json.dumps([e.attribute_values for e in events], default=str)
    for address in ("198.51.100.23", "17.58.1.2", "198.51.100.24", "192.0.2.9"):
        assert address not in stored
    # And after a run, the delivery's LOGs say who made each hit
    ok("POST", "/api/workflows/tracking/runs")
    logs = ok("GET", f"/api/deliveries/{delivery}/tracking/logs")["items"]
    verdicts = {(log["type"], log["machine"], log["machine_reason"]) for log in logs}
    assert ("click", None, None) in verdicts
    assert (
        "open",
        "apple_mpp",
        "open with User-Agent Mozilla/5.0 from 17.0.0.0/8 (Apple, AS714)",
    ) in verdicts
    assert ("click", "bot", "User-Agent python-requests") in verdicts
    # And with traffic=human (a DynamoDB filter on the missing machine attribute) only the person's
    # click is listed, on the delivery's and on the recipient's Tracking tab
    for path in (f"/api/deliveries/{delivery}/tracking/logs", "/api/recipients/r1/tracking"):
        answer = api(http_event("GET", path, query={"traffic": "human"}), FakeContext())
        people = json_body(answer)["items"]
        assert [(log["type"], log["machine"]) for log in people] == [("click", None)], path
