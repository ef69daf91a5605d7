"""Routes: complete exports of a delivery's tracking logs (mounted at ``/api``)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from functions.api import exports
from functions.api.auth import current_actor
from functions.api.export_schemas import ExportOut, ExportRequest, ExportStarted

router = Router()


@router.post(
    "/deliveries/<delivery_id>/tracking/exports",
    summary="Export every tracking log matching the logs route's filters to a file, in the background",
    responses={
        202: {
            "description": "The export was started; follow it with GET /api/exports/{id}",
            "content": {content_types.APPLICATION_JSON: {"model": ExportStarted}},
        }
    },
)
def start_export(delivery_id: str, request: Annotated[ExportRequest, Body()]) -> Response[ExportStarted]:
    started = exports.start(delivery_id, request, actor=current_actor())
    return Response(HTTPStatus.ACCEPTED, content_types.APPLICATION_JSON, started)


@router.get("/exports/<export_id>", summary="An export's status, row count and, once done, its download link")
def export_status(export_id: str) -> ExportOut:
    return exports.status(export_id)
