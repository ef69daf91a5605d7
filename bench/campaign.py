"""A newsletter campaign's traffic, the same for every figure: recipients, opens and clicks over a day.

Deterministic (seeded), so a figure at 10k and at 100k events sees the same kind of traffic and two
runs of the bench see the same events. The shape follows what a sender sees: about three events per
recipient who reacts, six opens in ten events, clicks spread over the links with a long tail, most
events in the first hours, opens from mail clients and image proxies, clicks from browsers, and one
click in twenty from a forwarded copy (another person).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from functions.shared.raw_events import RawEvent

START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HOURS = 24
EVENTS_PER_RECIPIENT = 3
OPEN_SHARE = 0.6
FORWARDED_SHARE = 0.05
RAW_EVENT_TTL_DAYS = 30

MAIL_CLIENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0",
)
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
)
EMAIL_DOMAINS = (
    ("gmail.com", 35),
    ("outlook.com", 15),
    ("yahoo.com", 10),
    ("icloud.com", 8),
    ("orange.fr", 6),
    ("web.de", 6),
    ("hotmail.co.uk", 5),
    ("gmx.net", 5),
    ("harbourfreight.example", 5),
    ("nordlicht.example", 5),
)
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass(frozen=True)
class Link:
    url_id: str
    url: str
    label: str
    category: str  # click, opt_out, mirror


def standard_links(count: int = 40) -> tuple[Link, ...]:
    """A newsletter's tracked URLs: product and article links, one unsubscribe, one mirror page."""
    links = [
        Link(
            str(n),
            f"https://shop.example.com/collections/winter-{n:02d}?utm_source=newsletter&utm_medium=email"
            f"&utm_campaign=winter-sale&utm_content=link-{n:02d}",
            f"Winter pick {n:02d}",
            "click",
        )
        for n in range(1, count - 1)
    ]
    links.append(
        Link(str(count - 1), "https://shop.example.com/unsubscribe?list=weekly", "Unsubscribe", "opt_out")
    )
    links.append(Link(str(count), "https://shop.example.com/newsletter/winter-sale", "View online", "mirror"))
    return tuple(links)


@dataclass(frozen=True)
class Campaign:
    delivery_id: str
    events: int
    links: tuple[Link, ...] = standard_links()
    seed: int = 2026

    @property
    def recipients(self) -> int:
        return max(1, self.events // EVENTS_PER_RECIPIENT)

    @property
    def end(self) -> datetime:
        return START + timedelta(hours=HOURS)

    def recipient_id(self, number: int) -> str:
        return f"cust-{number:08d}"

    def email_domain(self, number: int) -> str:
        domains = [name for name, _ in EMAIL_DOMAINS]
        weights = [weight for _, weight in EMAIL_DOMAINS]
        return random.Random(f"{self.seed}-domain-{number}").choices(domains, weights)[0]

    def domains_sent(self) -> dict[str, int]:
        sent: dict[str, int] = {}
        for number in range(self.recipients):
            domain = self.email_domain(number)
            sent[domain] = sent.get(domain, 0) + 1
        return sent

    def raw_events(self) -> Iterator[RawEvent]:
        """The campaign's raw events as the redirect function records them, in time order per hour."""
        rng = random.Random(f"{self.seed}-{self.events}")  # the same traffic whatever the delivery's id
        clicks = [link for link in self.links if link.category == "click"]
        others = [link for link in self.links if link.category != "click"]
        popularity = [0.9**rank for rank in range(len(clicks))]  # the first links get most clicks
        for number in range(self.events):
            # every hour of the day sees some traffic, most of it comes in the first hours
            hour = number if number < HOURS else int(rng.expovariate(1 / 4)) % HOURS
            at = START + timedelta(hours=hour, seconds=rng.random() * 3600)
            recipient = rng.randrange(self.recipients)
            if rng.random() < OPEN_SHARE:
                yield self._event(rng, "open", recipient, None, at, rng.choice(MAIL_CLIENTS), None)
                continue
            if others and rng.random() < 0.03:
                link = rng.choice(others)
            else:
                link = rng.choices(clicks, popularity)[0]
            browser = BROWSERS[recipient % len(BROWSERS)]
            person = f"{recipient:022d}"
            if rng.random() < FORWARDED_SHARE:  # a forwarded copy, clicked by someone else
                browser, person = rng.choice(BROWSERS), self._random_id(rng, 22)
            yield self._event(rng, "click", recipient, link.url_id, at, browser, person)

    def _event(
        self,
        rng: random.Random,
        kind: str,
        recipient: int,
        url_id: str | None,
        at: datetime,
        user_agent: str,
        person: str | None,
    ) -> RawEvent:
        return RawEvent(
            event_id=self._random_id(rng, 16),
            kind=kind,
            delivery_id=self.delivery_id,
            recipient_id=self.recipient_id(recipient),
            url_id=url_id,
            at=at,
            user_agent=user_agent,
            person_id=person,
            ip=f"203.0.{rng.randrange(256)}.0",
            proof=False,
        )

    @staticmethod
    def _random_id(rng: random.Random, length: int) -> str:
        return "".join(rng.choice(_ALPHABET) for _ in range(length))
