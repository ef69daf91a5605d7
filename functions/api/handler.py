"""The report API function: a door, not a room."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api import auth, errors
from functions.api.routes import (
    audit,
    deliveries,
    exports,
    opt_outs,
    pages,
    recipients,
    settings,
    tracking,
    web_tracking,
    webhooks,
    workflow,
)
from functions.api.routes import tracking_check as tracking_checks
from functions.shared.observability import logger, metrics

app = APIGatewayHttpResolver(enable_validation=True)
auth.install(app)
app.include_router(pages.router)
app.include_router(deliveries.router, prefix="/api/deliveries")
app.include_router(tracking.router, prefix="/api/deliveries")
app.include_router(tracking_checks.router, prefix="/api/deliveries")
app.include_router(recipients.router, prefix="/api/recipients")
app.include_router(workflow.router, prefix="/api/workflows")
app.include_router(settings.router, prefix="/api/settings")
app.include_router(audit.router, prefix="/api/audit")
app.include_router(web_tracking.router, prefix="/api/web-tracking")
app.include_router(webhooks.router, prefix="/api/webhooks")
app.include_router(opt_outs.router, prefix="/api/opt-outs")
app.include_router(exports.router, prefix="/api")
errors.register(app)


@app.get("/api/openapi.json")
def openapi() -> dict[str, Any]:
    return app.get_openapi_schema(title="msgtrack report API", version="1").model_dump(
        mode="json", by_alias=True, exclude_none=True
    )


# The event is never logged, whatever POWERTOOLS_LOGGER_LOG_EVENT says: its body holds recipients'
# email addresses and its request context the caller's IP address.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = app.resolve(event, context)
    http = event.get("requestContext", {}).get("http", {})
    logger.debug(
        "report API answered",
        extra={"method": http.get("method"), "status": response.get("statusCode")},
    )
    return response
