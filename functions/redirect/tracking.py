"""What a click or an open does: verify the token, record one raw event, answer.

Collaborators are arguments (``Targets``, ``EventSink``) so unit tests hand in fakes; the handler
passes the DynamoDB-backed ones from ``store.py``.

A click also (re)sets the person cookie: ``mtpid=<person_id>.<latest-click token>``. The person id
recognises the browser across clicks; the latest-click token (signed claims of kind "l": delivery,
recipient, tracked URL, proof flag and the click's time) lets the web-tracking tag (``web.py``)
attribute a visit to that click without a read. Cookies set before the tag carry the person id alone.
"""

from __future__ import annotations

import socket
import time
from datetime import datetime
from typing import Any, Protocol

from functions.redirect.detection import HONEYPOT_REASON, Detection, default_detection, judge
from functions.shared import ids
from functions.shared.errors import InvalidToken
from functions.shared.machine import SCANNER
from functions.shared.raw_events import RawEvent
from functions.shared.records import Record
from functions.shared.tokens import LinkClaims, Signer
from functions.shared.urls import substitute_fields

PERSON_COOKIE = "mtpid"
PERSON_COOKIE_MAX_AGE = 365 * 24 * 3600
MAX_USER_AGENT = 512  # detection.MAX_CLASSIFIED_USER_AGENT
_IPV6_HOST_BYTES = bytes(10)  # an IPv6 address keeps its first 48 bits


class Hit(Record):
    __slots__ = ("at", "kind", "person_cookie", "record", "source_ip", "token", "user_agent")

    def __init__(
        self,
        token: str,
        kind: str,  # click, open
        at: datetime,
        user_agent: str | None,
        source_ip: str | None,
        person_cookie: str | None,
        record: bool = True,  # HEAD requests answer without recording
    ) -> None:
        self.token = token
        self.kind = kind
        self.at = at
        self.user_agent = user_agent
        self.source_ip = source_ip
        self.person_cookie = person_cookie
        self.record = record


class Target(Record):
    __slots__ = ("gone", "url")

    def __init__(
        self,
        url: str,  # with {{ field }} placeholders
        gone: bool = False,  # its delivery was deleted: the link answers a neutral page
    ) -> None:
        self.url = url
        self.gone = gone


class Answer(Record):
    __slots__ = ("location", "person_cookie", "status")

    def __init__(
        self,
        status: int,  # 302, 200 (pixel), 404, 410 (a deleted delivery's link: a neutral page), or
        # HONEYPOT (the honeypot link: a neutral 200 page)
        location: str | None = None,
        person_cookie: str | None = None,  # the person cookie's new value: "<person_id>.<latest click>"
    ) -> None:
        self.status = status
        self.location = location
        self.person_cookie = person_cookie


HONEYPOT = 299  # Answer.status of a honeypot hit; the handler answers 200 with a neutral page


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
    """Keep the network, not the person: IPv4 to /24, IPv6 to /48.

    ``socket.inet_pton`` validates and packs the address (``ipaddress`` would cost import time and
    microseconds per click for the same answer).
    """
    if not address:
        return None
    try:
        if ":" in address:
            packed = socket.inet_pton(socket.AF_INET6, address)
            return socket.inet_ntop(socket.AF_INET6, packed[:6] + _IPV6_HOST_BYTES)
        packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError):
        return None
    return socket.inet_ntop(socket.AF_INET, packed[:3] + b"\0")


def _valid_person(person: str | None) -> str | None:
    if person and 8 <= len(person) <= 64 and person.isalnum():
        return person
    return None


def read_person_cookie(cookie: str | None) -> tuple[str | None, str | None]:
    """``(person id, latest-click token)`` of a person cookie; either may be None.

    The person id is the part before the first "." (a cookie set before web tracking holds it alone).
    """
    if not cookie:
        return None, None
    person, _, latest = cookie.partition(".")
    return _valid_person(person), latest or None


def latest_click_token(signer: Signer, claims: LinkClaims, at: datetime) -> str:
    """The signed record of this click that the person cookie carries for the web-tracking tag."""
    fields = {"t": str(int(at.timestamp()))}
    return signer.sign(
        LinkClaims("l", claims.delivery_id, claims.recipient_id, claims.url_id, claims.proof, fields)
    )


def track(
    hit: Hit, signer: Signer, targets: Targets, sink: EventSink, detection: Detection | None = None
) -> Answer:
    """Answer one hit on /r or /o; a token that is not ours, or names nothing, is a 404.

    Every recorded hit carries the verdict of ``detection`` (the built-in one when None) on its full
    client address and User-Agent, and its client key; the address itself is kept truncated only.
    """
    try:
        claims = signer.verify(hit.token)
    except InvalidToken:
        return Answer(404)
    detection = detection or default_detection()
    if hit.kind == "click" and claims.kind == "h":
        return _honeypot(hit, claims, signer, sink, detection)
    expected_kind = "c" if hit.kind == "click" else "o"
    if claims.kind != expected_kind:
        return Answer(404)
    location = None
    person, _ = read_person_cookie(hit.person_cookie)
    cookie = None
    if hit.kind == "click":
        assert claims.url_id is not None  # click tokens always name a URL (tokens._claims)
        target = targets.target(claims.delivery_id, claims.url_id)
        if target is None:
            return Answer(404)
        if target.gone:
            return Answer(410)  # nothing recorded: a deleted delivery counts nothing
        location = substitute_fields(target.url, claims.fields)
        if person is None:
            person = ids.person_id()
        if hit.record:  # a HEAD is no click: it must not become the latest one
            cookie = f"{person}.{latest_click_token(signer, claims, hit.at)}"
    if hit.record:
        verdict = judge(
            detection,
            signer,
            hit.kind,
            claims.delivery_id,
            claims.recipient_id,
            hit.source_ip,
            hit.user_agent,
        )
        sink.record(
            RawEvent(
                ids.event_id(),
                hit.kind,
                claims.delivery_id,
                claims.recipient_id,
                claims.url_id,
                hit.at,
                hit.user_agent[:MAX_USER_AGENT] if hit.user_agent else None,
                person,
                truncate_ip(hit.source_ip),
                claims.proof,
                machine=verdict.machine,
                machine_reason=verdict.machine_reason,
                client_key=verdict.client_key,
            )
        )
    return Answer(302 if location else 200, location=location, person_cookie=cookie)


def _honeypot(hit: Hit, claims: LinkClaims, signer: Signer, sink: EventSink, detection: Detection) -> Answer:
    """A hit on a message's honeypot link: a scanner's, recorded with the window in force so the
    workflow marks that client's other hits on the message around it. No redirect, no cookie. With the
    honeypot switched off, the link records nothing."""
    if hit.record and detection.honeypot:
        verdict = judge(
            detection,
            signer,
            hit.kind,
            claims.delivery_id,
            claims.recipient_id,
            hit.source_ip,
            hit.user_agent,
        )
        sink.record(
            message_event(
                hit,
                claims,
                verdict.client_key,
                machine=SCANNER,
                machine_reason=HONEYPOT_REASON,
                honeypot=True,
                burst_seconds=detection.burst_seconds,
            )
        )
    return Answer(HONEYPOT)


def message_event(hit: Hit, claims: LinkClaims, client_key: str | None, **details: Any) -> RawEvent:
    """A click on one of the message's own links rather than a tracked URL (the honeypot, one-click
    unsubscribe): no URL and no person (no cookie is read or set), the ``details`` of its kind."""
    return RawEvent(
        ids.event_id(),
        "click",
        claims.delivery_id,
        claims.recipient_id,
        None,
        hit.at,
        hit.user_agent[:MAX_USER_AGENT] if hit.user_agent else None,
        None,
        truncate_ip(hit.source_ip),
        claims.proof,
        client_key=client_key,
        **details,
    )
