"""The exports function: writes one export's file to S3 (started by the API, or by itself to go on)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api.report_repository import repository
from functions.exports import worker
from functions.shared import exports
from functions.shared.observability import logger


@logger.inject_lambda_context(clear_state=True, log_event=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    export_id = str(event.get("export_id") or "")
    done = worker.run(
        export_id,
        store=exports.store(),
        logs=repository(),
        sink=worker.S3Sink(exports.bucket_name()),
        relaunch=exports.launcher(context.invoked_function_arn),
        remaining_ms=context.get_remaining_time_in_millis,
    )
    return {"export_id": export_id, "status": done.status if done else "unknown"}
