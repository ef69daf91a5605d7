"""A complete export of a delivery's tracking logs: the record both functions share and how an export
is started.

The API function records an export (``running``) and starts the exports function, which writes every
matching log to the exports bucket and records its progress and outcome in the same item (the workflow
table, ``pk = "exports"``). Locally the local stack starts the same worker on a thread.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

ExportFormat = Literal["csv", "jsonl"]
ExportStatus = Literal["running", "succeeded", "failed"]

BUCKET_ENV = "MSGTRACK_EXPORTS_BUCKET"
FUNCTION_ENV = "MSGTRACK_EXPORTS_FUNCTION"
OBJECT_PREFIX = "exports/"  # the only prefix the functions may write and read
RETENTION_DAYS = 7  # the bucket's lifecycle rule expires an export's file after this long


@dataclass(frozen=True)
class Export:
    id: str
    delivery_id: str
    format: ExportFormat
    filters: dict[str, Any]  # the logs route's filters, as ``reports.LogRequest`` fields
    status: ExportStatus
    created_at: str
    updated_at: str
    object_key: str
    actor: str | None = None
    rows: int = 0
    error: str | None = None
    finished_at: str | None = None
    upload_id: str | None = None
    parts: tuple[tuple[int, str], ...] = field(default=())  # (part number, ETag) uploaded so far
    position: tuple[str, str] | None = None  # (delivery_id, sk) of the last log in the uploaded parts
    invocations: int = 0

    def but(self, **changes: Any) -> Export:
        return replace(self, **changes)


class ExportStore(Protocol):
    def add(self, export: Export) -> None: ...

    def get(self, export_id: str) -> Export | None: ...

    def save(self, export: Export, *, invocations: int | None = None) -> bool:
        """Write ``export`` over the stored one if that is still ``running`` and has been invoked
        ``invocations`` times (default: as many as ``export`` says); False otherwise. So an export
        already marked failed is never brought back, and of two invocations that raced to carry the
        same export on (an asynchronous event delivered twice), only the first to claim it writes."""
        ...


class ExportLauncher(Protocol):
    def launch(self, export_id: str) -> None: ...


def object_key(export_id: str, delivery_id: str, export_format: str) -> str:
    return f"{OBJECT_PREFIX}{delivery_id}/{export_id}.{export_format}"


def bucket_name() -> str:
    name = os.environ.get(BUCKET_ENV)
    if not name:
        from functions.shared.settings import SettingsError

        raise SettingsError(f"{BUCKET_ENV} is not set: exports have nowhere to go")
    return name


# --- DynamoDB ---------------------------------------------------------------------------------


class DynamoExportStore:
    def add(self, export: Export) -> None:
        _model(export).save(condition=_exists_not())

    def get(self, export_id: str) -> Export | None:
        from functions.shared.models import EXPORTS_PK, ExportModel

        try:
            item = ExportModel.get(EXPORTS_PK, export_id, consistent_read=True)
        except ExportModel.DoesNotExist:
            return None
        return Export(
            id=item.sk,
            delivery_id=item.delivery_id,
            format="jsonl" if item.format == "jsonl" else "csv",
            filters=dict(json.loads(item.filters)),
            status=_status(item.status),
            created_at=item.created_at,
            updated_at=item.updated_at,
            object_key=item.object_key,
            actor=item.actor,
            rows=int(item.rows or 0),
            error=item.error,
            finished_at=item.finished_at,
            upload_id=item.upload_id,
            parts=tuple((int(n), str(etag)) for n, etag in json.loads(item.parts or "[]")),
            position=_position(item.position),
            invocations=int(item.invocations or 0),
        )

    def save(self, export: Export, *, invocations: int | None = None) -> bool:
        from pynamodb.exceptions import PutError

        from functions.shared.models import ExportModel

        claimed = export.invocations if invocations is None else invocations
        try:
            _model(export).save(
                condition=(ExportModel.status == "running") & (ExportModel.invocations == claimed)
            )
        except PutError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _position(stored: str | None) -> tuple[str, str] | None:
    if not stored:
        return None
    delivery_id, sk = json.loads(stored)
    return str(delivery_id), str(sk)


def _status(value: str) -> ExportStatus:
    return "succeeded" if value == "succeeded" else "failed" if value == "failed" else "running"


def _exists_not() -> Any:
    from functions.shared.models import ExportModel

    return ExportModel.sk.does_not_exist()


def _model(export: Export) -> Any:
    from functions.shared.models import ExportModel

    return ExportModel(
        sk=export.id,
        delivery_id=export.delivery_id,
        format=export.format,
        filters=json.dumps(export.filters, sort_keys=True),
        status=export.status,
        rows=export.rows,
        error=export.error,
        actor=export.actor,
        created_at=export.created_at,
        updated_at=export.updated_at,
        finished_at=export.finished_at,
        object_key=export.object_key,
        upload_id=export.upload_id,
        parts=json.dumps([list(part) for part in export.parts]),
        position=json.dumps(list(export.position)) if export.position else None,
        invocations=export.invocations,
    )


# --- starting the worker ----------------------------------------------------------------------


class LambdaExportLauncher:
    """Invokes the exports function asynchronously (``Event``): the API answers 202 at once."""

    def __init__(self, function_name: str) -> None:
        self._function_name = function_name

    def launch(self, export_id: str) -> None:
        import boto3

        boto3.client("lambda").invoke(
            FunctionName=self._function_name,
            InvocationType="Event",
            Payload=json.dumps({"export_id": export_id}).encode(),
        )


_launcher: ExportLauncher | None = None
_store: ExportStore | None = None


def configure(launcher: ExportLauncher | None = None, store: ExportStore | None = None) -> None:
    """Install a launcher (the local stack's thread) and a store (tests); None restores AWS's."""
    global _launcher, _store
    _launcher, _store = launcher, store


def launcher(function_name: str | None = None) -> ExportLauncher:
    """The configured launcher, else an async invoke of ``function_name`` or MSGTRACK_EXPORTS_FUNCTION."""
    if _launcher is not None:
        return _launcher
    name = function_name or os.environ.get(FUNCTION_ENV)
    if not name:
        from functions.shared.settings import SettingsError

        raise SettingsError(f"{FUNCTION_ENV} is not set and no local exports launcher is configured")
    return LambdaExportLauncher(name)


def store() -> ExportStore:
    return _store if _store is not None else DynamoExportStore()
