"""Machine-detection settings: the ``GET|PUT /api/settings/machine-detection`` document, validated.

What an operator may add to the built-in lists (``machine.py``) and how wide: every refusal is an
``InvalidMachineSettings`` (the API answers 422) naming each problem at once. Kept apart from
``machine.py``, which the redirect imports on its hot path: validation runs in the API only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from functions.shared.errors import MsgtrackError
from functions.shared.machine import (
    DEFAULT_BURST_SECONDS,
    MACHINE_KINDS,
    AgentRule,
    MachineSettings,
    RangeRule,
    builtin,
    parse_cidr,
)

MAX_RANGES = 500
MAX_USER_AGENTS = 200
MIN_PATTERN_LENGTH = 4
MAX_PATTERN_LENGTH = 200
MIN_PREFIX = {4: 8, 6: 16}  # anything wider is a continent, not a gateway
MIN_BURST_SECONDS = 1
MAX_BURST_SECONDS = 300  # a gateway follows a message's links within seconds; hours would sweep in people


class InvalidMachineSettings(MsgtrackError):
    """The machine-detection settings cannot be used as given (the API answers 422)."""

    code = "validation_error"


def builtin_view() -> dict[str, Any]:
    """The read-only ``builtin`` member of ``GET /api/settings/machine-detection``."""
    shipped = builtin()
    return {
        "ranges": [{"cidr": r.cidr, "kind": r.kind, "source": r.source} for r in shipped.ranges],
        "user_agents": [{"pattern": a.pattern, "kind": a.kind} for a in shipped.user_agents],
        "updated": shipped.updated,
    }


def settings_view(settings: MachineSettings) -> dict[str, Any]:
    """The whole ``GET`` answer for these settings."""
    return {
        "builtin": builtin_view(),
        "ranges": [{"cidr": r.cidr, "kind": r.kind} for r in settings.ranges],
        "user_agents": [{"pattern": a.pattern, "kind": a.kind} for a in settings.user_agents],
        "honeypot": settings.honeypot,
        "burst_seconds": settings.burst_seconds,
    }


# A pattern found in these would mark ordinary people as machines.
_PERSON_AGENTS = (
    "mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) chrome/131.0.0.0 "
    "safari/537.36 edg/131.0.0.0",
    "mozilla/5.0 (macintosh; intel mac os x 10_15_7) applewebkit/605.1.15 (khtml, like gecko) version/18.1 "
    "safari/605.1.15",
    "mozilla/5.0 (iphone; cpu iphone os 18_1 like mac os x) applewebkit/605.1.15 (khtml, like gecko) mobile/15e148",
    "mozilla/5.0 (linux; android 14; pixel 8) applewebkit/537.36 (khtml, like gecko) chrome/131.0.0.0 mobile "
    "safari/537.36",
    "mozilla/5.0 (x11; linux x86_64; rv:133.0) gecko/20100101 firefox/133.0",
    "microsoft office/16.0 (windows nt 10.0; microsoft outlook 16.0.18129; pro)",
    "mozilla/5.0 (windows nt 5.1; rv:11.0) gecko firefox/11.0 (via ggpht.com googleimageproxy)",
    "yahoomailproxy; https://help.yahoo.com/kb/yahoo-mail-proxy-sln28749.html",
)

_SETTINGS_FIELDS = {"builtin", "ranges", "user_agents", "honeypot", "burst_seconds"}


def validate_settings(document: Any) -> MachineSettings:
    """The settings a ``PUT`` body asks for, or ``InvalidMachineSettings`` naming every problem.

    ``builtin`` may be sent back as read from ``GET``; it is read-only and ignored. A field left out
    takes its default (no range, no pattern, honeypot on, 30 seconds).
    """
    if not isinstance(document, Mapping):
        raise InvalidMachineSettings("the settings must be a JSON object")
    problems = [
        f"unknown field {name!r}" for name in sorted(str(k) for k in set(document) - _SETTINGS_FIELDS)
    ]
    ranges = _validate_ranges(document.get("ranges", []), problems)
    user_agents = _validate_user_agents(document.get("user_agents", []), problems)
    honeypot = document.get("honeypot", True)
    if not isinstance(honeypot, bool):
        problems.append("honeypot must be true or false")
    burst_seconds = document.get("burst_seconds", DEFAULT_BURST_SECONDS)
    if isinstance(burst_seconds, bool) or not isinstance(burst_seconds, int):
        problems.append("burst_seconds must be a whole number of seconds")
    elif not MIN_BURST_SECONDS <= burst_seconds <= MAX_BURST_SECONDS:
        problems.append(f"burst_seconds must be between {MIN_BURST_SECONDS} and {MAX_BURST_SECONDS}")
    if problems:
        raise InvalidMachineSettings("; ".join(problems))
    return MachineSettings(tuple(ranges), tuple(user_agents), honeypot, burst_seconds)


def _entries(value: Any, name: str, bound: int, problems: list[str]) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        problems.append(f"{name} must be a list")
        return []
    if len(value) > bound:
        problems.append(f"{name} holds {len(value)} entries, at most {bound} are allowed")
        return []
    entries = []
    for index, entry in enumerate(value):
        if isinstance(entry, Mapping):
            entries.append(entry)
        else:
            problems.append(f"{name}[{index}] must be an object")
    return entries


def _kind(entry: Mapping[str, Any], where: str, problems: list[str]) -> str | None:
    kind = entry.get("kind")
    if kind not in MACHINE_KINDS:
        problems.append(f"{where}: unknown kind {kind!r} (one of {', '.join(MACHINE_KINDS)})")
        return None
    return str(kind)


def _validate_ranges(value: Any, problems: list[str]) -> list[RangeRule]:
    rules: list[RangeRule] = []
    seen: set[tuple[int, int]] = set()
    for index, entry in enumerate(_entries(value, "ranges", MAX_RANGES, problems)):
        where = f"ranges[{index}]"
        extra = set(entry) - {"cidr", "kind"}
        if extra:
            problems.append(f"{where}: unknown field {sorted(str(k) for k in extra)[0]!r}")
        kind = _kind(entry, where, problems)
        cidr = entry.get("cidr")
        try:
            family, first, last = parse_cidr(cidr)
        except ValueError as error:
            problems.append(f"{where}: {error}")
            continue
        prefix = (32 if family == 4 else 128) - (last - first + 1).bit_length() + 1
        if prefix < MIN_PREFIX[family]:
            problems.append(f"{where}: {cidr} is wider than /{MIN_PREFIX[family]}")
            continue
        if (first, last) in seen:
            problems.append(f"{where}: {cidr} is listed twice")
            continue
        seen.add((first, last))
        if kind is not None:
            rules.append(RangeRule(str(cidr).strip(), kind))
    return rules


def _validate_user_agents(value: Any, problems: list[str]) -> list[AgentRule]:
    rules: list[AgentRule] = []
    seen: set[str] = set()
    for index, entry in enumerate(_entries(value, "user_agents", MAX_USER_AGENTS, problems)):
        where = f"user_agents[{index}]"
        extra = set(entry) - {"pattern", "kind"}
        if extra:
            problems.append(f"{where}: unknown field {sorted(str(k) for k in extra)[0]!r}")
        kind = _kind(entry, where, problems)
        pattern = entry.get("pattern")
        if not isinstance(pattern, str) or not pattern.strip():
            problems.append(f"{where}: pattern must be a non-empty string")
            continue
        pattern = pattern.strip()
        lowered = pattern.lower()
        if not MIN_PATTERN_LENGTH <= len(pattern) <= MAX_PATTERN_LENGTH:
            problems.append(
                f"{where}: pattern must be {MIN_PATTERN_LENGTH} to {MAX_PATTERN_LENGTH} characters long"
            )
        elif not pattern.isprintable():
            problems.append(f"{where}: pattern must be printable text")
        elif any(lowered in person for person in _PERSON_AGENTS):
            problems.append(f"{where}: pattern {pattern!r} is found in ordinary browsers' User-Agents")
        elif lowered in seen:
            problems.append(f"{where}: pattern {pattern!r} is listed twice")
        elif kind is not None:
            seen.add(lowered)
            rules.append(AgentRule(pattern, kind))
    return rules


def settings_from_item(document: Mapping[str, Any] | None) -> MachineSettings:
    """Settings as stored (already validated when written); defaults when none were ever set."""
    if not document:
        return MachineSettings()
    return validate_settings({k: v for k, v in document.items() if k in _SETTINGS_FIELDS})
