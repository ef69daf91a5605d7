"""Human and machine traffic on moto's DynamoDB: a honeypot hit in a later run reclassifies the
burst's consolidated hits (their logs rewritten, every indicator moved) once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from functions.api.report_repository import DynamoReportRepository
from functions.consolidate.batch import BURST_REASON
from functions.consolidate.store import DynamoWorkflowStore
from functions.consolidate.workflow import TrackingWorkflow
from functions.shared import raw_events
from functions.shared.models import (
    DeliveryStatsModel,
    MessageModel,
    RawEventModel,
    TrackedUrlModel,
    UrlStatsModel,
)
from functions.shared.raw_events import RawEvent
from tests.stored_logs import delivery_logs

H = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # the honeypot hit
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def record(event_id: str, url_id: str | None, seconds: int, client: str, **verdict: object) -> None:
    honeypot = bool(verdict.get("honeypot"))
    event = RawEvent(
        event_id,
        "click" if url_id or honeypot else "open",
        "d1",
        "r1",
        url_id,
        H + timedelta(seconds=seconds),
        CHROME,
        "p1",
        "203.0.113.0",
        False,
        client_key=client,
        **verdict,  # type: ignore[arg-type]
    )
    RawEventModel.from_raw_data(raw_events.to_item(event, 30)).save()


def test_a_late_honeypot_hit_turns_consolidated_human_hits_into_scanner_hits(aws_tables: None) -> None:
    # Given a delivery's link, and a first run that consolidated an open and a click as a person's
    TrackedUrlModel(
        delivery_id="d1", url_id="1", url="https://shop.example/1", label="1", category="click"
    ).save()
    MessageModel(
        delivery_id="d1", sk="msg#r1", recipient_id="r1", email_domain="example.org", rendered_at="x"
    ).save()
    record("e1", None, -8, "k1")
    record("e2", "1", -4, "k1")
    record("e3", None, 120, "k1")  # after the window: stays a person's
    TrackingWorkflow(DynamoWorkflowStore(), clock=lambda: H - timedelta(seconds=1)).run("run-1", "schedule")
    first = DeliveryStatsModel.get("d1", "stats")
    assert (first.human["opens"], first.human["total_clicks"]) == (1, 1)
    # When the honeypot hit from the same address comes, and two runs go by
    record(
        "hp",
        None,
        0,
        "k1",
        honeypot=True,
        machine="scanner",
        machine_reason="honeypot link",
        burst_seconds=30,
    )
    for run in ("run-2", "run-3"):
        TrackingWorkflow(DynamoWorkflowStore(), clock=lambda: H + timedelta(hours=1)).run(run, "schedule")
    # Then the burst's hits are scanner hits in their logs and every indicator, once
    stats = DeliveryStatsModel.get("d1", "stats")
    assert (stats.opens, stats.total_opens, stats.clicks, stats.total_clicks) == (1, 2, 1, 1)
    assert stats.human.as_dict() == {
        "opens": 1,
        "total_opens": 1,
        "clicks": 0,
        "person_clicks": 0,
        "total_clicks": 0,
        "opt_outs": 0,
        "mirror_page_views": 0,
    }
    assert stats.machine.as_dict() == {"total_opens": 1, "total_clicks": 1, "by_kind": {"scanner": 3}}
    url = UrlStatsModel.get("d1", "url#1")
    assert (url.clicks, url.human_clicks, url.human_distinct_clicks) == (1, 0, 0)
    # And the human click streams lost r1's only human click; every click's still has it
    reports = DynamoReportRepository()
    assert dict(reports.click_streams("d1", human=True).paths) == {}
    assert dict(reports.click_streams("d1").paths) == {"1": 1}
    logs = {log.event_id: (log.machine, log.machine_reason) for log in delivery_logs("d1")}
    assert logs == {
        "e1": ("scanner", BURST_REASON),
        "e2": ("scanner", BURST_REASON),
        "e3": (None, None),
        "hp": ("scanner", "honeypot link"),
    }
