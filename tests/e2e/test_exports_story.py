"""Complete exports over HTTP against the local stack: a delivery with more logs than one page of the
logs route, exported as CSV and JSONL, followed until done and downloaded from the link it gives
(moto's S3, presigned as S3 presigns)."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.test_story import all_logs, run_workflow

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
RECIPIENTS = 120  # an open and a click each: 240 logs, more than the logs route's largest page (200)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
HTML = """<html><body><p><a href="https://shop.example.com/sale" data-label="=HYPERLINK(&quot;http://evil&quot;)">
Sale</a></p></body></html>"""
LINK = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"(?! aria-hidden)')  # not the honeypot
PIXEL = re.compile(r'src="(http://127\.0\.0\.1:\d+/o/[^"]+)"')
COLUMNS = [
    "event_id", "delivery_id", "recipient_id", "type", "url_id", "url", "label", "at", "browser", "os",
    "device", "proof", "amount", "currency", "machine", "machine_reason",
]  # fmt: skip


@pytest.fixture(scope="module")
def delivery(api: requests.Session, stack_url: str) -> str:
    created = api.post(
        f"{stack_url}/api/deliveries", json={"label": f"Export {RUN}", "html": HTML}, timeout=30
    )
    assert created.status_code == 201, created.text
    delivery_id = str(created.json()["id"])
    recipients = [{"id": f"r-exp-{RUN}-{n}"} for n in range(RECIPIENTS)]
    rendered = api.post(
        f"{stack_url}/api/deliveries/{delivery_id}/messages", json={"recipients": recipients}, timeout=60
    )
    assert rendered.status_code == 200, rendered.text
    with requests.Session() as browser:
        browser.headers["User-Agent"] = BROWSER
        for message in rendered.json()["messages"]:
            html = message["html"].replace("&amp;", "&")
            assert browser.get(PIXEL.findall(html)[0], timeout=30).status_code == 200
            assert browser.get(LINK.findall(html)[0], allow_redirects=False, timeout=30).status_code == 302
    assert run_workflow(api, stack_url)["status"] == "succeeded"
    return delivery_id


def export(api: requests.Session, stack_url: str, delivery_id: str, body: dict[str, Any]) -> dict[str, Any]:
    started = api.post(f"{stack_url}/api/deliveries/{delivery_id}/tracking/exports", json=body, timeout=30)
    assert started.status_code == 202, started.text
    export_id = started.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = api.get(f"{stack_url}/api/exports/{export_id}", timeout=30)
        assert answer.status_code == 200, answer.text
        status = dict(answer.json())
        if status["status"] != "running":
            return status
        time.sleep(0.2)
    raise AssertionError(f"export {export_id} did not finish within 60 s")


def test_a_csv_export_downloads_every_log_the_logs_route_pages_through(
    api: requests.Session, stack_url: str, delivery: str
) -> None:
    # Given the logs route's total, page by page
    logs = all_logs(api, f"{stack_url}/api/deliveries/{delivery}/tracking/logs", limit=200)
    assert len(logs) == 2 * RECIPIENTS
    # When the delivery's logs are exported as CSV and the link is followed (no API token needed)
    status = export(api, stack_url, delivery, {"format": "csv"})
    assert status["status"] == "succeeded", status
    assert status["rows"] == len(logs)
    download = requests.get(status["url"], timeout=30)
    assert download.status_code == 200
    assert download.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in download.headers.get("Content-Disposition", "")
    # Then the file holds exactly the route's logs, in its order, with the route's columns
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8"))))
    assert rows[0] == COLUMNS
    assert [row[0] for row in rows[1:]] == [log["event_id"] for log in logs]
    # and the label a spreadsheet would run as a formula is text
    labels = {row[COLUMNS.index("label")] for row in rows[1:] if row[COLUMNS.index("type")] == "click"}
    assert labels == {'\'=HYPERLINK("http://evil")'}


def test_a_filtered_jsonl_export_has_the_routes_logs_as_json_lines(
    api: requests.Session, stack_url: str, delivery: str
) -> None:
    logs = all_logs(api, f"{stack_url}/api/deliveries/{delivery}/tracking/logs", type="click", order="asc")
    status = export(api, stack_url, delivery, {"format": "jsonl", "type": "click", "order": "asc"})
    assert (status["status"], status["rows"]) == ("succeeded", RECIPIENTS)
    lines = [json.loads(line) for line in requests.get(status["url"], timeout=30).text.splitlines()]
    assert lines == logs


def test_bad_export_requests_are_refused_with_a_message(
    api: requests.Session, stack_url: str, delivery: str
) -> None:
    bad = api.post(
        f"{stack_url}/api/deliveries/{delivery}/tracking/exports", json={"format": "xlsx"}, timeout=30
    )
    assert bad.status_code == 422 and bad.json()["message"]
    unknown = api.post(
        f"{stack_url}/api/deliveries/nope/tracking/exports", json={"format": "csv"}, timeout=30
    )
    assert unknown.status_code == 404
    assert api.get(f"{stack_url}/api/exports/xnope", timeout=30).status_code == 404
    assert requests.get(f"{stack_url}/api/exports/xnope", timeout=30).status_code == 401
