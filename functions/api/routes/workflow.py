"""Routes: the tracking workflow's status and on-demand runs (mounted at ``/api/workflows``)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions.api import audit, reports
from functions.api.auth import current_actor
from functions.api.report_schemas import RunStarted, WorkflowStatus

router = Router()


@router.get("/tracking")
def status(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> WorkflowStatus:
    return reports.workflow_status(limit)


@router.post(
    "/tracking/runs",
    responses={
        202: {
            "description": "The tracking workflow was started; the run records itself under this id",
            "content": {content_types.APPLICATION_JSON: {"model": RunStarted}},
        }
    },
)
def start_run() -> Response[RunStarted]:
    started = reports.start_run()
    audit.record("workflow_run_requested", f"workflow/tracking/runs/{started.id}", actor=current_actor())
    return Response(HTTPStatus.ACCEPTED, content_types.APPLICATION_JSON, started)
