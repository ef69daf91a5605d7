"""Machine detection as the redirect applies it: the operator's settings, read once a minute at most,
turned into one ``machine.Detector`` per change, and the verdict on each recorded hit.

The settings item (deliveries table, ``#settings`` / ``machine-detection``) holds the validated
document as JSON (``MachineDetectionSettingsModel``); ``store.DynamoMachineSettings`` reads it.
A change applies to hits recorded after the cache expires (``ttl_seconds``, 60 s by default).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from functions.redirect.observability import logger
from functions.shared import machine
from functions.shared.records import Record
from functions.shared.tokens import Signer

CLIENT_KEY_PURPOSE = "msgtrack client key"  # the label the client-key secret is derived under
HONEYPOT_REASON = "honeypot link"
# The User-Agent is classified on its first characters, as many as a raw event keeps: the detector caches
# verdicts by User-Agent, and a client sending ever new 10 KB ones must not fill the cache with them.
MAX_CLASSIFIED_USER_AGENT = 512  # tracking.MAX_USER_AGENT


class Detection(Record):
    """What the redirect needs of the settings in force: the detector, the honeypot switch, the window."""

    __slots__ = ("burst_seconds", "detector", "honeypot")

    def __init__(self, detector: machine.Detector, honeypot: bool, burst_seconds: int) -> None:
        self.detector = detector
        self.honeypot = honeypot
        self.burst_seconds = burst_seconds


def default_detection() -> Detection:
    """The built-in lists, the honeypot on, the default window: what applies with no settings stored."""
    return Detection(machine.default_detector(), True, machine.DEFAULT_BURST_SECONDS)


class MachineSettingsSource(Protocol):
    def machine_settings(self) -> str | None:
        """The stored settings document (JSON), or None when none was ever stored."""
        ...


def detection_of(document: str | None) -> Detection:
    """The detection a stored settings document asks for. The document was validated when written; one
    that cannot be read anyway (a hand-edited item) gives the built-in detection, logged, never a failed
    hit."""
    if not document:
        return default_detection()
    try:
        fields: dict[str, Any] = json.loads(document)
        settings = machine.MachineSettings(
            ranges=tuple(machine.RangeRule(r["cidr"], r["kind"]) for r in fields.get("ranges", ())),
            user_agents=tuple(
                machine.AgentRule(a["pattern"], a["kind"]) for a in fields.get("user_agents", ())
            ),
            honeypot=bool(fields.get("honeypot", True)),
            burst_seconds=int(fields.get("burst_seconds", machine.DEFAULT_BURST_SECONDS)),
        )
        return Detection(machine.detector(settings), settings.honeypot, settings.burst_seconds)
    except (ValueError, TypeError, KeyError, AttributeError):
        logger.exception("machine-detection settings unreadable: the built-in detection applies")
        return default_detection()


class CachedDetection:
    """The detection in force, per container: the settings item is read at most once per ``ttl_seconds``
    and the detector rebuilt only when the document changed."""

    def __init__(
        self,
        source: MachineSettingsSource,
        ttl_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._clock = clock
        self._ttl = ttl_seconds
        self._expires = 0.0
        self._document: str | None = None
        self._detection = default_detection()

    def current(self) -> Detection:
        now = self._clock()
        if now < self._expires:
            return self._detection
        try:
            document = self._source.machine_settings()
        except Exception:
            # A failed read must not fail the hit: keep what was in force, retry after the TTL.
            logger.exception("machine-detection settings not read: the previous ones stay in force")
            self._expires = now + self._ttl
            return self._detection
        if document != self._document:
            self._detection = detection_of(document)
            self._document = document
        self._expires = now + self._ttl
        return self._detection


class Judgement(Record):
    """What a recorded hit carries of machine detection (``RawEvent`` fields of the same names)."""

    __slots__ = ("client_key", "machine", "machine_reason")

    def __init__(self, machine: str | None, machine_reason: str | None, client_key: str | None) -> None:
        self.machine = machine
        self.machine_reason = machine_reason
        self.client_key = client_key


def judge(
    detection: Detection,
    signer: Signer,
    kind: str,
    delivery_id: str,
    recipient_id: str,
    address: str | None,
    user_agent: str | None,
) -> Judgement:
    """The verdict on one hit and its client key, from the full client address, which goes no further.

    The client key's secret is derived from the current signing key: after a rotation one address on
    one message gets another key, so only a burst spanning the rotation moment is not linked.
    """
    agent = user_agent[:MAX_CLASSIFIED_USER_AGENT] if user_agent else user_agent
    found, reason = detection.detector.classify(kind, address, agent)
    key = machine.client_key(signer.derived_key(CLIENT_KEY_PURPOSE), f"{delivery_id}#{recipient_id}", address)
    return Judgement(found, reason, key)
