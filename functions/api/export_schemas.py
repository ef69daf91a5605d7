"""What the export routes read and answer (``POST .../tracking/exports``, ``GET /api/exports/{id}``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from functions.api.report_schemas import IsoTime, LogType, Order, Traffic
from functions.shared.exports import ExportFormat, ExportStatus


class ExportRequest(BaseModel):
    """The file's format and the logs route's filters (no ``limit`` or ``cursor``: every page)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt filter is a 422, not a silent full export

    format: ExportFormat = Field(description="csv (the logs route's CSV columns) or jsonl (one LOG per line)")
    type: LogType | None = None
    recipient_id: str | None = Field(default=None, min_length=1, max_length=200)
    url_id: str | None = Field(default=None, min_length=1, max_length=200)
    since: IsoTime | None = Field(default=None, description="inclusive")
    until: IsoTime | None = Field(default=None, description="exclusive")
    order: Order = "desc"
    traffic: Traffic = Field(
        default="all", description="human: only the hits no machine made, as the logs route"
    )


class ExportStarted(BaseModel):
    id: str


class ExportOut(BaseModel):
    id: str
    status: ExportStatus
    rows: int = Field(description="logs written so far; every matching log once succeeded")
    url: str | None = Field(
        description="once succeeded: a link that downloads the file (valid for an hour; ask again for "
        "a fresh one), until the file expires 7 days after the export; else null"
    )
    delivery_id: str
    format: ExportFormat
    error: str | None = Field(description="why the export failed; else null")
    created_at: str
    finished_at: str | None
