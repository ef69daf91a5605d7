"""Routes: webhooks, where every recorded hit of the chosen types is POSTed (mounted at ``/api/webhooks``)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from functions.api import webhooks
from functions.api.auth import current_actor
from functions.api.webhook_schemas import CreatedWebhookOut, CreateWebhook, WebhookOut, WebhooksOut

router = Router()


@router.post("/", status_code=201, summary="Register a webhook; its signing secret is shown only here")
def create_webhook(request: Annotated[CreateWebhook, Body()]) -> CreatedWebhookOut:
    created = webhooks.create(request.url, request.events, request.description, actor=current_actor())
    return CreatedWebhookOut.of(created.webhook, created.secret)


@router.get("/", summary="Webhooks, newest first, with their delivery health (never their secrets)")
def list_webhooks() -> WebhooksOut:
    return WebhooksOut(items=[WebhookOut.of(hook) for hook in webhooks.newest()])


@router.delete(
    "/<webhook_id>",
    summary="Delete a webhook: nothing more is sent to it",
    responses={204: {"description": "Deleted"}},
)
def delete_webhook(webhook_id: str) -> Response[None]:
    webhooks.delete(webhook_id, actor=current_actor())
    return Response(204)
