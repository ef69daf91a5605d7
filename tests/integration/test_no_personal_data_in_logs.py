"""No personal data in logs: no email address, no full IP, no link token, even at DEBUG level.

Everything each function writes is captured as Lambda would ship it to CloudWatch Logs: its standard
output and error, at DEBUG, with metrics on. The Powertools Logger (API and workflow) writes through
its own handler to the ``sys.stdout`` it found at import, which pytest's capture had already replaced:
the test points that handler at the captured stream. The redirect's logger (its own JSON lines, no
Powertools) and both kinds of EMF metric documents write to the current ``sys.stdout``. Before the
story is searched, the test proves it heard every function, on its normal and its error paths.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.api import handler as api_handler
from functions.api import launcher
from functions.consolidate import handler as consolidate_handler
from functions.consolidate.store import DynamoWorkflowStore
from functions.redirect import handler as redirect_handler
from functions.redirect import observability as redirect_observability
from functions.shared import fallback, settings
from functions.shared.observability import logger
from local.aws import create_fallback_queue
from tests.apigw import FakeContext, http_event, json_body

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
FULL_IP = "198.51.100.77"
PROVIDER_IP = "198.51.100.213"  # a mailbox provider posting a one-click unsubscribe


class NoLaunch:
    def launch(self, run_id: str) -> None:
        pass


class Output:
    """What each function wrote, line by line, as CloudWatch Logs would get it."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.lines: dict[str, list[str]] = {"api": [], "redirect": [], "workflow": []}

    def invoke(self, function: str, handler: Callable[[Any, Any], Any], event: Any) -> Any:
        self._capsys.readouterr()
        # Powertools' handler keeps the stream it found at import: point it at the one captured now.
        powertools = logger.registered_handler
        assert isinstance(powertools, logging.StreamHandler)
        powertools.stream = sys.stdout
        try:
            return handler(event, FakeContext())
        finally:
            written = self._capsys.readouterr()
            self.lines[function] += (written.out + written.err).splitlines()

    def documents(self, function: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines[function] if line.startswith("{")]

    def messages(self, function: str) -> list[str]:
        return [str(d["message"]) for d in self.documents(function) if "message" in d]

    def metrics(self, function: str) -> set[str]:
        return {
            metric["Name"]
            for document in self.documents(function)
            for directive in document.get("_aws", {}).get("CloudWatchMetrics", [])
            for metric in directive["Metrics"]
        }

    def text(self) -> str:
        return "\n".join(line for lines in self.lines.values() for line in lines)


@pytest.fixture
def output(
    aws_tables: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Output]:
    """Every function at DEBUG, with metrics on and the fallback queue configured."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv(fallback.QUEUE_URL_ENV, create_fallback_queue())
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    launcher.configure(NoLaunch())
    powertools = logger.registered_handler
    assert isinstance(powertools, logging.StreamHandler)
    shipped_to = powertools.stream
    levels = (logger.log_level, redirect_observability.logger.level)
    logger.setLevel("DEBUG")
    redirect_observability.logger.setLevel("DEBUG")
    try:
        yield Output(capsys)
    finally:
        logger.setLevel(levels[0])
        redirect_observability.logger.setLevel(levels[1])
        powertools.stream = shipped_to  # capsys has closed its stream by now: no flush
        launcher.configure(None)


class Refuse:
    """A botocore hook that refuses a call with ``code`` while ``active``."""

    def __init__(self, code: str, operation: str) -> None:
        self.code, self.operation, self.active = code, operation, False

    def __call__(self, **kwargs: Any) -> None:
        if self.active:
            raise ClientError({"Error": {"Code": self.code, "Message": "refused"}}, self.operation)


def test_a_whole_story_logs_no_email_no_full_ip_and_no_token(
    output: Output, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    # Given a delivery rendered for a recipient whose email address is in the request
    created = output.invoke(
        "api",
        api_handler.lambda_handler,
        http_event(
            "POST",
            "/api/deliveries",
            body={"label": "n", "html": '<a href="https://shop.example/x">x</a>'},
            source_ip=FULL_IP,
        ),
    )
    delivery = json_body(created)["id"]
    rendered = output.invoke(
        "api",
        api_handler.lambda_handler,
        http_event(
            "POST",
            f"/api/deliveries/{delivery}/messages",
            body={
                "recipients": [{"id": "r1", "email": "jane.doe@example.org", "fields": {"email": "x@y.org"}}]
            },
            source_ip=FULL_IP,
        ),
    )
    html = json_body(rendered)["messages"][0]["html"]
    tokens = re.findall(r"/[ro]/([\w.-]+)", html)
    paths = [("/r/" if "/r/" + token in html else "/o/") + token for token in tokens]
    assert sorted(path[:3] for path in paths) == ["/o/", "/r/", "/r/"]  # the pixel, the link, the honeypot
    [unsubscribe] = re.findall(
        r"/u/([\w.-]+)>", json_body(rendered)["messages"][0]["headers"]["List-Unsubscribe"]
    )
    tokens.append(unsubscribe)

    def hit(path: str) -> Any:
        return output.invoke(
            "redirect",
            redirect_handler.lambda_handler,
            http_event("GET", path, token=None, source_ip=FULL_IP),
        )

    # When the recipient opens and clicks, a forged token is tried,
    for path in paths:
        hit(path)
    hit("/r/forged.token.x")
    # the recipient's provider unsubscribes in one click (after a scanner's GET of the page; the
    # provider's address is another than the scanner's, or the honeypot burst would take it),
    hit(f"/u/{unsubscribe}")
    output.invoke(
        "redirect",
        redirect_handler.lambda_handler,
        http_event(
            "POST",
            f"/u/{unsubscribe}",
            token=None,
            body="List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
            source_ip=PROVIDER_IP,
        ),
    )
    # DynamoDB throttles a click (the fallback queue takes it), then refuses an open and the queue too,
    redirect_handler._collaborators()
    sink = redirect_handler._sink
    assert sink is not None
    throttle = Refuse("ProvisionedThroughputExceededException", "PutItem")
    sink._client.meta.events.register("before-parameter-build.dynamodb.PutItem", throttle)  # type: ignore[attr-defined]
    monkeypatch.setattr("functions.redirect.store.BACKOFF_BASE_SECONDS", 0.001)
    throttle.active = True
    hit(next(path for path in paths if path.startswith("/r/")))
    queue_down = Refuse("AccessDenied", "SendMessage")
    sqs = sink._fallback._client  # type: ignore[attr-defined]  # made by the first fallback
    sqs.meta.events.register("before-parameter-build.sqs.SendMessage", queue_down)
    queue_down.active = True
    hit(next(path for path in paths if path.startswith("/o/")))
    throttle.active = queue_down.active = False
    # a workflow run has its write of indicators refused, the next one consolidates everything,
    put_items = DynamoWorkflowStore.put_items
    refused = {"once": True}

    def refuse_once(store: DynamoWorkflowStore, items: Any) -> None:
        if refused.pop("once", False):
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded the maximum"}},
                "BatchWriteItem",
            )
        put_items(store, items)

    monkeypatch.setattr(DynamoWorkflowStore, "put_items", refuse_once)
    with contextlib.suppress(ClientError):  # the run fails (or sets the item aside); its logs say which
        output.invoke("workflow", consolidate_handler.lambda_handler, {"run_id": "run-refused"})
    finished = output.invoke("workflow", consolidate_handler.lambda_handler, {"run_id": "run-logs"})
    # and the reports (the opt-out feed with its addresses too) are read, one for a delivery that does not exist
    monkeypatch.setenv("MSGTRACK_OPT_OUT_FEED_DELAY_SECONDS", "0")
    settings.reset_caches()
    feed = output.invoke("api", api_handler.lambda_handler, http_event("GET", "/api/opt-outs"))
    assert [i["email"] for i in json_body(feed)["items"]] == ["jane.doe@example.org"]
    output.invoke("api", api_handler.lambda_handler, http_event("GET", "/api/recipients/r1/tracking"))
    output.invoke(
        "api", api_handler.lambda_handler, http_event("GET", "/api/deliveries/nope/tracking/statistics")
    )

    # Then every function was heard, on its normal and its error paths
    assert finished["status"] == "succeeded"
    assert len(output.lines["redirect"]) >= 9, output.lines["redirect"]  # 5 hits' metrics + 4 messages
    assert {
        "link token refused",
        "raw event handed to the fallback queue",
        "raw event lost: the fallback queue failed too",
        "raw event lost",
    } <= set(output.messages("redirect"))
    assert {
        "Clicks",
        "Opens",
        "OneClickOptOuts",
        "InvalidTokens",
        "RawEventFallbacks",
        "RawEventWriteFailures",
    } <= output.metrics("redirect")
    assert len(output.lines["workflow"]) >= 5, output.lines["workflow"]
    workflow_messages = output.messages("workflow")
    assert "drained raw events from the fallback queue" in workflow_messages
    assert workflow_messages.count("tracking workflow run finished") == 1
    assert any(
        d.get("level") in ("ERROR", "WARNING") and "ValidationException" in json.dumps(d)
        for d in output.documents("workflow")
    ), output.lines["workflow"]
    assert {"EventsProcessed", "WorkflowRunsSucceeded"} <= output.metrics("workflow")
    answered = [d for d in output.documents("api") if d.get("message") == "report API answered"]
    assert [d["status"] for d in answered] == [201, 200, 200, 200, 404]
    # And none of it holds an email address, the visitor's full IP or a link token
    logs = output.text()
    found = {
        "emails": EMAIL.findall(logs),
        "full ips": logs.count(FULL_IP) + logs.count(PROVIDER_IP),
        "tokens": sum(logs.count(token) for token in tokens),
    }
    reliability.record(
        "Security",
        "a whole story at DEBUG (register, render with emails, click, open, forged token, throttled and "
        "refused raw-event writes, a refused indicator write, workflow, reports): every function's output",
        1,
        f"{len(logs.splitlines())} log lines (API {len(output.lines['api'])}, redirect "
        f"{len(output.lines['redirect'])}, workflow {len(output.lines['workflow'])}): "
        f"{len(found['emails'])} emails, {found['full ips']} full IPs, {found['tokens']} tokens",
    )
    assert found == {"emails": [], "full ips": 0, "tokens": 0}
