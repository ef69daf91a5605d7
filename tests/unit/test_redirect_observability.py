"""The redirect's own logs and metrics: no Powertools on its import path, the same EMF and log lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from functions.redirect import handler, observability, tracking
from functions.shared.raw_events import RawEvent
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext, http_event

REPO = Path(__file__).resolve().parents[2]


def test_the_redirect_handler_imports_no_powertools_and_no_fallback_module() -> None:
    # Given a fresh interpreter, as a new Lambda container
    code = (
        "import sys, functions.redirect.handler\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith('aws_lambda_powertools')}))\n"
        "print('functions.shared.fallback' in sys.modules, 'functions.shared.models' in sys.modules)\n"
    )
    # When it imports the redirect handler
    finished = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    # Then neither Powertools, nor the fallback queue's module, nor PynamoDB's models were loaded
    assert finished.stdout.splitlines() == ["[]", "False False"]


def test_the_emf_document_is_the_one_powertools_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools import Metrics as PowertoolsMetrics

    # Given the same metrics added to ours and to Powertools' (which the API and workflow use)
    ours = observability.Metrics(namespace="msgtrack", service="msgtrack-test")
    theirs = PowertoolsMetrics(namespace="msgtrack", service="msgtrack-test")
    theirs.clear_metrics()  # Powertools shares its metric set between instances: start from none
    for metrics in (ours, theirs):
        metrics.add_metric(name="Clicks", unit="Count", value=1)
        metrics.add_metric(name="RawEventFallbacks", unit="Count", value=1)
        metrics.add_metric(name="Clicks", unit="Count", value=1)
    expected = theirs.serialize_metric_set()
    # When ours builds its document at the same timestamp
    document = ours.document(timestamp_ms=expected["_aws"]["Timestamp"])
    # Then both are identical: namespace, the service dimension, names, units and values
    assert document == expected


def _click() -> dict[str, Any]:
    token = signer().sign(LinkClaims("c", "d1", "r1", "1"))
    return handler.lambda_handler(http_event("GET", f"/r/{token}", token=None), FakeContext())


class Targets:
    def target(self, delivery_id: str, url_id: str) -> tracking.Target | None:
        return tracking.Target("https://shop.example/")


class Sink:
    def record(self, event: RawEvent) -> None:
        pass


def test_each_invocation_prints_one_emf_document_with_its_count(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(handler, "_targets", Targets())
    monkeypatch.setattr(handler, "_sink", Sink())
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    # When two clicks are served
    assert _click()["statusCode"] == 302
    assert _click()["statusCode"] == 302
    # Then each printed its own document, counting one click under the service dimension
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(documents) == 2
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive == {
            "Namespace": observability.NAMESPACE,
            "Dimensions": [["service"]],
            "Metrics": [{"Name": "Clicks", "Unit": "Count"}],
        }
        assert document["service"] == observability.SERVICE
        assert document["Clicks"] == [1.0]
        assert isinstance(document["_aws"]["Timestamp"], int)


def test_with_metrics_disabled_nothing_is_printed_and_nothing_piles_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(handler, "_targets", Targets())
    monkeypatch.setattr(handler, "_sink", Sink())
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    _click()
    assert capsys.readouterr().out == ""
    assert observability.metrics.document() is None


def test_a_failure_is_logged_as_one_json_line_without_token_or_ip(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken:
        def target(self, delivery_id: str, url_id: str) -> None:
            raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(handler, "_targets", Broken())
    monkeypatch.setattr(handler, "_sink", Sink())
    token = signer().sign(LinkClaims("c", "d1", "r1", "1"))
    context = FakeContext(aws_request_id="req-1")
    response = handler.lambda_handler(
        http_event("GET", f"/r/{token}", token=None, source_ip="198.51.100.77"), context
    )
    assert response["statusCode"] == 404
    output = capsys.readouterr().out
    [line] = [json.loads(text) for text in output.splitlines() if '"level"' in text]
    assert (line["level"], line["message"], line["kind"]) == ("ERROR", "hit not served normally", "click")
    assert (line["exception_name"], line["service"], line["function_request_id"]) == (
        "RuntimeError",
        observability.SERVICE,
        "req-1",
    )
    assert token not in output and "198.51.100.77" not in output
