"""Routes: a delivery's Tracking tab (mounted at ``/api/deliveries``)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from functions.api import reports
from functions.api.report_schemas import (
    LOG_COLUMNS,
    ClickStreams,
    GroupBy,
    HotClicks,
    HotClicksFormat,
    IsoTime,
    LogPage,
    LogType,
    Order,
    OutputFormat,
    Statistics,
    Traffic,
    UrlReport,
)

router = Router()

CSV = "text/csv; charset=utf-8"
HTML = "text/html; charset=utf-8"
# The annotated message shown as a page of its own: nothing in it may run, load scripts or frame it.
HOT_CLICKS_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def page_or_csv(model: type[BaseModel]) -> dict[int, Any]:
    """The OpenAPI answer of a log route: a JSON page, or with ``format=csv`` the same page as CSV."""
    return {
        200: {
            "description": "A page of tracking logs, as JSON or (format=csv) as CSV with a header row",
            "content": {
                content_types.APPLICATION_JSON: {"model": model},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    }


TRAFFIC = (
    "all (the default): every hit; human: only hits no machine made (Apple MPP prefetches, link "
    "scanners and the honeypot burst, bots are left out)"
)


@router.get("/<delivery_id>/tracking/statistics")
def statistics(
    delivery_id: str,
    traffic: Annotated[
        Traffic, Query(description="what the timelines and breakdowns count: " + TRAFFIC)
    ] = "all",
) -> Statistics:
    return reports.delivery_statistics(delivery_id, traffic=traffic)


@router.get("/<delivery_id>/tracking/urls")
def urls(
    delivery_id: str,
    group_by: Annotated[GroupBy | None, Query()] = None,
    since: Annotated[IsoTime | None, Query()] = None,
    until: Annotated[IsoTime | None, Query()] = None,
) -> UrlReport:
    return reports.url_report(delivery_id, group_by=group_by, since=since, until=until)


@router.get("/<delivery_id>/tracking/click-streams")
def click_streams(
    delivery_id: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    traffic: Annotated[Traffic, Query(description="whose clicks the paths follow: " + TRAFFIC)] = "all",
) -> ClickStreams:
    return reports.click_streams(delivery_id, limit, traffic=traffic)


@router.get(
    "/<delivery_id>/tracking/hot-clicks",
    responses={
        200: {
            "description": "Click links by share of clicks and the annotated message, as JSON, or "
            "(format=html) the annotated message as a page of its own",
            "content": {
                content_types.APPLICATION_JSON: {"model": HotClicks},
                "text/html": {"schema": {"type": "string"}},
            },
        }
    },
)
def hot_clicks(
    delivery_id: str,
    output: Annotated[HotClicksFormat, Query(alias="format")] = "json",
    traffic: Annotated[Traffic, Query(description="what the percents are of: " + TRAFFIC)] = "all",
) -> Response[HotClicks | str]:
    report = reports.hot_clicks(delivery_id, traffic=traffic)
    if output == "html":
        return Response(200, HTML, report.html, headers=dict(HOT_CLICKS_PAGE_HEADERS))
    return Response(200, content_types.APPLICATION_JSON, report)


@router.get("/<delivery_id>/tracking/logs", responses=page_or_csv(LogPage))
def logs(
    delivery_id: str,
    log_type: Annotated[LogType | None, Query(alias="type")] = None,
    recipient_id: Annotated[str | None, Query()] = None,
    url_id: Annotated[str | None, Query()] = None,
    since: Annotated[IsoTime | None, Query()] = None,
    until: Annotated[IsoTime | None, Query()] = None,
    order: Annotated[Order, Query()] = "desc",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
    output: Annotated[OutputFormat, Query(alias="format")] = "json",
    traffic: Annotated[Traffic, Query(description="which hits are listed: " + TRAFFIC)] = "all",
) -> Response[LogPage | str]:
    request = reports.LogRequest(
        type=log_type,
        recipient_id=recipient_id,
        url_id=url_id,
        since=since,
        until=until,
        order=order,
        limit=limit,
        cursor=cursor,
        traffic=traffic,
    )
    page = reports.delivery_logs(delivery_id, request)
    if output == "csv":
        return csv_page(
            reports.logs_csv(page.items, LOG_COLUMNS), page.next_cursor, f"tracking-logs-{delivery_id}"
        )
    return Response(200, content_types.APPLICATION_JSON, page)


def csv_page(body: str, next_cursor: str | None, name: str) -> Response[Any]:
    """A CSV page; the next page's cursor travels in ``X-Next-Cursor`` since CSV has no place for it."""
    headers = {"Content-Disposition": f'attachment; filename="{_safe(name)}.csv"'}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return Response(200, CSV, body, headers=headers)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]
