"""Machine-detection settings (``GET|PUT /api/settings/machine-detection``): read, validate, store, audit.

The operator's ranges, User-Agent patterns, honeypot switch and burst window are validated by
``machine_settings.validate_settings`` (``InvalidMachineSettings``: 422) and stored as one JSON document
in the deliveries table's settings partition, which the redirect reads (``redirect/detection.py``) with
a one-minute cache: a change applies to hits recorded after it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from functions.api import audit
from functions.api.delivery_repository import DeliveryRepository, repository
from functions.shared import timeutil
from functions.shared.machine import MachineSettings
from functions.shared.machine_settings import settings_from_item, validate_settings

TARGET = "settings/machine-detection"


def stored_document(settings: MachineSettings) -> dict[str, Any]:
    """The operator's part of the settings, as stored and audited (the built-in lists are not)."""
    return {
        "ranges": [{"cidr": r.cidr, "kind": r.kind} for r in settings.ranges],
        "user_agents": [{"pattern": a.pattern, "kind": a.kind} for a in settings.user_agents],
        "honeypot": settings.honeypot,
        "burst_seconds": settings.burst_seconds,
    }


def current(repo: DeliveryRepository | None = None) -> MachineSettings:
    """The settings in force (the defaults when none were ever stored)."""
    document = (repo if repo is not None else repository()).machine_settings_document()
    return settings_from_item(json.loads(document) if document else None)


def replace(
    document: Mapping[str, Any],
    *,
    actor: str,
    repo: DeliveryRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> MachineSettings:
    """Validate and store new settings (``InvalidMachineSettings`` names every problem); audited."""
    new = validate_settings(document)
    repo = repo if repo is not None else repository()
    moment = now or timeutil.now()
    before = current(repo)
    repo.save_machine_settings_document(json.dumps(stored_document(new)), timeutil.iso(moment))
    audit.record(
        "settings_changed",
        TARGET,
        actor=actor,
        before=stored_document(before),
        after=stored_document(new),
        trail=trail,
        now=moment,
    )
    return new
