"""``msgtrack test-tracking`` as a user runs it, against the local stack over HTTP."""

from __future__ import annotations

import base64
import http.client
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.apigw import API_TOKEN
from tests.e2e.test_story import run_workflow

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
HTML = (
    '<p><a href="https://shop.example/sale?who={{ first_name }}">Sale</a> '
    '<a href="https://shop.example/bye" data-track="optout">Unsubscribe</a></p>'
)


def msgtrack(*args: str) -> subprocess.CompletedProcess[str]:
    script = REPO / ".venv" / "bin" / "msgtrack"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "local.cli"]
    return subprocess.run([*entry, *args], cwd=REPO, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def delivery_id(api: requests.Session, stack_url: str) -> str:
    answer = api.post(
        f"{stack_url}/api/deliveries", json={"label": "Tracking test", "html": HTML}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


@pytest.fixture
def tampering_proxy(stack_url: str) -> Iterator[str]:
    """A tracking domain in front of the stack that sends every click to another site.

    The stack renders links on its own URL; this door rewrites rendered messages to point at itself, as a
    misconfigured tracking domain (or a target changed behind the delivery's back) would send them.
    """
    upstream = urlsplit(stack_url)
    door: list[str] = []

    class Forward(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=60)
            connection.request(self.command, self.path, body=body or None, headers=dict(self.headers))
            answer = connection.getresponse()
            payload = answer.read()
            if self.path.endswith("/messages"):  # the tracking domain of the messages is this door
                payload = payload.replace(stack_url.encode(), door[0].encode())
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() == "location" and self.path.startswith("/r/"):
                    value = "https://elsewhere.example/"
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            connection.close()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    door.append(f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield door[0]
    finally:
        server.shutdown()
        server.server_close()


def test_test_tracking_passes_on_a_working_stack(
    stack_url: str, delivery_id: str, api: requests.Session
) -> None:
    # When `msgtrack test-tracking` checks a freshly registered delivery
    done = msgtrack("test-tracking", delivery_id, "--base-url", stack_url, "--token", API_TOKEN)

    # Then it exits 0 with a passing row per link and the pixel
    assert done.returncode == 0, done.stdout + done.stderr
    rows = done.stdout.splitlines()
    assert [row.split()[:2] for row in rows[1:4]] == [["1", "PASS"], ["2", "PASS"], ["pixel", "PASS"]]
    assert "passed (test recipient test-" in rows[-1]
    # And the proof hits were logged for the test recipient but counted nowhere
    statistics = api.get(f"{stack_url}/api/deliveries/{delivery_id}/tracking/statistics", timeout=30).json()
    assert (statistics["total_clicks"], statistics["total_opens"], statistics["opt_outs"]) == (0, 0, 0)


def test_test_tracking_fails_when_clicks_land_elsewhere(tampering_proxy: str, delivery_id: str) -> None:
    # When the stack is reached through a front door that changes every click's target
    done = msgtrack("test-tracking", delivery_id, "--base-url", tampering_proxy, "--token", API_TOKEN)

    # Then it exits 1, the links fail with where they went, and the pixel still passes
    assert done.returncode == 1, done.stdout + done.stderr
    rows = done.stdout.splitlines()
    assert [row.split()[:2] for row in rows[1:4]] == [["1", "FAIL"], ["2", "FAIL"], ["pixel", "PASS"]]
    assert (
        "redirected to https://elsewhere.example/, expected https://shop.example/sale?who=msgtrack-test"
        in rows[1]
    )


def test_test_tracking_of_an_unknown_delivery_exits_1(stack_url: str) -> None:
    done = msgtrack("test-tracking", "no-such-delivery", "--base-url", stack_url, "--token", API_TOKEN)

    assert done.returncode == 1
    assert "404" in done.stderr


def settle_the_workflow(api: requests.Session, stack_url: str, attempts: int = 10) -> None:
    """Until a run started now has succeeded: the backlog and the runs in flight that the suite's earlier
    stories (schemathesis among them) left behind are done."""
    for _ in range(attempts):
        if run_workflow(api, stack_url)["status"] == "succeeded":
            return
        time.sleep(1.0)  # skipped (another run held the lock) or failed: the next one goes on
    raise AssertionError(f"no tracking workflow run succeeded in {attempts} attempts")


def test_the_api_runs_the_same_check(stack_url: str, delivery_id: str, api: requests.Session) -> None:
    # Given a tracking workflow with nothing left to do: the API's check waits at most 20 s for its own
    # run (under API Gateway's 30 s), which a backlog left by the suite's earlier stories could outlast
    settle_the_workflow(api, stack_url)

    answer = api.post(f"{stack_url}/api/deliveries/{delivery_id}/tracking/test", timeout=60)

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["passed"] is True, result
    assert [(link["url_id"], link["passed"]) for link in result["links"]] == [
        ("1", True),
        ("2", True),
        (None, True),
    ]


@pytest.fixture
def internal_host() -> Iterator[tuple[str, list[str]]]:
    """A loopback 'internal' host that records each request and would answer with a secret."""
    requests_seen: list[str] = []

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests_seen.append(self.path)
            body = b"internal-secret-4711"
            self.send_response(302)
            self.send_header("Location", "http://internal-secret-4711/")
            self.send_header("Content-Type", "text/internal-secret-4711")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests_seen
    finally:
        server.shutdown()
        server.server_close()


def test_look_alike_links_to_another_host_are_never_followed(
    stack_url: str, api: requests.Session, internal_host: tuple[str, list[str]], reliability: Any
) -> None:
    # Given a delivery whose HTML has look-alike /r/ and /o/ links to an internal host before its own
    internal, seen = internal_host
    forged = "AAAA." + base64.urlsafe_b64encode(b'["c","d","r","1"]').decode().rstrip("=") + ".AAAA"
    html = (
        f'<p><a href="{internal}/r/{forged}" data-track="none">Status</a>'
        f'<img src="{internal}/o/{forged}" alt=""></p>{HTML}'
    )
    answer = api.post(f"{stack_url}/api/deliveries", json={"label": "Look-alikes", "html": html}, timeout=30)
    assert answer.status_code == 201, answer.text
    delivery_id = answer.json()["id"]

    # When `msgtrack test-tracking` and the API's test both check it
    done = msgtrack("test-tracking", delivery_id, "--base-url", stack_url, "--token", API_TOKEN)
    tested = api.post(f"{stack_url}/api/deliveries/{delivery_id}/tracking/test", timeout=60)

    # Then the internal host got no request, nothing of it is reported, and the own links pass
    assert seen == []
    assert "internal-secret-4711" not in done.stdout + done.stderr + tested.text
    assert done.returncode == 0, done.stdout + done.stderr
    assert tested.status_code == 200 and tested.json()["passed"] is True, tested.text
    reliability.record(
        area="Security",
        case="msgtrack test-tracking and POST …/tracking/test on a delivery with look-alike links "
        "to a loopback 'internal' host (local stack)",
        tries=2,
        outcome="the host was never contacted, nothing of its answer reported, own links passed",
    )
