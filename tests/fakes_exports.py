"""In-memory stand-ins for the exports: the record store, the S3 multipart upload, the launcher."""

from __future__ import annotations

from dataclasses import dataclass, field

from functions.shared.exports import Export


@dataclass
class FakeExportStore:
    items: dict[str, Export] = field(default_factory=dict)
    saves: int = 0

    def add(self, export: Export) -> None:
        assert export.id not in self.items
        self.items[export.id] = export

    def get(self, export_id: str) -> Export | None:
        return self.items.get(export_id)

    def save(self, export: Export, *, invocations: int | None = None) -> bool:
        stored = self.items[export.id]
        claimed = export.invocations if invocations is None else invocations
        if stored.status != "running" or stored.invocations != claimed:
            return False
        self.items[export.id] = export
        self.saves += 1
        return True


@dataclass
class Upload:
    key: str
    content_type: str
    parts: dict[int, bytes] = field(default_factory=dict)
    state: str = "open"  # open, completed, aborted


@dataclass
class FakeSink:
    """Keeps S3's rules that matter here: every part but the last is at least ``min_part`` bytes, and
    completing names exactly the parts uploaded, by their ETags."""

    min_part: int = 0
    uploads: dict[str, Upload] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    fail_on_part: int | None = None  # raise when this part number is uploaded
    largest_part: int = 0

    def start(self, key: str, content_type: str) -> str:
        upload_id = f"u{len(self.uploads) + 1}"
        self.uploads[upload_id] = Upload(key, content_type)
        return upload_id

    def put_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        if number == self.fail_on_part:
            raise ConnectionError("S3 is unreachable")
        upload = self.uploads[upload_id]
        assert upload.state == "open" and upload.key == key
        upload.parts[number] = data
        self.largest_part = max(self.largest_part, len(data))
        return f'"etag-{number}-{len(data)}"'

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        upload = self.uploads[upload_id]
        numbers = [n for n, _ in parts]
        assert numbers == sorted(upload.parts) == list(range(1, len(numbers) + 1))
        for n, etag in parts:
            assert etag == f'"etag-{n}-{len(upload.parts[n])}"'
            if n != numbers[-1]:
                assert len(upload.parts[n]) >= self.min_part, "a part before the last is too small"
        upload.state = "completed"
        self.objects[key] = b"".join(upload.parts[n] for n in numbers)

    def abort(self, key: str, upload_id: str) -> None:
        self.uploads[upload_id].state = "aborted"


@dataclass
class FakeLauncher:
    launched: list[str] = field(default_factory=list)

    def launch(self, export_id: str) -> None:
        self.launched.append(export_id)
