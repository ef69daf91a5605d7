"""Demo data for the local stack, made through its HTTP interface as an outside user would.

Registers a newsletter delivery and a short follow-up, renders messages for 300 recipients, reports a
few failures, then plays the part of the audience: mail clients load the open pixel, browsers follow
tracked links (one ``requests.Session`` per person, so the person cookie persists), a few messages are
forwarded, a few people opt out, and a proof is clicked. Some who click through to the shop browse it
and buy, which the shop's web-tracking tag reports (attributed through the person cookie). Finally the
tracking workflow is run once, so the dashboard has something to show. A fixed seed makes every run of
the demo alike.

The newsletter went out two days ago: each reader reads at a moment drawn from a decaying distribution,
so opens and clicks thin out over the days. The redirect function stamps a hit with the moment it
arrives, so hits of the past cannot come over HTTP: given ``past`` (``msgtrack serve --demo`` passes
``PastHits``, which runs in the stack's process), those are recorded through the redirect function's
own logic (token check, target lookup, raw-event sink, web-tracking attribution) with their moment of
the past, before the workflow's first run, which reads every raw event recorded before it started.
Hits of the last hour, and all of them without ``past``, are played over HTTP.

Machines read too (``plan_machines``, drawn from their own seed so the people stay the same): Apple Mail
Privacy Protection prefetches the pixel at delivery from Apple's network with the User-Agent
``Mozilla/5.0``; a security gateway in front of a company's mailboxes follows every link of its
messages, the honeypot and the opt-out included, within seconds of delivery from one Microsoft address;
a script polls a link with ``python-requests``. Each visit has a client address (people get one from a
documentation range): ``PastHits`` hands it to the redirect's logic directly; over HTTP it goes as
``X-Forwarded-For``, which counts only on a stack started with ``--trust-forwarded-for``.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

SEED = 2026
RECIPIENTS = 300
RENDER_BATCH = 100
FAILED_MESSAGES = 6
OPEN_RATE = 0.55
CLICK_RATE_AFTER_OPEN = 0.26  # with image-blocking readers and forwards: about 20% of recipients click
CLICK_RATE_WITHOUT_OPEN = 0.06
FORWARD_RATE = 0.03
OPT_OUT_RATE = 0.02
MIRROR_RATE = 0.04
REOPEN_RATE = 0.30
BROWSE_RATE = 0.6  # of clicks that land on the shop, those that go on to view more pages
BUY_RATE = 0.15  # of those, those that buy
SHOP_DOMAIN = "northwind-outfitters.example"
SHOP_PAGES = ("/cart", "/collections/winter-2026", "/p/ridgeline-down-jacket", "/checkout")
NEWSLETTER_SENT_DAYS_AGO = 2  # at NEWSLETTER_SENT_HOUR UTC: each later day counts fewer readers
NEWSLETTER_SENT_HOUR = 8
FOLLOW_UP_SENT_HOURS_AGO = 4
READ_MEAN_HOURS = 15.0  # readers open at exponentially decaying rates after sending
FORWARD_MEAN_HOURS = 10.0  # a forward is read this long after the message, on average
LIVE_MINUTES = 60  # hits of the last hour come over HTTP, at the moment they are played
RUN_TIMEOUT_SECONDS = 60.0
HTTP_TIMEOUT_SECONDS = 30.0
WORKERS = 4  # people reading at the same time
MPP_RATE = 0.15  # of delivered messages, those read in Apple Mail with Mail Privacy Protection on
GATEWAY_RATE = 0.06  # of delivered messages, those that reach a company behind a security gateway
BOT_HITS = 5  # a script polling one link
MPP_USER_AGENT = "Mozilla/5.0"  # all Apple's prefetching proxies send
GATEWAY_ADDRESS = "40.92.17.33"  # Microsoft Exchange Online Protection (40.92.0.0/15)
BOT_ADDRESS = "198.51.100.200"
BOT_USER_AGENT = "python-requests/2.31"

NEWSLETTER = Path(__file__).with_name("demo_newsletter.html")
LAST_CALL = Path(__file__).with_name("demo_last_call.html")

MAIL_CLIENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",  # Apple Mail
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
)
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 "
    "Edg/131.0.0.0",
)
FIRST_NAMES = (
    "Anna", "Lukas", "Sofia", "Jonas", "Emma", "Noah", "Lea", "Elias", "Marie", "Felix", "Clara", "Paul",
    "Julia", "Leon", "Hannah", "David", "Chloé", "Louis", "Inès", "Hugo", "Giulia", "Marco", "Sara", "Luca",
    "Olivia", "James", "Amelia", "Oliver", "Freya", "Jack",
)  # fmt: skip
LAST_NAMES = (
    "Gruber", "Huber", "Wagner", "Müller", "Schmid", "Bauer", "Martin", "Bernard", "Rossi", "Russo",
    "Smith", "Jones", "Taylor", "Brown", "Novak", "Horvat",
)  # fmt: skip
EMAIL_DOMAINS = (("gmail.com", 34), ("outlook.com", 18), ("gmx.at", 14), ("yahoo.com", 9), ("icloud.com", 12),
                 ("orange.fr", 7), ("web.de", 6))  # fmt: skip
PROOF_RECIPIENTS = (
    {
        "id": "proof-marketing",
        "email": "marketing@northwind-outfitters.example",
        "fields": {"first_name": "Team"},
    },
    {
        "id": "proof-editor",
        "email": "editor@northwind-outfitters.example",
        "fields": {"first_name": "Ingrid"},
    },
)
_CATEGORY_OF_DATA_TRACK = {"optout": "opt_out", "mirror": "mirror", "none": None}


class DemoError(RuntimeError):
    """The stack did not answer as the contract says it should."""


@dataclass(frozen=True)
class TrackedLink:
    category: str  # click, opt_out, mirror
    target: str  # where the link leads, as written in the delivery's HTML
    href: str  # the tracked /r/ link in the rendered message


@dataclass(frozen=True)
class TrackedMessage:
    recipient_id: str
    links: tuple[TrackedLink, ...]
    pixel: str | None
    honeypot: str | None = None  # the hidden honeypot link: only machines follow it

    def of(self, category: str) -> list[TrackedLink]:
        return [link for link in self.links if link.category == category]


@dataclass
class DemoResult:
    delivery_id: str
    follow_up_id: str
    sample_click: str
    sample_open: str
    run: dict[str, Any]
    statistics: dict[str, Any] = field(default_factory=dict)
    hits: int = 0


class _Tags(HTMLParser):
    """The anchors and images outside comments (so Outlook-only VML buttons are skipped), in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str]] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "a":
            self.anchors.append(values)
        elif tag == "img":
            self.images.append(values.get("src", ""))


def _tags(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


@dataclass(frozen=True)
class WrittenLink:
    """An anchor of the delivery's HTML as written: its target, and its category when tracked."""

    target: str
    category: str | None


def written_links(template: str) -> list[WrittenLink]:
    """Every anchor of the delivery's HTML, in order."""
    links = []
    for anchor in _tags(template).anchors:
        target = anchor.get("href", "")
        tracked = target.startswith(("http://", "https://"))
        links.append(
            WrittenLink(
                target,
                _CATEGORY_OF_DATA_TRACK.get(anchor.get("data-track", ""), "click") if tracked else None,
            )
        )
    return links


def tracked_message(recipient_id: str, written: list[WrittenLink], rendered: str) -> TrackedMessage:
    """Pair the rendered message's tracked links with the anchors of the delivery's HTML.

    The rendered HTML keeps every anchor in place (only tracked hrefs change and the data-track and
    data-label attributes go), so the n-th anchor of one is the n-th anchor of the other.
    """
    tags = _tags(rendered)
    honeypot = next((a["href"] for a in tags.anchors if _is_honeypot(a)), None)
    tags.anchors = [a for a in tags.anchors if not _is_honeypot(a)]
    if len(tags.anchors) != len(written):
        raise DemoError(
            f"rendered message for {recipient_id} has {len(tags.anchors)} anchors, the delivery {len(written)}"
        )
    links = tuple(
        TrackedLink(original.category or "click", original.target, anchor["href"])
        for original, anchor in zip(written, tags.anchors, strict=True)
        if "/r/" in anchor.get("href", "")
    )
    pixel = next((src for src in tags.images if "/o/" in src), None)
    return TrackedMessage(recipient_id, links, pixel, honeypot)


def _is_honeypot(anchor: dict[str, str]) -> bool:
    """The anchor rendering adds (``rendering._HONEYPOT_HTML``): hidden, unfocusable, tracked."""
    return (
        anchor.get("aria-hidden") == "true"
        and anchor.get("tabindex") == "-1"
        and "/r/" in anchor.get("href", "")
    )


# --- the audience ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """One person's hits, in order: ("open", pixel) with a mail client, ("click", href) with a browser,
    then ("tag", url) for the shop's web-tracking tag."""

    user_agent: str
    hits: tuple[tuple[str, str], ...]
    recipient_id: str = ""  # whose message it is
    forwarded: bool = False  # someone else reading a forwarded copy
    address: str = ""  # the client address; "" for a person's own (person_address)
    seconds_between_hits: float = 20.0  # a person reads between clicks; a machine does not


def person_address(recipient_id: str, forwarded: bool = False) -> str:
    """A reader's address (TEST-NET-2 or -3, RFC 5737), stable per reader and without drawing from the seed."""
    number = zlib.crc32(f"{recipient_id}{'#fwd' if forwarded else ''}".encode())
    network = ("203.0.113", "198.51.100")[number % 2]
    return f"{network}.{1 + number // 2 % 199}"  # .200 and above: the demo's bot


def _link_weight(link: TrackedLink) -> int:
    """How much more often readers follow a link than a footer link."""
    if "collections/winter-2026" in link.target or "/sale" in link.target:
        return 8
    if "/p/" in link.target:
        return 4
    if "journal." in link.target or "events." in link.target:
        return 3
    return 1


def _shop_visit(rng: random.Random, landed_on: str, shop_tag: str) -> list[tuple[str, str]]:
    """The shop's tag as a reader who clicked through browses: the landing page, more pages, a purchase."""
    if rng.random() >= BROWSE_RATE:
        return []
    origin = landed_on.split("/", 3)[:3]
    pages = [landed_on] + ["/".join(origin) + page for page in rng.sample(SHOP_PAGES[:3], rng.randint(1, 3))]
    hits = [("tag", f"{shop_tag}?{urlencode({'type': 'page', 'url': page})}") for page in pages]
    if rng.random() < BUY_RATE:
        amount = f"{rng.randint(20, 400)}.{rng.choice(('00', '50', '90', '95'))}"
        query = {"type": "transaction", "url": "/".join(origin) + SHOP_PAGES[3], "amount": amount}
        hits.append(("tag", f"{shop_tag}?{urlencode({**query, 'currency': 'EUR'})}"))
    return hits


def plan_audience(
    rng: random.Random,
    messages: list[TrackedMessage],
    *,
    always_engaged: frozenset[str] = frozenset(),
    shop_tag: str | None = None,
) -> list[Visit]:
    """Who opens, clicks, forwards and opts out; each Visit is one person (one browser or mail client)."""
    visits: list[Visit] = []
    for message in messages:
        engaged = message.recipient_id in always_engaged
        opened = message.pixel is not None and (engaged or rng.random() < OPEN_RATE)
        if opened and message.pixel:
            loads = 1 + (rng.random() < REOPEN_RATE) + (rng.random() < REOPEN_RATE / 3)
            visits.append(
                Visit(rng.choice(MAIL_CLIENTS), (("open", message.pixel),) * loads, message.recipient_id)
            )
        clicks = message.of("click")
        browser = rng.choice(BROWSERS)
        hits: list[tuple[str, str]] = []
        if message.of("mirror") and rng.random() < MIRROR_RATE:
            hits.append(("click", message.of("mirror")[0].href))
        click_rate = CLICK_RATE_AFTER_OPEN if opened else CLICK_RATE_WITHOUT_OPEN
        if clicks and (engaged or rng.random() < click_rate):
            weights = [_link_weight(link) for link in clicks]
            chosen = rng.choices(clicks, weights, k=rng.choice((1, 1, 2, 2, 3)))
            hits += [("click", link.href) for link in chosen]
            shop = [link.target for link in chosen if urlsplit(link.target).hostname == f"www.{SHOP_DOMAIN}"]
            if shop_tag and shop:
                hits += _shop_visit(rng, shop[-1], shop_tag)
        if clicks and rng.random() < FORWARD_RATE:  # forwarded: someone else clicks in their own browser
            forwarded = rng.choice([b for b in BROWSERS if b != browser])
            visits.append(
                Visit(forwarded, (("click", rng.choice(clicks).href),), message.recipient_id, forwarded=True)
            )
        if message.of("opt_out") and rng.random() < OPT_OUT_RATE:
            hits.append(("click", message.of("opt_out")[0].href))
        if hits:
            visits.append(Visit(browser, tuple(hits), message.recipient_id))
    return visits


@dataclass(frozen=True)
class TimedVisit:
    at: datetime
    visit: Visit


def _decaying_hours(rng: random.Random, window_hours: float) -> float:
    """Hours after sending at which a reader reads: exponential decay, within the window."""
    while True:
        hours = rng.expovariate(1 / READ_MEAN_HOURS)
        if hours < window_hours:
            return hours


def schedule(rng: random.Random, visits: list[Visit], sent_at: datetime, now: datetime) -> list[TimedVisit]:
    """When each visit happens: a reader's open, then a few minutes later their clicks; a forward later."""
    window_hours = (now - sent_at).total_seconds() / 3600
    read_at: dict[str, float] = {}
    timed = []
    for visit in visits:
        hours = read_at.setdefault(visit.recipient_id, _decaying_hours(rng, window_hours))
        if visit.forwarded:
            later = rng.expovariate(1 / FORWARD_MEAN_HOURS)
            hours += later if hours + later < window_hours else (window_hours - hours) * rng.random()
        elif visit.hits[0][0] != "open":
            hours = min(hours + rng.uniform(1, 15) / 60, window_hours)
        timed.append(TimedVisit(sent_at + timedelta(hours=hours), visit))
    return timed


def plan_machines(
    rng: random.Random, messages: list[TrackedMessage], sent_at: datetime, bot_hits: int = BOT_HITS
) -> list[TimedVisit]:
    """The machines among the readers, with their moments: MPP prefetches and gateway bursts within a
    minute of delivery, a script polling a link over the first hours."""
    timed: list[TimedVisit] = []
    for message in messages:
        draw = rng.random()
        delivered = sent_at + timedelta(seconds=rng.uniform(5, 60))
        if draw < MPP_RATE and message.pixel:
            address = f"17.58.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            visit = Visit(MPP_USER_AGENT, (("open", message.pixel),), message.recipient_id, address=address)
            timed.append(TimedVisit(delivered, visit))
        elif draw < MPP_RATE + GATEWAY_RATE:
            hits: list[tuple[str, str]] = [("click", link.href) for link in message.links]
            if message.honeypot:
                hits.insert(len(hits) // 2, ("honeypot", message.honeypot))
            if message.pixel:
                hits.insert(0, ("open", message.pixel))
            visit = Visit(
                BROWSERS[0],
                tuple(hits),
                message.recipient_id,
                address=GATEWAY_ADDRESS,
                seconds_between_hits=0.4,
            )
            timed.append(TimedVisit(delivered, visit))
    polled = messages[0].of("click")[0].href if messages and messages[0].of("click") else None
    for hour in range(bot_hits if polled else 0):
        visit = Visit(
            BOT_USER_AGENT, (("click", polled or ""),), messages[0].recipient_id, address=BOT_ADDRESS
        )
        timed.append(TimedVisit(sent_at + timedelta(hours=hour + 1, minutes=rng.uniform(0, 5)), visit))
    return timed


def _expected_status(kind: str) -> int:
    return 302 if kind == "click" else 200  # the pixel and the tag answer a GIF, the honeypot a page


def play(visit: Visit) -> int:
    """Fetch one person's hits like their client would: no redirect followed, each answer checked."""
    with requests.Session() as person:
        person.headers["User-Agent"] = visit.user_agent
        if visit.address:  # counts only on a stack that trusts X-Forwarded-For
            person.headers["X-Forwarded-For"] = visit.address
        for kind, url in visit.hits:
            answer = person.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT_SECONDS)
            expected = _expected_status(kind)
            if answer.status_code != expected:
                raise DemoError(
                    f"GET {url} answered {answer.status_code}, expected {expected}: {answer.text[:200]}"
                )
    return len(visit.hits)


class PastHits:
    """Records hits of the past through the redirect function's own logic, in the stack's process.

    Over HTTP the redirect stamps each hit with the moment it arrives; here the same ``track`` and
    ``tag`` the handler calls (token check, target lookup, raw-event sink, the person cookie and its
    latest click, web-tracking attribution) get a hit stamped with its moment of the past instead.
    """

    def __init__(self) -> None:
        from functions.redirect import tracking, web
        from functions.redirect.detection import CachedDetection
        from functions.redirect.store import (
            DynamoEventSink,
            DynamoMachineSettings,
            DynamoSites,
            DynamoTargets,
        )
        from functions.shared.settings import settings
        from functions.shared.tokens import signer

        self._tracking, self._web, self._signer = tracking, web, signer
        self._detection = CachedDetection(DynamoMachineSettings())
        self._targets = tracking.CachedTargets(DynamoTargets())
        self._sites = web.CachedSites(DynamoSites())
        self._sink = DynamoEventSink(ttl_days=settings().raw_event_ttl_days)
        self._attribution_days = settings().web_attribution_days

    def play(self, timed: TimedVisit) -> int:
        cookie: str | None = None
        visit = timed.visit
        address = visit.address or person_address(visit.recipient_id, visit.forwarded)
        detection = self._detection.current()
        for number, (kind, url) in enumerate(visit.hits):
            at = timed.at + timedelta(seconds=visit.seconds_between_hits * number)  # in their order
            parts = urlsplit(url)
            token = parts.path[3:]
            if kind == "tag":
                params = dict(parse_qsl(parts.query))
                tag_hit = self._web.TagHit(token, params, None, None, at, visit.user_agent, address, cookie)
                tagged = self._web.tag(
                    tag_hit,
                    self._signer(),
                    self._sites,
                    self._sink,
                    self._attribution_days,
                    detection=detection,
                )
                status = tagged.status
            else:
                hit_kind = "click" if kind == "honeypot" else kind
                link_hit = self._tracking.Hit(token, hit_kind, at, visit.user_agent, address, cookie)
                answer = self._tracking.track(link_hit, self._signer(), self._targets, self._sink, detection)
                cookie = answer.person_cookie or cookie
                status = 200 if answer.status == self._tracking.HONEYPOT else answer.status
            expected = _expected_status(kind)
            if status != expected:
                raise DemoError(
                    f"{kind} {url} of {timed.at:%Y-%m-%d %H:%M} answered {status}, expected {expected}"
                )
        return len(timed.visit.hits)


class Past(Protocol):
    def play(self, timed: TimedVisit) -> int: ...


def _play_all(timed: list[TimedVisit], past: Past | None, now: datetime) -> int:
    """The past through ``past`` first (all of it before the workflow's first run), then the live hits."""
    live_since = now - timedelta(minutes=LIVE_MINUTES)
    earlier = [t for t in timed if past is not None and t.at < live_since]
    live = [t.visit for t in timed if past is None or t.at >= live_since]
    with ThreadPoolExecutor(WORKERS) as pool:
        hits = sum(pool.map(past.play, earlier)) if past is not None else 0
        return hits + sum(pool.map(play, live))


# --- the report API --------------------------------------------------------------------------


class ReportApi:
    """The report API as an outside user calls it: JSON over HTTP with a Bearer token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, expected: int = 200, **kwargs: Any) -> Any:
        answer = self._session.request(method, self.base_url + path, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)
        if answer.status_code != expected:
            raise DemoError(
                f"{method} {path} answered {answer.status_code} (expected {expected}): {answer.text[:300]}"
            )
        return answer.json() if answer.content else None

    def close(self) -> None:
        self._session.close()


def recipients(rng: random.Random, count: int) -> list[dict[str, Any]]:
    domains, weights = zip(*EMAIL_DOMAINS, strict=True)
    people = []
    for number in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local_part = f"{first}.{last}{number}".lower().translate(str.maketrans("éèüöä", "eeuoa"))
        email = f"{local_part}@{rng.choices(domains, weights)[0]}"
        people.append({"id": f"r{number:04d}", "email": email, "fields": {"first_name": first}})
    return people


def register(api: ReportApi, label: str, html: str) -> dict[str, Any]:
    body = {
        "label": label,
        "html": html,
        "track_opens": True,
        "track_clicks": True,
        "exclude_url_patterns": [],
    }
    delivery: dict[str, Any] = api.call("POST", "/api/deliveries", 201, json=body)
    return delivery


def render(
    api: ReportApi, delivery_id: str, template: str, people: list[dict[str, Any]], *, proof: bool = False
) -> list[TrackedMessage]:
    written = written_links(template)
    messages = []
    for start in range(0, len(people), RENDER_BATCH):
        batch = people[start : start + RENDER_BATCH]
        answer = api.call(
            "POST", f"/api/deliveries/{delivery_id}/messages", json={"recipients": batch, "proof": proof}
        )
        messages += [tracked_message(m["recipient_id"], written, m["html"]) for m in answer["messages"]]
    return messages


def run_workflow(api: ReportApi, timeout: float = RUN_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Start a tracking workflow run and wait for its outcome."""
    run_id = api.call("POST", "/api/workflows/tracking/runs", 202)["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workflow = api.call("GET", "/api/workflows/tracking")
        run: dict[str, Any] | None = next(
            (r for r in workflow.get("runs", []) if r.get("id") == run_id), None
        )
        if run is not None and run.get("status") in ("succeeded", "failed"):
            return run
        time.sleep(0.25)
    raise DemoError(f"tracking workflow run {run_id} did not finish within {timeout:.0f} s")


@contextmanager
def _timed(say: Callable[[str], None], what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    say(f"  {what} ({time.monotonic() - started:.1f} s)")


def run_demo(
    base_url: str,
    token: str,
    *,
    seed: int = SEED,
    say: Callable[[str], None] = print,
    past: Past | None = None,
    now: datetime | None = None,
) -> DemoResult:
    """The demo against the stack at ``base_url``; hits of the past through ``past`` (see the module)."""
    rng = random.Random(seed)
    timing = random.Random(seed + 1)  # moments drawn apart, so the audience is the same with or without
    now = now or datetime.now(UTC)
    api = ReportApi(base_url, token)
    try:
        newsletter_html = NEWSLETTER.read_text(encoding="utf-8")
        last_call_html = LAST_CALL.read_text(encoding="utf-8")
        people = recipients(rng, RECIPIENTS)
        with _timed(say, f"registered 2 deliveries and rendered {RECIPIENTS} messages + 2 proofs"):
            newsletter = register(api, "The Trail Journal — Winter 2026", newsletter_html)
            messages = render(api, newsletter["id"], newsletter_html, people)
            proofs = render(api, newsletter["id"], newsletter_html, list(PROOF_RECIPIENTS), proof=True)
            follow_up = register(api, "Last call: winter sale ends tonight", last_call_html)
            follow_up_messages = render(api, follow_up["id"], last_call_html, people[:40])

        failed = sorted(rng.sample([p["id"] for p in people[1:]], FAILED_MESSAGES))
        api.call("POST", f"/api/deliveries/{newsletter['id']}/failures", json={"recipient_ids": failed})
        delivered = [m for m in messages if m.recipient_id not in failed]

        shop = api.call(
            "POST",
            "/api/web-tracking/sites",
            201,
            json={"name": "Northwind Outfitters shop", "domains": [SHOP_DOMAIN]},
        )
        visits = plan_audience(
            rng, delivered, always_engaged=frozenset({"r0001"}), shop_tag=shop["pixel_url"]
        )
        follow_up_visits = plan_audience(rng, follow_up_messages[1:])
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        sent_at = midnight - timedelta(days=NEWSLETTER_SENT_DAYS_AGO) + timedelta(hours=NEWSLETTER_SENT_HOUR)
        follow_up_sent_at = now - timedelta(hours=FOLLOW_UP_SENT_HOURS_AGO)
        timed = schedule(timing, visits, sent_at, now)
        timed += schedule(timing, follow_up_visits, follow_up_sent_at, now)
        machines = random.Random(seed + 2)  # their own draws: the people are the same with or without
        timed += plan_machines(machines, delivered, sent_at)
        timed += plan_machines(machines, follow_up_messages[1:], follow_up_sent_at, bot_hits=0)
        timed.append(
            TimedVisit(now, Visit(BROWSERS[0], (("click", follow_up_messages[0].of("click")[0].href),)))
        )
        timed.append(TimedVisit(now, Visit(BROWSERS[2], (("click", proofs[0].of("click")[0].href),))))
        days = "over the last 2 days" if past is not None else "now"
        with _timed(say, f"simulated {len(timed)} readers {days}"):
            hits = _play_all(timed, past, now)

        with _timed(say, f"{hits} tracked hits consolidated by the tracking workflow"):
            run = run_workflow(api)
        if run.get("status") != "succeeded":
            raise DemoError(f"the tracking workflow run {run.get('id')} failed: {run.get('errors')}")
        statistics = api.call("GET", f"/api/deliveries/{newsletter['id']}/tracking/statistics")
        first = messages[0]
        return DemoResult(
            delivery_id=newsletter["id"],
            follow_up_id=follow_up["id"],
            sample_click=max(first.of("click"), key=_link_weight).href,
            sample_open=first.pixel or "",
            run=run,
            statistics=statistics,
            hits=hits,
        )
    finally:
        api.close()


def curl_lines(base_url: str, token: str, delivery_id: str) -> list[str]:
    """Ready-to-paste calls for every report route."""
    auth = f'-H "Authorization: Bearer {token}"'
    tab = f"{base_url}/api/deliveries/{delivery_id}/tracking"
    return [
        f"curl -s {auth} {tab}/statistics",
        f"curl -s {auth} {tab}/urls",
        f"curl -s {auth} {tab}/hot-clicks",
        f'curl -s {auth} "{tab}/logs?limit=5"',
        f"curl -s {auth} {base_url}/api/recipients/r0001/tracking",
        f"curl -s {auth} {base_url}/api/workflows/tracking",
        f"curl -s -X POST {auth} {base_url}/api/workflows/tracking/runs",
    ]
