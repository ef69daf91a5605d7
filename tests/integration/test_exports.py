"""Complete exports on moto: the export record in DynamoDB, the worker's S3 multipart upload (moto
keeps S3's rule that every part but the last is large enough) and the presigned download link."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from functions.api.handler import lambda_handler as api_handler
from functions.exports import worker
from functions.exports.handler import lambda_handler as exports_handler
from functions.shared import exports
from functions.shared.log_chain_store import write_logs
from functions.shared.models import DeliveryModel, TrackingLogModel
from local.aws import create_exports_bucket
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_exports import FakeLauncher

LOGS = 600
MIN_PART = 16 * 1024  # moto's smallest part but the last, for this test (S3's is 5 MiB)


@pytest.fixture
def stack(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLauncher]:
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", MIN_PART)
    monkeypatch.setattr(worker, "PART_SIZE", MIN_PART)
    monkeypatch.setenv(exports.BUCKET_ENV, create_exports_bucket())
    DeliveryModel(
        delivery_id="d1",
        created="2026-12-01T07:00:00.000Z#d1",
        created_at="2026-12-01T07:00:00.000Z",
        label="December news",
        html="<p>hi</p>",
        track_opens=True,
        track_clicks=True,
    ).save()
    logs = []
    for n in range(LOGS):
        at = f"2026-12-01T08:{n // 60:02d}:{n % 60:02d}.000Z"
        logs.append(
            TrackingLogModel(
                delivery_id="d1",
                sk=f"{at}#e{n:04d}",
                event_id=f"e{n:04d}",
                recipient_id=f"r{n % 7}",
                type="click" if n % 2 else "open",
                url_id="u1" if n % 2 else None,
                url="https://shop.example/sale" if n % 2 else None,
                label="@Sale" if n % 2 else None,
                at=at,
                browser="Firefox",
                os="Linux",
                device="desktop",
                person_id=f"p{n % 7}",
            )
        )
    assert write_logs(logs) == []  # into the chains of the 7 recipients, packed as the workflow packs them
    launcher = FakeLauncher()
    exports.configure(launcher=launcher)
    yield launcher
    exports.configure(None)


def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    return api_handler(http_event(method, path, body=body), FakeContext())


def test_an_export_goes_to_s3_in_parts_and_downloads_from_its_presigned_link(stack: FakeLauncher) -> None:
    # Given an export asked for through the API
    started = call("POST", "/api/deliveries/d1/tracking/exports", {"format": "csv", "order": "asc"})
    assert started["statusCode"] == 202, started["body"]
    export_id = json_body(started)["id"]
    assert stack.launched == [export_id]
    # When the exports function runs it
    assert exports_handler({"export_id": export_id}, FakeContext()) == {
        "export_id": export_id,
        "status": "succeeded",
    }
    # Then the record has every row and S3 got several parts
    status = json_body(call("GET", f"/api/exports/{export_id}"))
    assert (status["status"], status["rows"]) == ("succeeded", LOGS)
    key = f"exports/d1/{export_id}.csv"
    head = boto3.client("s3").head_object(Bucket=exports.bucket_name(), Key=key, PartNumber=1)
    assert head["PartsCount"] >= 3
    # and the presigned link downloads the file, which only reads exports/ of the bucket
    assert status["url"].startswith("https://") and "X-Amz-Signature=" in status["url"]
    download = requests.get(status["url"], timeout=10)
    assert download.status_code == 200
    rows = list(csv.reader(io.StringIO(download.text)))
    assert len(rows) == LOGS + 1 and [row[0] for row in rows[1:]] == [f"e{n:04d}" for n in range(LOGS)]
    assert rows[2][6] == "'@Sale"


def test_the_stored_record_cannot_be_brought_back_once_failed(stack: FakeLauncher) -> None:
    export_id = json_body(call("POST", "/api/deliveries/d1/tracking/exports", {"format": "jsonl"}))["id"]
    store = exports.DynamoExportStore()
    export = store.get(export_id)
    assert (
        export is not None
        and export.status == "running"
        and export.filters == {"order": "desc", "traffic": "all"}
    )
    assert store.save(export.but(status="failed", error="stopped"))
    assert not store.save(export.but(rows=3))
    assert exports_handler({"export_id": export_id}, FakeContext())["status"] == "failed"
    assert boto3.client("s3").list_multipart_uploads(Bucket=exports.bucket_name()).get("Uploads", []) == []


def test_an_s3_fault_fails_the_export_and_leaves_no_upload_open(
    stack: FakeLauncher, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    export_id = json_body(call("POST", "/api/deliveries/d1/tracking/exports", {"format": "csv"}))["id"]
    calls = {"n": 0}
    real = worker.S3Sink.put_part

    def flaky(self: worker.S3Sink, key: str, upload_id: str, number: int, data: bytes) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise boto3.client("s3").exceptions.NoSuchUpload(
                {"Error": {"Code": "NoSuchUpload"}}, "UploadPart"
            )
        return real(self, key, upload_id, number, data)

    monkeypatch.setattr(worker.S3Sink, "put_part", flaky)
    assert exports_handler({"export_id": export_id}, FakeContext())["status"] == "failed"
    status = json_body(call("GET", f"/api/exports/{export_id}"))
    assert status["status"] == "failed" and status["url"] is None and "NoSuchUpload" in status["error"]
    assert boto3.client("s3").list_multipart_uploads(Bucket=exports.bucket_name()).get("Uploads", []) == []
    reliability.record("Faults", "export: S3 refuses a part (moto)", 1, "export failed, upload aborted")
