"""Routes: a recipient's Tracking tab (mounted at ``/api/recipients``)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions.api import audit, erasures, reports
from functions.api.auth import current_actor
from functions.api.erasures import ErasureRequested
from functions.api.report_schemas import (
    LOG_COLUMNS,
    IsoTime,
    LogType,
    Order,
    OutputFormat,
    RecipientLogPage,
    Traffic,
)
from functions.api.routes.tracking import TRAFFIC, csv_page, page_or_csv

router = Router()

RECIPIENT_LOG_COLUMNS = (*LOG_COLUMNS, "delivery_label")


@router.get("/<recipient_id>/tracking", responses=page_or_csv(RecipientLogPage))
def tracking(
    recipient_id: str,
    delivery_id: Annotated[str | None, Query()] = None,
    log_type: Annotated[LogType | None, Query(alias="type")] = None,
    url_id: Annotated[str | None, Query()] = None,
    since: Annotated[IsoTime | None, Query()] = None,
    until: Annotated[IsoTime | None, Query()] = None,
    order: Annotated[Order, Query()] = "desc",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
    output: Annotated[OutputFormat, Query(alias="format")] = "json",
    traffic: Annotated[Traffic, Query(description="which hits are listed: " + TRAFFIC)] = "all",
) -> Response[RecipientLogPage | str]:
    request = reports.LogRequest(
        type=log_type,
        delivery_id=delivery_id,
        url_id=url_id,
        since=since,
        until=until,
        order=order,
        limit=limit,
        cursor=cursor,
        traffic=traffic,
    )
    page = reports.recipient_logs(recipient_id, request)
    if output == "csv":
        body = reports.logs_csv(page.items, RECIPIENT_LOG_COLUMNS)
        return csv_page(body, page.next_cursor, f"tracking-logs-recipient-{recipient_id}")
    return Response(200, content_types.APPLICATION_JSON, page)


@router.delete("/<recipient_id>/tracking")
def erase(recipient_id: str) -> Response[ErasureRequested]:
    """Erase the recipient's tracking logs, raw events and state; the indicators keep their counts.

    Answered at once (202); the tracking workflow, started now, carries the erasure out.
    """
    requested = erasures.request_erasure(recipient_id)
    audit.record("erasure_requested", f"recipient/{recipient_id}", actor=current_actor())
    return Response(202, content_types.APPLICATION_JSON, requested)
