"""No personal data in logs: no email address, no full IP, no link token, even at DEBUG level."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import pytest

from functions.api import handler as api_handler
from functions.api import launcher
from functions.consolidate import handler as consolidate_handler
from functions.redirect import handler as redirect_handler
from functions.shared.observability import logger
from tests.apigw import FakeContext, http_event, json_body

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
FULL_IP = "198.51.100.77"


class NoLaunch:
    def launch(self, run_id: str) -> None:
        pass


def test_a_whole_story_logs_no_email_no_full_ip_and_no_token(
    aws_tables: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], reliability: Any
) -> None:
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    launcher.configure(NoLaunch())
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(logger.registered_formatter)  # the JSON lines CloudWatch would get
    logger.addHandler(capture)
    logger.setLevel("DEBUG")
    try:
        created = api_handler.lambda_handler(
            http_event(
                "POST",
                "/api/deliveries",
                body={"label": "n", "html": '<a href="https://shop.example/x">x</a>'},
            ),
            FakeContext(),
        )
        delivery = json_body(created)["id"]
        rendered = api_handler.lambda_handler(
            http_event(
                "POST",
                f"/api/deliveries/{delivery}/messages",
                body={
                    "recipients": [
                        {"id": "r1", "email": "jane.doe@example.org", "fields": {"email": "x@y.org"}}
                    ]
                },
            ),
            FakeContext(),
        )
        html = json_body(rendered)["messages"][0]["html"]
        tokens = re.findall(r"/[ro]/([\w.-]+)", html)
        for token in tokens:
            path = ("/r/" if "/r/" + token in html else "/o/") + token
            redirect_handler.lambda_handler(
                http_event("GET", path, token=None, source_ip=FULL_IP), FakeContext()
            )
        redirect_handler.lambda_handler(
            http_event("GET", "/r/forged.token.x", source_ip=FULL_IP), FakeContext()
        )
        consolidate_handler.lambda_handler({"run_id": "run-logs"}, FakeContext())
        api_handler.lambda_handler(http_event("GET", "/api/recipients/r1/tracking"), FakeContext())
    finally:
        logger.setLevel("WARNING")
        logger.removeHandler(capture)
        launcher.configure(None)
    output = capsys.readouterr()
    logs = stream.getvalue() + output.out + output.err
    found = {
        "emails": EMAIL.findall(logs),
        "full ips": logs.count(FULL_IP),
        "tokens": sum(logs.count(token) for token in tokens),
    }
    reliability.record(
        "Security",
        "a whole story (register, render with emails, click, open, forged token, workflow, reports) at DEBUG",
        1,
        f"{len(logs.splitlines())} log lines: {len(found['emails'])} emails, {found['full ips']} full IPs, "
        f"{found['tokens']} tokens",
    )
    assert logs.strip()  # the story did log (each workflow run logs its result)
    assert found == {"emails": [], "full ips": 0, "tokens": 0}
