"""What a click or an open does: verify the token, record one raw event, answer.

Collaborators are arguments (``Targets``, ``EventSink``) so unit tests hand in fakes; the handler
passes the DynamoDB-backed ones from ``store.py``.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from functions.shared import ids
from functions.shared.errors import InvalidToken
from functions.shared.raw_events import RawEvent
from functions.shared.tokens import Signer
from functions.shared.urls import substitute_fields

PERSON_COOKIE = "mtpid"
PERSON_COOKIE_MAX_AGE = 365 * 24 * 3600
_MAX_USER_AGENT = 512


@dataclass(frozen=True)
class Hit:
    token: str
    kind: str  # click, open
    at: datetime
    user_agent: str | None
    source_ip: str | None
    person_cookie: str | None
    record: bool = True  # HEAD requests answer without recording


@dataclass(frozen=True)
class Target:
    url: str  # with {{ field }} placeholders
    gone: bool = False  # its delivery was deleted: the link answers a neutral page


@dataclass(frozen=True)
class Answer:
    status: int  # 302, 200 (pixel), 404, or 410 (a deleted delivery's link: a neutral page)
    location: str | None = None
    set_person: str | None = None  # a new person id to set as cookie


class Targets(Protocol):
    def target(self, delivery_id: str, url_id: str) -> Target | None: ...


class EventSink(Protocol):
    def record(self, event: RawEvent) -> None: ...


class CachedTargets:
    """Tracked-URL targets cached per container: a warm click makes no read."""

    def __init__(self, source: Targets, ttl_seconds: float = 300.0, max_entries: int = 10_000) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[tuple[str, str], tuple[float, Target | None]] = {}

    def target(self, delivery_id: str, url_id: str) -> Target | None:
        key = (delivery_id, url_id)
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._source.target(delivery_id, url_id)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (now + self._ttl, found)
        return found


def truncate_ip(address: str | None) -> str | None:
    """Keep the network, not the person: IPv4 to /24, IPv6 to /48."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    # Mask the host bits off the address itself: no network object per click.
    host_bits = 8 if parsed.version == 4 else 80
    return str(type(parsed)(int(parsed) >> host_bits << host_bits))


def _valid_person(cookie: str | None) -> str | None:
    if cookie and 8 <= len(cookie) <= 64 and cookie.isalnum():
        return cookie
    return None


def track(hit: Hit, signer: Signer, targets: Targets, sink: EventSink) -> Answer:
    """Answer one hit on /r or /o; a token that is not ours, or names nothing, is a 404."""
    try:
        claims = signer.verify(hit.token)
    except InvalidToken:
        return Answer(404)
    expected_kind = "c" if hit.kind == "click" else "o"
    if claims.kind != expected_kind:
        return Answer(404)
    location = None
    person = _valid_person(hit.person_cookie)
    new_person = None
    if hit.kind == "click":
        assert claims.url_id is not None  # click tokens always name a URL (tokens._claims)
        target = targets.target(claims.delivery_id, claims.url_id)
        if target is None:
            return Answer(404)
        if target.gone:
            return Answer(410)  # nothing recorded: a deleted delivery counts nothing
        location = substitute_fields(target.url, claims.fields)
        if person is None:
            person = new_person = ids.person_id()
    if hit.record:
        sink.record(
            RawEvent(
                event_id=ids.event_id(),
                kind=hit.kind,
                delivery_id=claims.delivery_id,
                recipient_id=claims.recipient_id,
                url_id=claims.url_id,
                at=hit.at,
                user_agent=(hit.user_agent or "")[:_MAX_USER_AGENT] or None,
                person_id=person,
                ip=truncate_ip(hit.source_ip),
                proof=claims.proof,
            )
        )
    return Answer(302 if location else 200, location=location, set_person=new_person)
