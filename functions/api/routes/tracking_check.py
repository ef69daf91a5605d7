"""Routes: test a delivery's tracking end to end (mounted at ``/api/deliveries``)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, Field

from functions.api import audit, deliveries, tracking_check
from functions.api.auth import current_actor

router = Router()


class LinkCheckOut(BaseModel):
    url_id: str | None = Field(description="The tracked URL, or null for the open pixel")
    passed: bool
    detail: str = Field(description="Where the hit landed and where its event was found, or what failed")


class TrackingTestOut(BaseModel):
    passed: bool = Field(description="True when every tracked link and the pixel passed")
    recipient_id: str = Field(description="The test recipient the proof message was rendered for")
    links: list[LinkCheckOut]


@router.post(
    "/<delivery_id>/tracking/test",
    summary="Test the delivery's tracking: follow every link and the pixel of a proof, run the workflow",
)
def test_tracking(delivery_id: str) -> TrackingTestOut:
    stack = tracking_check.InProcessStack(deliveries.tracking_base_url(router.current_event.headers))
    result = tracking_check.check_tracking(
        delivery_id, stack, run_timeout_seconds=tracking_check.API_RUN_TIMEOUT_SECONDS
    )
    # A change: the proof's hits are recorded and a run of the tracking workflow may have started.
    audit.record(
        "tracking_test_requested",
        f"delivery/{delivery_id}",
        actor=current_actor(),
        after={"recipient_id": result.recipient_id, "passed": result.passed},
    )
    return TrackingTestOut(
        passed=result.passed,
        recipient_id=result.recipient_id,
        links=[
            LinkCheckOut(url_id=link.url_id, passed=link.passed, detail=link.detail) for link in result.links
        ],
    )
