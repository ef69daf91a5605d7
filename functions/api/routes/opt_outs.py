"""Routes: the opt-out feed (mounted at ``/api/opt-outs``)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions.api import opt_outs
from functions.api.report_schemas import IsoTime
from functions.api.schemas import OptOutPageOut

router = Router()


@router.get("/", summary="People who opted out (opt-out links, one-click unsubscribe), oldest first")
def feed(
    since: Annotated[IsoTime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=opt_outs.MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> OptOutPageOut:
    return OptOutPageOut.of(opt_outs.page(since=since, limit=limit, cursor=cursor))
