"""Routes: the audit trail (mounted at ``/api/audit``)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions.api import audit
from functions.api.report_schemas import IsoTime
from functions.api.schemas import AuditPageOut

router = Router()


@router.get("/", summary="Every change made through the API, newest first")
def trail(
    since: Annotated[IsoTime | None, Query()] = None,
    until: Annotated[IsoTime | None, Query()] = None,
    action: Annotated[audit.Action | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> AuditPageOut:
    page = audit.newest(since=since, until=until, action=action, limit=limit, cursor=cursor)
    return AuditPageOut.of(page)
