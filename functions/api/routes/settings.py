"""Routes: account-wide settings (mounted at ``/api/settings``)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from functions.api import machine_detection, url_options
from functions.api.auth import current_actor
from functions.api.delivery_repository import repository
from functions.api.schemas import (
    MachineDetectionIn,
    MachineDetectionOut,
    UrlTrackingRulesIn,
    UrlTrackingRulesOut,
)

router = Router()


@router.get("/url-tracking", summary="URL patterns never tracked and always tracked")
def url_tracking() -> UrlTrackingRulesOut:
    return UrlTrackingRulesOut.of(url_options.rules(repo=repository()))


@router.put(
    "/url-tracking",
    summary="Replace the URL patterns never tracked and always tracked (applied at registration)",
)
def replace_url_tracking(request: Annotated[UrlTrackingRulesIn, Body()]) -> UrlTrackingRulesOut:
    rules = url_options.replace_rules(request.to_rules(), actor=current_actor(), repo=repository())
    return UrlTrackingRulesOut.of(rules)


@router.get(
    "/machine-detection",
    summary="Machine detection: the built-in lists (read-only, with sources) and the operator's settings",
)
def get_machine_detection() -> MachineDetectionOut:
    return MachineDetectionOut.of(machine_detection.current(repo=repository()))


@router.put(
    "/machine-detection",
    summary="Replace the operator's machine-detection settings (applied to hits recorded after it); 422 "
    "for a bad CIDR, an unknown kind, an absurd window or too many entries",
)
def replace_machine_detection(request: Annotated[MachineDetectionIn, Body()]) -> MachineDetectionOut:
    settings = machine_detection.replace(request.to_document(), actor=current_actor(), repo=repository())
    return MachineDetectionOut.of(settings)
