"""The web-tracking tag: ``GET /w/{site_token}`` on a tracked site's pages records a page view or a
transaction, attributed to the visitor's latest click.

The site token (signed claims of kind "w") names a site; the site's item (tracked-urls table,
``delivery_id = "#sites"``) lists the domains its tag may run on. The visit is attributed through the
person cookie the click set (``tracking.read_person_cookie``): its latest-click token names the
delivery, recipient and tracked URL, so recording a visit needs no read beyond the (cached) site.
A visit is recorded only when the site exists, the page is on one of its domains (its URL read as a
browser reads it: ``browser_url``) and the latest click is at most the attribution window old; otherwise the tag answers the same pixel and records
nothing, so a page cannot tell which of its visitors are tracked.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Protocol

from functions.redirect import browser_url
from functions.redirect.detection import Detection, default_detection, judge
from functions.redirect.tracking import MAX_USER_AGENT, EventSink, read_person_cookie, truncate_ip
from functions.shared import ids
from functions.shared.currencies import ISO_4217
from functions.shared.errors import InvalidToken
from functions.shared.raw_events import RawEvent
from functions.shared.records import Record
from functions.shared.tokens import LinkClaims, Signer

SITES_PK = "#sites"  # models.SITES_PK (PynamoDB stays off the redirect's import path)
MAX_PAGE_URL = 1024
KINDS = ("page", "transaction")
# Digits, at most 2 decimals: no sign, exponent, NaN or Infinity, and few enough digits to add up exactly.
_AMOUNT = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,2}))?")
DEFAULT_MAX_AMOUNT = 10_000_000  # settings.max_transaction_amount's default (MSGTRACK_MAX_TRANSACTION_AMOUNT)
_CLOCK_SKEW_SECONDS = 300  # a latest click "from the future" by more than this is not believed


class Site(Record):
    __slots__ = ("domains", "site_id")

    def __init__(self, site_id: str, domains: tuple[str, ...]) -> None:
        self.site_id = site_id
        self.domains = domains  # lower-case host names; their subdomains match too

    def allows(self, host: str | None) -> bool:
        """Whether ``host`` (as ``browser_url.host`` reads it) is one of the domains or under one."""
        if not host:
            return False
        host = host[:-1] if host.endswith(".") else host  # "shop.example." is shop.example in DNS
        return any(host == domain or host.endswith("." + domain) for domain in self.domains)


class Sites(Protocol):
    def site(self, site_id: str) -> Site | None: ...


class CachedSites:
    """Sites cached per container, briefly: a deleted site's tag stops recording within a minute."""

    def __init__(self, source: Sites, ttl_seconds: float = 60.0, max_entries: int = 1_000) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[float, Site | None]] = {}

    def site(self, site_id: str) -> Site | None:
        now = time.monotonic()
        cached = self._entries.get(site_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._source.site(site_id)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[site_id] = (now + self._ttl, found)
        return found


class TagHit(Record):
    __slots__ = (
        "at",
        "origin",
        "params",
        "person_cookie",
        "record",
        "referer",
        "source_ip",
        "token",
        "user_agent",
    )

    def __init__(
        self,
        token: str,
        params: dict[str, str],  # the query string: type, url, amount, currency
        referer: str | None,
        origin: str | None,
        at: datetime,
        user_agent: str | None,
        source_ip: str | None,
        person_cookie: str | None,
        record: bool = True,  # HEAD requests answer without recording
    ) -> None:
        self.token = token
        self.params = params
        self.referer = referer
        self.origin = origin
        self.at = at
        self.user_agent = user_agent
        self.source_ip = source_ip
        self.person_cookie = person_cookie
        self.record = record


class TagAnswer(Record):
    __slots__ = ("message", "recorded", "status")

    def __init__(self, status: int, message: str | None = None, recorded: bool = False) -> None:
        self.status = status  # 200 (pixel or script), 400 (message says why), 404 (no such site)
        self.message = message
        self.recorded = recorded  # a page view or transaction was recorded


def _site_id(token: str, signer: Signer) -> str | None:
    """The site id a tag token names, or None for a token that is not ours."""
    try:
        claims = signer.verify(token)
    except InvalidToken:
        return None
    if claims.kind != "w" or not claims.delivery_id:
        return None
    return claims.delivery_id


def site_of(token: str, signer: Signer, sites: Sites) -> Site | None:
    """The site a tag token names, or None for a token that is not ours or a deleted site."""
    site_id = _site_id(token, signer)
    return sites.site(site_id) if site_id else None


def _transaction(params: dict[str, str], max_amount: int) -> tuple[str, str] | str:
    """``(amount, currency)`` of a transaction, or the message saying what is wrong with them."""
    amount = params.get("amount", "").strip()
    currency = params.get("currency", "").strip().upper()
    parts = _AMOUNT.fullmatch(amount)
    if not parts:
        return "amount must be a decimal number of at least 0 with at most 2 decimals, e.g. 12.50"
    units, cents = int(parts[1]), int((parts[2] or "").ljust(2, "0"))
    if units * 100 + cents > max_amount * 100:
        return f"amount must be at most {max_amount} (the configured maximum per transaction)"
    if currency not in ISO_4217:
        return "currency must be an ISO 4217 currency code, e.g. EUR"
    return amount, currency


def _latest_click(
    cookie: str | None, signer: Signer, at: datetime, window_seconds: int
) -> tuple[str, LinkClaims] | None:
    """``(person id, latest-click claims)`` from the person cookie, or None when it names no click
    within the window."""
    person, latest = read_person_cookie(cookie)
    if person is None or latest is None:
        return None
    try:
        claims = signer.verify(latest)
        clicked = int(claims.fields.get("t", ""))
    except (InvalidToken, ValueError):
        return None
    age = at.timestamp() - clicked
    if claims.kind != "l" or not claims.url_id or not -_CLOCK_SKEW_SECONDS <= age <= window_seconds:
        return None
    return person, claims


def tag(
    hit: TagHit,
    signer: Signer,
    sites: Sites,
    sink: EventSink,
    window_days: int,
    max_amount: int = DEFAULT_MAX_AMOUNT,
    detection: Detection | None = None,
) -> TagAnswer:
    """Answer one hit on the tag; record a page view or transaction when the visit is attributable,
    with the verdict of ``detection`` (the built-in one when None) on who made it."""
    site_id = _site_id(hit.token, signer)  # a token that is not ours is a 404 whatever else is wrong
    if site_id is None:
        return TagAnswer(404)
    kind = hit.params.get("type") or "page"  # a bare <img> pixel counts the page it is on
    if kind not in KINDS:
        return TagAnswer(400, "type must be page or transaction")
    amount = currency = None
    if kind == "transaction":
        checked = _transaction(hit.params, max_amount)
        if isinstance(checked, str):
            return TagAnswer(400, checked)
        amount, currency = checked
    site = sites.site(site_id)
    if site is None:
        return TagAnswer(404)
    if not hit.record:
        return TagAnswer(200)
    page = hit.params.get("url") or hit.referer or hit.origin
    if not page or not site.allows(browser_url.host(page)):
        return TagAnswer(200)
    attributed = _latest_click(hit.person_cookie, signer, hit.at, window_days * 86_400)
    if attributed is None:
        return TagAnswer(200)
    person, click = attributed
    verdict = judge(
        detection or default_detection(),
        signer,
        kind,
        click.delivery_id,
        click.recipient_id,
        hit.source_ip,
        hit.user_agent,
    )
    sink.record(
        RawEvent(
            ids.event_id(),
            kind,
            click.delivery_id,
            click.recipient_id,
            None,
            hit.at,
            hit.user_agent[:MAX_USER_AGENT] if hit.user_agent else None,
            person,
            truncate_ip(hit.source_ip),
            click.proof,
            site_id=site.site_id,
            via_url_id=click.url_id,
            page_url=page[:MAX_PAGE_URL],
            amount=amount,
            currency=currency,
            machine=verdict.machine,
            machine_reason=verdict.machine_reason,
            client_key=verdict.client_key,
        )
    )
    return TagAnswer(200, recorded=True)


# The script variant: loads the pixel with the page's URL, and offers window.msgtrack.transaction().
# Its own address gives the pixel's (``/tag.js`` removed), so the script is the same for every site.
SCRIPT = (
    "(function(){"
    'var s=document.currentScript,b=s&&s.src.replace(/\\/tag\\.js([?#].*)?$/,"");'
    "if(!b)return;"
    "function send(q){var i=new Image(1,1);"
    'i.src=b+"?"+q+"&url="+encodeURIComponent(location.href)}'
    "var m=window.msgtrack=window.msgtrack||{};"
    "m.transaction=function(amount,currency){"
    'send("type=transaction&amount="+encodeURIComponent(amount)+"&currency="+encodeURIComponent(currency))};'
    'send("type=page")'
    "})();\n"
)
