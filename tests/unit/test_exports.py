"""Complete exports with in-memory fakes: every matching log in the file, formulas neutralised,
bounded parts, a cut invocation resumed, and every failure recorded ``failed``, never left ``running``.

The expected file is built from the logs route itself, page by page, not by the code under test.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.api import exports as api_exports
from functions.api import log_pages, report_repository, reports
from functions.api.export_schemas import ExportRequest
from functions.api.report_repository import TrackingLog
from functions.api.report_schemas import LOG_COLUMNS
from functions.exports import worker
from functions.shared import exports, log_chains
from functions.shared.errors import DeliveryNotFound, TrackingNotActivated
from functions.shared.log_chain_store import ChainItems
from functions.shared.log_chains import ChainItem, chain_of
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_exports import FakeExportStore, FakeLauncher, FakeSink
from tests.fakes_reports import FakeReports

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
TYPES = ("open", "click", "opt_out", "mirror")


def seeded(count: int) -> FakeReports:
    fake = FakeReports()
    fake.add_delivery("d1", "December news")
    fake.add_delivery("d2", "Other")
    fake.add_delivery("quiet", track_opens=False, track_clicks=False)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    for n in range(count):
        at = (start + timedelta(seconds=7 * n)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        kind = TYPES[n % 4]
        fake.add_log(
            "d1",
            f"e{n:05d}",
            at,
            recipient_id=f"r{n % 13}",
            type=kind,
            url_id=None if kind == "open" else f"u{n % 3}",
            url=None if kind == "open" else f"https://shop.example/p?{n},x",
            label=None if kind == "open" else f"Link {n % 3}",
            machine="bot" if n % 10 == 0 else None,
            machine_reason="User-Agent curl/" if n % 10 == 0 else None,
        )
    fake.add_log("d2", "other", "2026-12-01T00:00:00.000Z")
    return fake


def route_pages(fake: FakeReports, **filters: Any) -> list[dict[str, Any]]:
    """Every page of the logs route, 200 at a time, as its JSON items."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = reports.delivery_logs("d1", reports.LogRequest(limit=200, cursor=cursor, **filters), fake)
        items.extend(item.model_dump(mode="json") for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


def route_csv(fake: FakeReports, **filters: Any) -> list[list[str]]:
    rows: list[list[str]] = [list(LOG_COLUMNS)]
    cursor = None
    while True:
        page = reports.delivery_logs("d1", reports.LogRequest(limit=200, cursor=cursor, **filters), fake)
        rows.extend(list(csv.reader(io.StringIO(reports.logs_csv(page.items, LOG_COLUMNS))))[1:])
        cursor = page.next_cursor
        if cursor is None:
            return rows


class Stack:
    def __init__(self, fake: FakeReports, **sink: Any) -> None:
        self.fake = fake
        self.store = FakeExportStore()
        self.sink = FakeSink(**sink)
        self.launcher = FakeLauncher()

    def start(self, **body: Any) -> str:
        request = ExportRequest(**body)
        return api_exports.start(
            "d1", request, actor="ann", repo=self.fake, store=self.store, launcher=self.launcher, now=NOW
        ).id

    def work(self, export_id: str, remaining: Iterator[int] | None = None, part_size: int = 4096) -> Any:
        left = remaining or iter(lambda: 600_000, None)
        return worker.run(
            export_id,
            store=self.store,
            logs=self.fake,
            sink=self.sink,
            relaunch=self.launcher,
            remaining_ms=lambda: next(left),
            part_size=part_size,
        )

    def file(self, export_id: str) -> str:
        return self.sink.objects[self.store.items[export_id].object_key].decode()


# --- the file holds every matching log ----------------------------------------------------------


def test_given_more_logs_than_many_pages_when_exported_as_csv_then_the_file_is_every_page_of_the_route() -> (
    None
):
    # Given 2,345 logs of d1 (12 pages of the logs route, 3 queries of the worker) and one of d2
    stack = Stack(seeded(2_345), min_part=4096)
    # When the export runs with 4 KiB parts
    export_id = stack.start(format="csv")
    done = stack.work(export_id)
    # Then it succeeded with every row, the file is the route's CSV pages end to end, in many parts
    assert done.status == "succeeded" and done.rows == 2_345
    assert list(csv.reader(io.StringIO(stack.file(export_id)))) == route_csv(stack.fake)
    upload = next(iter(stack.sink.uploads.values()))
    assert len(upload.parts) > 20 and upload.state == "completed"
    assert upload.content_type.startswith("text/csv")


def test_given_filters_when_exported_as_jsonl_then_each_line_is_the_routes_log_with_the_same_filters() -> (
    None
):
    stack = Stack(seeded(1_500))
    filters: dict[str, Any] = {
        "type": "click",
        "since": datetime(2026, 12, 1, 0, 30, tzinfo=UTC),
        "until": datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
        "order": "asc",
    }
    export_id = stack.start(format="jsonl", **filters)
    done = stack.work(export_id)
    lines = [json.loads(line) for line in stack.file(export_id).splitlines()]
    expected = route_pages(stack.fake, **filters)
    assert lines == expected
    # logs every 7 s: n = 258 (00:30:06) to 1028 (01:59:56); clicks are n = 1 mod 4: 261 to 1025
    assert done.rows == len(expected) == (1025 - 261) // 4 + 1
    assert lines[0]["machine"] is None and "machine_reason" in lines[0]


def test_given_traffic_human_when_exported_then_machine_hits_are_left_out_as_the_route_leaves_them() -> None:
    stack = Stack(seeded(400))
    export_id = stack.start(format="jsonl", traffic="human")
    done = stack.work(export_id)
    lines = [json.loads(line) for line in stack.file(export_id).splitlines()]
    assert lines == route_pages(stack.fake, traffic="human")
    assert done.rows == 360 and all(line["machine"] is None for line in lines)  # every 10th is a bot


def test_given_a_recipient_filter_when_exported_then_only_that_recipients_logs_are_in_it() -> None:
    stack = Stack(seeded(260))
    export_id = stack.start(format="csv", recipient_id="r5")
    stack.work(export_id)
    rows = list(csv.reader(io.StringIO(stack.file(export_id))))[1:]
    assert {row[2] for row in rows} == {"r5"} and len(rows) == 20  # n = 5, 18, ..., 252


def test_given_no_matching_log_when_exported_then_the_file_is_just_the_header() -> None:
    stack = Stack(seeded(10))
    export_id = stack.start(format="csv", recipient_id="nobody")
    done = stack.work(export_id)
    assert done.status == "succeeded" and done.rows == 0
    assert stack.file(export_id) == ",".join(LOG_COLUMNS) + "\r\n"


def test_given_a_large_export_then_no_part_holds_much_more_than_the_part_size() -> None:
    # Bounded memory: the worker holds one part at a time
    stack = Stack(seeded(3_000))
    stack.work(stack.start(format="jsonl"), part_size=10_000)
    assert 10_000 <= stack.sink.largest_part < 10_000 + 1_000  # one row at most past the size


# --- spreadsheet formulas -------------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_given_a_cell_starting_with_a_formula_character_when_exported_then_it_is_neutralised(
    start: str,
) -> None:
    fake = seeded(0)
    fake.add_log(
        "d1",
        "x1",
        "2026-12-01T00:00:00.000Z",
        type="click",
        url_id="u1",
        url="https://a.example/",
        label=start + 'HYPERLINK("http://evil")',
        recipient_id=start + "r1",
    )
    stack = Stack(fake)
    export_id = stack.start(format="csv")
    stack.work(export_id)
    row = list(csv.reader(io.StringIO(stack.file(export_id))))[1]
    assert row[LOG_COLUMNS.index("label")] == "'" + start + 'HYPERLINK("http://evil")'
    assert row[LOG_COLUMNS.index("recipient_id")] == "'" + start + "r1"
    # and the logs route's own CSV says the same
    page = reports.delivery_logs("d1", reports.LogRequest(), fake)
    assert list(csv.reader(io.StringIO(reports.logs_csv(page.items, LOG_COLUMNS))))[1] == row


# --- time runs out, faults ----------------------------------------------------------------------


def test_given_time_runs_low_when_a_part_is_uploaded_then_it_continues_in_a_new_invocation_exactly_once(
    reliability: Any,
) -> None:
    stack = Stack(seeded(2_500), min_part=4096)
    export_id = stack.start(format="csv")
    # When the first invocation's time runs low after its first query
    first = stack.work(export_id, iter([10_000] * 1_000))
    # Then it stopped at its last uploaded part, still running, and invoked itself again
    assert first.status == "running" and 0 < first.rows < 2_500 and first.position is not None
    assert stack.launcher.launched == [export_id, export_id]  # the API's start, then the worker's
    # When the next invocations run with time to spare
    done = stack.work(export_id)
    # Then the file has every log exactly once
    assert done.status == "succeeded" and done.invocations == 2
    rows = list(csv.reader(io.StringIO(stack.file(export_id))))
    assert rows == route_csv(stack.fake)
    reliability.record(
        "Faults",
        "export: the worker's time runs out mid-export (resumed in a new invocation)",
        1,
        "resumed from the last uploaded part, every log once",
        lost=0,
        doubled=0,
    )


def test_given_the_same_start_delivered_twice_then_only_the_first_invocation_to_claim_it_writes(
    reliability: Any,
) -> None:
    stack = Stack(seeded(2_500), min_part=4096)
    export_id = stack.start(format="csv")
    before = stack.store.items[export_id]
    # Given one invocation that has claimed the export and uploaded parts before its time ran low
    first = stack.work(export_id, iter([10_000] * 1_000))
    assert first.status == "running" and first.upload_id is not None

    # When a duplicate of the first event runs, having read the record before that claim
    class StaleOnce(FakeExportStore):
        stale = True

        def get(self, wanted: str) -> Any:
            if self.stale:
                self.stale = False
                return before
            return super().get(wanted)

    duplicate_store = StaleOnce(items=stack.store.items)
    answer = worker.run(
        export_id,
        store=duplicate_store,
        logs=stack.fake,
        sink=stack.sink,
        relaunch=stack.launcher,
        remaining_ms=lambda: 600_000,
        part_size=4096,
    )
    # Then it wrote nothing and left the upload open for the invocation that owns it
    assert answer == first and stack.store.items[export_id] == first
    assert stack.sink.uploads[first.upload_id].state == "open"
    # And the owner's next invocation finishes the file, every log once
    done = stack.work(export_id)
    assert done.status == "succeeded"
    assert list(csv.reader(io.StringIO(stack.file(export_id)))) == route_csv(stack.fake)
    reliability.record(
        "Faults",
        "export: the worker's start event delivered twice",
        1,
        "one invocation writes",
        lost=0,
        doubled=0,
    )


def test_given_time_runs_out_before_one_part_is_full_then_the_export_fails_instead_of_looping() -> None:
    stack = Stack(seeded(2_500))
    export_id = stack.start(format="csv")
    done = stack.work(export_id, iter([10_000] * 1_000), part_size=10_000_000)
    assert done.status == "failed" and "narrow its filters" in done.error
    assert stack.launcher.launched == [export_id]
    assert next(iter(stack.sink.uploads.values())).state == "aborted"


def test_given_s3_fails_mid_export_then_the_export_is_failed_with_an_error_and_the_upload_aborted(
    reliability: Any,
) -> None:
    stack = Stack(seeded(1_000), fail_on_part=3)
    export_id = stack.start(format="csv")
    done = stack.work(export_id)
    assert done.status == "failed" and done.error == "the export failed: ConnectionError"
    assert stack.store.items[export_id].status == "failed"
    assert next(iter(stack.sink.uploads.values())).state == "aborted"
    assert stack.sink.objects == {}
    reliability.record(
        "Faults", "export: S3 refuses a part", 1, "export failed with its error, upload aborted"
    )


def test_given_an_export_already_over_when_invoked_again_then_nothing_changes() -> None:
    stack = Stack(seeded(300))
    export_id = stack.start(format="csv")
    done = stack.work(export_id)
    saves = stack.store.saves
    again = stack.work(export_id)
    assert again == done and stack.store.saves == saves and len(stack.sink.uploads) == 1


def test_given_a_worker_that_died_silently_when_its_status_is_asked_later_then_it_is_failed(
    reliability: Any,
) -> None:
    stack = Stack(seeded(10))
    export_id = stack.start(format="csv")
    # Nothing ran it. 19 minutes later it still counts as running; 21 minutes later it has died.
    assert (
        api_exports.status(export_id, store=stack.store, now=NOW + timedelta(minutes=19)).status == "running"
    )
    late = api_exports.status(export_id, store=stack.store, now=NOW + timedelta(minutes=21))
    assert late.status == "failed" and "stopped without finishing" in (late.error or "")
    # and a worker that wakes up afterwards cannot bring it back
    assert stack.work(export_id).status == "failed"
    assert stack.sink.objects == {}
    reliability.record(
        "Faults", "export: the worker dies without a word", 1, "answered failed after 20 minutes"
    )


def test_given_the_worker_cannot_be_started_then_the_export_is_failed_at_once() -> None:
    class Broken:
        def launch(self, export_id: str) -> None:
            raise ConnectionError("lambda unreachable")

    stack = Stack(seeded(10))
    started = api_exports.start(
        "d1",
        ExportRequest(format="csv"),
        actor="ann",
        repo=stack.fake,
        store=stack.store,
        launcher=Broken(),
        now=NOW,
    )
    assert stack.store.items[started.id].status == "failed"


# --- starting and following an export -----------------------------------------------------------


def test_given_an_unknown_or_untracked_delivery_when_exported_then_404_or_409_and_nothing_recorded() -> None:
    stack = Stack(seeded(1))
    for delivery, error in (("nope", DeliveryNotFound), ("quiet", TrackingNotActivated)):
        with pytest.raises(error):
            api_exports.start(
                delivery,
                ExportRequest(format="csv"),
                actor="a",
                repo=stack.fake,
                store=stack.store,
                launcher=stack.launcher,
            )
    assert stack.store.items == {} and stack.launcher.launched == []


def test_given_a_succeeded_export_then_its_status_has_the_rows_and_a_download_link_until_it_expires() -> None:
    stack = Stack(seeded(30))
    export_id = stack.start(format="jsonl")
    stack.work(export_id)
    signed: list[tuple[str, str, str]] = []

    def presign(key: str, name: str, content_type: str) -> str:
        signed.append((key, name, content_type))
        return "https://bucket.example/" + key

    answer = api_exports.status(export_id, store=stack.store, presign=presign, now=NOW)
    assert (answer.status, answer.rows, answer.format) == ("succeeded", 30, "jsonl")
    assert answer.url == f"https://bucket.example/exports/d1/{export_id}.jsonl"
    assert signed == [
        (f"exports/d1/{export_id}.jsonl", f"tracking-logs-d1-{export_id}.jsonl", "application/x-ndjson")
    ]
    expired = api_exports.status(export_id, store=stack.store, presign=presign, now=NOW + timedelta(days=8))
    assert expired.url is None and expired.status == "succeeded"


# --- through the Lambda handler -----------------------------------------------------------------


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    stack = Stack(seeded(20))
    report_repository.configure(stack.fake)
    exports.configure(launcher=stack.launcher, store=stack.store)
    monkeypatch.setattr(api_exports, "presigned_url", lambda key, name, kind: "https://signed.example/" + key)
    yield stack
    exports.configure(None, None)
    report_repository.configure(None)


def call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    from functions.api.handler import lambda_handler

    return lambda_handler(http_event(method, path, body=body), FakeContext())


def test_handler_starts_an_export_with_202_audits_it_and_answers_its_status(
    api: Stack, audit_trail: Any
) -> None:
    response = call("POST", "/api/deliveries/d1/tracking/exports", {"format": "csv", "type": "open"})
    assert response["statusCode"] == 202
    export_id = json_body(response)["id"]
    assert api.launcher.launched == [export_id]
    assert audit_trail.actions() == ["export_requested"]
    assert audit_trail.entries[0].after == {
        "format": "csv",
        "type": "open",
        "order": "desc",
        "traffic": "all",
    }
    running = json_body(call("GET", f"/api/exports/{export_id}"))
    assert (running["status"], running["url"]) == ("running", None)
    api.work(export_id)
    done = json_body(call("GET", f"/api/exports/{export_id}"))
    assert done["status"] == "succeeded" and done["rows"] == 5  # opens: n = 0, 4, 8, 12, 16
    assert done["url"] == f"https://signed.example/exports/d1/{export_id}.csv"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"format": "xml"}, 422),
        ({}, 422),
        ({"format": "csv", "type": "bounce"}, 422),
        ({"format": "csv", "since": "yesterday"}, 422),
        ({"format": "csv", "order": "up"}, 422),
        ({"format": "csv", "limit": 5}, 422),
        ({"format": "csv", "since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, 422),
        ("not json", 400),
    ],
)
def test_handler_refuses_bad_export_requests_with_a_message(
    api: Stack, body: Any, status: int, reliability: Any
) -> None:
    response = call("POST", "/api/deliveries/d1/tracking/exports", body)
    assert response["statusCode"] == status
    assert json_body(response)["error"] == "validation_error" and json_body(response)["message"]
    assert api.store.items == {}
    reliability.record("Bad input", "export request: bad format or filters", 1, f"{status}, nothing started")


def test_handler_answers_404_to_an_unknown_delivery_or_export(api: Stack) -> None:
    assert call("POST", "/api/deliveries/nope/tracking/exports", {"format": "csv"})["statusCode"] == 404
    response = call("GET", "/api/exports/xnothere")
    assert response["statusCode"] == 404 and json_body(response)["error"] == "not_found"


def test_the_export_routes_are_in_the_openapi_document(api: Stack) -> None:
    paths = json_body(call("GET", "/api/openapi.json"))["paths"]
    assert "202" in paths["/api/deliveries/{delivery_id}/tracking/exports"]["post"]["responses"]
    assert "/api/exports/{export_id}" in paths


# --- bounded memory -----------------------------------------------------------------------------


class GeneratedLogs(FakeReports):
    """``count`` logs of d1, oldest first, made when a query reaches them: nothing is held in memory
    but their numbers. Each chain's logs are packed ten to an item."""

    PER_ITEM = 10

    def __init__(self, count: int) -> None:
        super().__init__()
        self.add_delivery("d1")
        self.count = count
        chain_of_recipient = [chain_of("d1", f"r{n}") for n in range(997)]
        self.numbers: dict[str, list[int]] = {}
        for n in range(count):
            self.numbers.setdefault(chain_of_recipient[n % 997], []).append(n)
        self.starts = {chain: numbers[:: self.PER_ITEM] for chain, numbers in self.numbers.items()}

    def log(self, n: int) -> TrackingLog:
        at = f"2026-12-01T{n // 3_600_000:02d}:{n // 60_000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z"
        return TrackingLog(
            delivery_id="d1", sk=f"{at}#e{n:07d}", event_id=f"e{n:07d}", recipient_id=f"r{n % 997}",
            type="click", url_id="u1", url="https://shop.example/sale?from=mail", label="Sale", at=at,
            browser="Firefox", os="Linux", device="desktop",
        )  # fmt: skip

    def chain_items(
        self, chain: str, key: str | None, *, forward: bool, limit: int, inclusive: bool = False
    ) -> ChainItems:
        starts = self.starts.get(chain, [])
        number = None if key is None else int(key.rsplit("#e", 1)[1])  # every key read here is a log's
        if forward:
            first = 0 if number is None else bisect.bisect_right(starts, number)
            chosen = list(range(first, min(first + limit, len(starts))))
        else:
            end = (
                len(starts)
                if number is None
                else (bisect.bisect_right if inclusive else bisect.bisect_left)(starts, number)
            )
            chosen = list(range(end - 1, max(end - 1 - limit, -1), -1))
        items = []
        for index in chosen:
            logs = self.numbers[chain][index * self.PER_ITEM : (index + 1) * self.PER_ITEM]
            # the logs as records of their fields, as light as the rows they become: this fake holds
            # up to three items of each of 64 chains at once, and PynamoDB models would be what it measured
            records: tuple[Any, ...] = tuple(self.log(n) for n in logs)
            items.append(ChainItem(chain, self.log(logs[0]).sk, records))
        return ChainItems(items, len(items) == limit)


class CountingSink(FakeSink):
    """Keeps only the size and line count of each part, as S3 would keep the bytes."""

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        self.largest_part = max(self.largest_part, len(data))
        self.uploads[upload_id].parts[number] = str(data.count(b"\n")).encode()
        return f'"etag-{number}"'

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        upload = self.uploads[upload_id]
        assert [n for n, _ in parts] == sorted(upload.parts)
        upload.state = "completed"


def test_given_many_logs_then_the_worker_holds_about_one_part_in_memory_whatever_the_file_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tracemalloc

    # What it holds is one part and one round's logs: 1,000 and the rest of the items read from each
    # of the 64 chains in production (an owner item, one or two more, at ~14 logs each: about 3,000
    # logs, 3 MB, under a part of 8 MB). Fewer here, so that the part is what is measured: 100 logs a
    # round, and items of one log.
    monkeypatch.setattr(worker, "LOGS_PER_QUERY", 100)
    monkeypatch.setattr(GeneratedLogs, "PER_ITEM", 1)
    count = 20_000
    stack = Stack(GeneratedLogs(count))
    stack.sink = CountingSink()
    export_id = stack.start(format="csv", order="asc")
    part_size = 64 * 1024
    # The 64 threads that query the chains at once live as long as the function's container: they
    # are started before measuring, as a warm container has them.
    started = threading.Barrier(log_chains.LOG_CHAINS + 1, timeout=30)
    waiting = [log_pages._QUERIES.submit(started.wait) for _ in range(log_chains.LOG_CHAINS)]
    started.wait()
    futures.wait(waiting)
    tracemalloc.start()
    try:
        done = stack.work(export_id, part_size=part_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    upload = next(iter(stack.sink.uploads.values()))
    lines = sum(int(part) for part in upload.parts.values())
    assert done.status == "succeeded" and done.rows == count and lines == count + 1  # and the header
    file_size = len(upload.parts) * part_size  # about: every part but the last is one part size
    assert file_size > 30 * part_size  # a file of many parts
    # the part being filled, its copy on its way to S3 and one round's logs: a few parts, not the
    # file; a round reads the 64 chains at once, each up to three items (a log and its row: 2 KiB)
    chains_at_once = log_chains.LOG_CHAINS * 3 * GeneratedLogs.PER_ITEM * 2048
    assert peak < 6 * part_size + chains_at_once < file_size / 2, (
        f"peak {peak:,} bytes for a {file_size:,}-byte file"
    )
