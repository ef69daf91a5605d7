"""The exports worker: every tracking log an export asks for, written to S3 in parts, with bounded memory.

It reads the logs with the logs route's own query (``reports.delivery_log_query``) and turns each into
the route's LOG (``reports.log_item``), CSV with the route's columns and formula neutralisation, or JSON
lines. Rows collect in memory up to one part (``PART_SIZE``), which goes to S3 as a multipart-upload
part; the export's record then saves the parts, the rows they hold and the key of their last log. So:

- memory holds one part, whatever the number of logs;
- when the invocation's time runs low, the worker stops at the last uploaded part and invokes itself
  again, which resumes from the saved key (the rows after it, not yet in a part, are read again);
- anything that goes wrong aborts the upload and records the export ``failed`` with the error, and an
  invocation that could not upload a single part before its time ran out fails the export rather
  than loop (``functions/api/exports.py`` also fails an export whose worker died silently).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from functions.api import log_pages, reports
from functions.api.report_repository import LogKey, ReportRepository
from functions.api.report_schemas import LOG_COLUMNS
from functions.shared import timeutil
from functions.shared.exports import Export, ExportLauncher, ExportStore
from functions.shared.observability import logger

PART_SIZE = 8 * 1024 * 1024  # S3 wants at least 5 MiB in every part but the last
LOGS_PER_QUERY = 1_000  # logs a round of reading hands over (about 72 chain items)
TIME_MARGIN_MS = 90_000  # enough to upload a part and save the record before the invocation ends
MAX_INVOCATIONS = 100


class ObjectSink(Protocol):
    """An S3 multipart upload (``S3Sink``); an in-memory fake in unit tests."""

    def start(self, key: str, content_type: str) -> str: ...

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str: ...

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None: ...

    def abort(self, key: str, upload_id: str) -> None: ...


class ExportFailed(Exception):
    """The export cannot finish; the message is what its record shows."""


def run(
    export_id: str,
    *,
    store: ExportStore,
    logs: ReportRepository,
    sink: ObjectSink,
    relaunch: ExportLauncher,
    remaining_ms: Callable[[], int],
    part_size: int | None = None,
) -> Export | None:
    """Carry the export on from where its record says; its record, as saved last (None: unknown id)."""
    stored = store.get(export_id)
    if stored is None or stored.status != "running":
        return stored  # a repeated invocation of an export already over changes nothing
    # Claim it: an invocation that lost the claim to another (a duplicate event) leaves it alone.
    export = stored.but(invocations=stored.invocations + 1, updated_at=timeutil.iso(timeutil.now()))
    if not store.save(export, invocations=stored.invocations):
        return _abandon(store, sink, stored)
    try:
        if export.invocations > MAX_INVOCATIONS:
            raise ExportFailed(f"the export did not finish within {MAX_INVOCATIONS} invocations")
        if export.upload_id is None:
            content_type = "text/csv; charset=utf-8" if export.format == "csv" else "application/x-ndjson"
            export = export.but(upload_id=sink.start(export.object_key, content_type))
            if not store.save(export):
                return _abandon(store, sink, export)
        return _write(
            export,
            store=store,
            logs=logs,
            sink=sink,
            relaunch=relaunch,
            remaining_ms=remaining_ms,
            part_size=part_size or PART_SIZE,
        )
    except Exception as exc:
        return _fail(store, sink, export, exc)


def _write(
    export: Export,
    *,
    store: ExportStore,
    logs: ReportRepository,
    sink: ObjectSink,
    relaunch: ExportLauncher,
    remaining_ms: Callable[[], int],
    part_size: int,
) -> Export | None:
    upload_id = export.upload_id
    assert upload_id is not None
    query = reports.delivery_log_query(export.delivery_id, reports.LogRequest(**_filters(export.filters)))
    buffer = bytearray(_header(export) if not export.parts else b"")
    buffered_rows = 0
    last_key: LogKey | None = None
    parts_before = len(export.parts)
    sources = log_pages.sources(query)
    # Merged over the delivery's chains in the route's order; every chain resumes after the last log
    # of the uploaded parts (a place in that one order). A round reads at most about twice the items
    # its logs fill, and never less than a few items of every chain.
    items_per_round = max(2 * LOGS_PER_QUERY // log_pages.LOGS_PER_ITEM, 4 * len(sources))
    reading: log_pages.Positions | None = (
        log_pages.Positions.after_all(sources, LogKey(*export.position))
        if export.position
        else log_pages.Positions()
    )
    while reading is not None:
        page, reading = log_pages.read_page(logs, sources, reading, LOGS_PER_QUERY, items_per_round)
        for log in page:
            buffer += _row(export, reports.log_item(log))
            buffered_rows += 1
            last_key = LogKey(log.delivery_id, log.sk)
            if len(buffer) >= part_size:
                export = _upload(export, sink, bytes(buffer), buffered_rows, last_key)
                buffer.clear()
                buffered_rows = 0
                if not store.save(export):
                    return _abandon(store, sink, export)
        if reading is None:
            break
        if remaining_ms() < TIME_MARGIN_MS:
            if len(export.parts) == parts_before:
                raise ExportFailed(
                    "the export read logs for a whole invocation without filling one part; narrow its filters"
                )
            # Stop at the last uploaded part: the buffered rows are read again by the next invocation.
            relaunch.launch(export.id)
            logger.info("export continues in a new invocation", extra={"export_id": export.id})
            return export
    if buffer or not export.parts:
        export = _upload(export, sink, bytes(buffer), buffered_rows, last_key)
    sink.complete(export.object_key, upload_id, list(export.parts))
    moment = timeutil.iso(timeutil.now())
    done = export.but(status="succeeded", upload_id=None, finished_at=moment, updated_at=moment)
    if not store.save(done):
        return _abandon(store, sink, export)
    logger.info("export succeeded", extra={"export_id": export.id, "rows": done.rows})
    return done


def _upload(export: Export, sink: ObjectSink, data: bytes, rows: int, last_key: LogKey | None) -> Export:
    assert export.upload_id is not None
    number = len(export.parts) + 1
    etag = sink.put_part(export.object_key, export.upload_id, number, data)
    return export.but(
        parts=(*export.parts, (number, etag)),
        rows=export.rows + rows,
        position=(last_key.delivery_id, last_key.sk) if last_key else export.position,
        updated_at=timeutil.iso(timeutil.now()),
    )


def _filters(filters: dict[str, Any]) -> dict[str, Any]:
    """The stored filters as ``LogRequest`` fields (times back to datetimes)."""
    read = dict(filters)
    for name in ("since", "until"):
        if read.get(name):
            read[name] = timeutil.parse(str(read[name]))
    return read


def _header(export: Export) -> bytes:
    return reports.logs_csv([], LOG_COLUMNS).encode() if export.format == "csv" else b""


def _row(export: Export, item: Any) -> bytes:
    if export.format == "csv":
        return reports.logs_csv([item], LOG_COLUMNS, header=False).encode()
    return (
        json.dumps(item.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    )


def _fail(store: ExportStore, sink: ObjectSink, export: Export, error: Exception) -> Export:
    logger.exception("export failed", extra={"export_id": export.id})
    message = str(error) if isinstance(error, ExportFailed) else f"the export failed: {type(error).__name__}"
    _abort(sink, export)
    moment = timeutil.iso(timeutil.now())
    failed = export.but(status="failed", error=message, upload_id=None, finished_at=moment, updated_at=moment)
    try:
        store.save(failed)
    except Exception:  # the API's staleness check records it failed later
        logger.exception("the failed export could not be recorded", extra={"export_id": export.id})
    return failed


def _abandon(store: ExportStore, sink: ObjectSink, export: Export) -> Export | None:
    """This invocation may no longer write the export. If it is over (the API declared it dead), the
    upload is dropped; if another invocation claimed it, that one carries on with the upload."""
    current = store.get(export.id)
    if current is None or current.status != "running":
        _abort(sink, export)
    return current


def _abort(sink: ObjectSink, export: Export) -> None:
    if export.upload_id is None:
        return
    try:
        sink.abort(export.object_key, export.upload_id)
    except Exception:  # the bucket's lifecycle rule removes an upload left incomplete
        logger.exception("the multipart upload could not be aborted", extra={"export_id": export.id})


class S3Sink:
    def __init__(self, bucket: str, client: Any = None) -> None:
        import boto3

        self._bucket = bucket
        self._s3 = client or boto3.client("s3")

    def start(self, key: str, content_type: str) -> str:
        answer = self._s3.create_multipart_upload(Bucket=self._bucket, Key=key, ContentType=content_type)
        return str(answer["UploadId"])

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        answer = self._s3.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return str(answer["ETag"])

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
        )

    def abort(self, key: str, upload_id: str) -> None:
        self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
