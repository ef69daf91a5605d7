"""Routes: register deliveries, read them, render their messages, report failed sends."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Query

from functions.api import deliveries, url_options
from functions.api.auth import current_actor
from functions.api.delivery_repository import repository
from functions.api.schemas import (
    ChangeUrl,
    CreateDelivery,
    DeliveryOut,
    DeliveryPageOut,
    DeliveryWithContent,
    FailuresOut,
    MessagesOut,
    RenderMessages,
    ReportFailures,
    UrlOut,
)

router = Router()


@router.post("/", status_code=201, summary="Register a delivery and its tracked URLs")
def register(request: Annotated[CreateDelivery, Body()]) -> DeliveryOut:
    details = deliveries.register(
        label=request.label,
        html=request.html,
        text=request.text,
        track_opens=request.track_opens,
        track_clicks=request.track_clicks,
        exclude_url_patterns=request.exclude_url_patterns,
        url_parameters=request.url_parameters,
        actor=current_actor(),
        repo=repository(),
    )
    return DeliveryOut.of(details)


@router.get("/", summary="Deliveries, newest first")
def newest(
    limit: Annotated[int, Query(ge=1, le=deliveries.MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> DeliveryPageOut:
    return DeliveryPageOut.of(deliveries.newest(limit, cursor, repo=repository()))


@router.get("/<delivery_id>", summary="A delivery with its content and tracked URLs")
def get(delivery_id: str) -> DeliveryWithContent:
    return DeliveryWithContent.of(deliveries.get(delivery_id, repo=repository()))


@router.delete(
    "/<delivery_id>",
    summary="Delete a delivery: gone from reports and Tracking tabs; links already sent answer a neutral page",
    responses={204: {"description": "Deleted"}},
)
def delete(delivery_id: str) -> Response[None]:
    deliveries.delete(delivery_id, actor=current_actor(), repo=repository())
    return Response(204)


@router.patch(
    "/<delivery_id>/urls/<url_id>", summary="Turn a tracked URL on or off, relabel it, change its category"
)
def change_url(delivery_id: str, url_id: str, request: Annotated[ChangeUrl, Body()]) -> UrlOut:
    url = url_options.change_url(
        delivery_id,
        url_id,
        actor=current_actor(),
        tracked=request.tracked,
        label=request.label,
        category=request.category,
        repo=repository(),
    )
    return UrlOut.of(url)


@router.post("/<delivery_id>/messages", summary="Render recipients' messages with tracked links")
def render_messages(delivery_id: str, request: Annotated[RenderMessages, Body()]) -> MessagesOut:
    messages = deliveries.render_messages(
        delivery_id,
        [recipient.to_recipient() for recipient in request.recipients],
        base_url=deliveries.tracking_base_url(router.current_event.headers),
        proof=request.proof,
        repo=repository(),
    )
    return MessagesOut.of(messages)


@router.post("/<delivery_id>/failures", summary="Count recipients' messages as not delivered")
def report_failures(delivery_id: str, request: Annotated[ReportFailures, Body()]) -> FailuresOut:
    report = deliveries.report_failures(
        delivery_id, request.recipient_ids, actor=current_actor(), repo=repository()
    )
    return FailuresOut.of(report)
