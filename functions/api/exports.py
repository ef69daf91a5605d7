"""Complete exports of a delivery's tracking logs: started here, written by the exports function.

``start`` checks the delivery and the filters exactly as the logs route does, records the export
``running`` and starts the worker (``functions/exports``), which writes every matching log to S3.
``status`` answers its progress and, once it has succeeded, a presigned link to the file. A running
export that has not moved for longer than a worker invocation lasts has died (a crash, a timeout the
worker could not see coming): it is answered, and recorded, as ``failed``, never ``running`` forever.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from functions.api import audit, reports
from functions.api.errors import ExportNotFound, InvalidExport
from functions.api.export_schemas import ExportOut, ExportRequest, ExportStarted
from functions.api.report_repository import ReportRepository
from functions.shared import exports, ids, timeutil
from functions.shared.exports import Export, ExportLauncher, ExportStore
from functions.shared.observability import logger

# Longer than the exports function's timeout (15 minutes): it saves its progress at least that often.
STALE_AFTER = timedelta(minutes=20)
URL_LIFETIME_SECONDS = 3600
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}

Presigner = Callable[[str, str, str], str]  # (object key, file name, content type) -> URL


def start(
    delivery_id: str,
    request: ExportRequest,
    *,
    actor: str,
    repo: ReportRepository | None = None,
    store: ExportStore | None = None,
    launcher: ExportLauncher | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> ExportStarted:
    """Record the export and start its worker: 404 unknown delivery, 409 nothing tracked, 422 bad filters."""
    if request.since is not None and request.until is not None and request.until <= request.since:
        raise InvalidExport("until must be later than since")
    reports.require_tracked_delivery(delivery_id, repo)
    store = store or exports.store()
    moment = timeutil.iso(now or timeutil.now())
    export_id = "x" + ids.random_id(15)
    filters = request.model_dump(mode="json", exclude={"format"}, exclude_none=True)
    export = Export(
        id=export_id,
        delivery_id=delivery_id,
        format=request.format,
        filters=filters,
        status="running",
        created_at=moment,
        updated_at=moment,
        object_key=exports.object_key(export_id, delivery_id, request.format),
        actor=actor,
    )
    store.add(export)
    audit.record(
        "export_requested",
        f"deliveries/{delivery_id}/tracking/exports/{export_id}",
        actor=actor,
        after={"format": request.format, **filters},
        trail=trail,
        now=now,
    )
    try:
        (launcher or exports.launcher()).launch(export_id)
    except Exception:
        logger.exception("the exports worker could not be started", extra={"export_id": export_id})
        store.save(export.but(status="failed", error="the export could not be started; try again"))
    return ExportStarted(id=export_id)


def status(
    export_id: str,
    *,
    store: ExportStore | None = None,
    presign: Presigner | None = None,
    now: datetime | None = None,
) -> ExportOut:
    store = store or exports.store()
    export = store.get(export_id)
    if export is None:
        raise ExportNotFound(f"there is no export {export_id!r}")
    moment = now or timeutil.now()
    if export.status == "running" and timeutil.parse(export.updated_at) < moment - STALE_AFTER:
        stopped = export.but(
            status="failed",
            error="the export stopped without finishing (its worker crashed or ran out of time); start it again",
            finished_at=timeutil.iso(moment),
            updated_at=timeutil.iso(moment),
        )
        # Unless it finished (or failed) meanwhile: then what it recorded is the answer.
        export = stopped if store.save(stopped) else store.get(export_id) or stopped
    url = None
    expires = timeutil.parse(export.created_at) + timedelta(days=exports.RETENTION_DAYS)
    if export.status == "succeeded" and moment < expires:
        name = f"tracking-logs-{export.delivery_id}-{export.id}.{export.format}"
        url = (presign or presigned_url)(export.object_key, name, CONTENT_TYPES[export.format])
    return ExportOut(
        id=export.id,
        status=export.status,
        rows=export.rows,
        url=url,
        delivery_id=export.delivery_id,
        format=export.format,
        error=export.error,
        created_at=export.created_at,
        finished_at=export.finished_at,
    )


def presigned_url(key: str, filename: str, content_type: str) -> str:
    """A GET link to the file, signed with the API function's role (which may only read exports/)."""
    import boto3
    from botocore.config import Config

    # Signature version 4: what S3 accepts in every region (version 2 is refused in newer ones).
    client = boto3.client("s3", config=Config(signature_version="s3v4"))
    return str(
        client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": exports.bucket_name(),
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": content_type,
            },
            ExpiresIn=URL_LIFETIME_SECONDS,
        )
    )
