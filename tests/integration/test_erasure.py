"""DELETE /api/recipients/{id}/tracking on moto: the workflow erases the recipient, aggregates stay."""

from __future__ import annotations

from typing import Any

import pytest

from functions.api import handler as api_handler
from functions.api import launcher
from functions.consolidate import handler as consolidate_handler
from functions.shared import recipient_logs
from functions.shared.models import (
    DeliveryStatsModel,
    ErasureModel,
    RawEventModel,
    RecipientStateModel,
    TrackingLogModel,
    stored_recipient_key,
)
from tests.apigw import FakeContext, http_event, json_body
from tests.integration.test_tracking_flow import delivery, spill_past_one_key, traffic  # noqa: F401 - fixture
from tests.stored_logs import delivery_logs

pytestmark = pytest.mark.usefixtures("delivery")


class RunNow:
    def launch(self, run_id: str) -> None:
        consolidate_handler.lambda_handler({"run_id": run_id, "trigger": "api"}, FakeContext())


@pytest.mark.parametrize("spilled", [False, True], ids=["listed", "spilled-to-pages"])
def test_erasing_a_recipient_removes_their_logs_raw_events_and_state(
    reliability: Any, spilled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if spilled:  # states list one log key at most: r1's others are in pages of keys beside the state
        spill_past_one_key(monkeypatch)
    traffic()
    consolidate_handler.lambda_handler({"run_id": "run-1"}, FakeContext())
    assert bool(recipient_logs.page_keys("r1")) == spilled
    before = DeliveryStatsModel.get("d1", "stats").serialize()
    launcher.configure(RunNow())
    try:
        answer = api_handler.lambda_handler(
            http_event("DELETE", "/api/recipients/r1/tracking"), FakeContext()
        )
    finally:
        launcher.configure(None)
    assert answer["statusCode"] == 202
    body = json_body(answer)
    assert body["recipient_id"] == "r1" and body["status"] == "pending"
    logs = delivery_logs("d1")
    assert [log for log in logs if log.recipient_id == "r1"] == []
    assert [log for log in TrackingLogModel.scan() if log.recipient_id == "r1"] == []  # nor a feed copy
    assert [e for e in RawEventModel.scan() if e.recipient_id == "r1"] == []
    # (a recipient's states and pages of log keys are stored in the recipient's own partition)
    assert RecipientStateModel.count(stored_recipient_key("d1", "r1")[0]) == 0
    assert RecipientStateModel.count(stored_recipient_key("d1", "r2")[0]) == 1
    assert [log for log in logs if log.recipient_id == "r2"] != []
    after = DeliveryStatsModel.get("d1", "stats").serialize()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }
    [done] = list(ErasureModel.query("erasures"))
    assert done.status == "done" and done.logs_deleted == 4
    listed = api_handler.lambda_handler(http_event("GET", "/api/recipients/r1/tracking"), FakeContext())
    assert json_body(listed)["items"] == []
    reliability.record(
        "Security",
        "recipient erasure through the API (moto)" + (", log keys spilled to pages" if spilled else ""),
        1,
        "logs, raw events and state gone",
    )
