"""An attacker who received one email, against the local stack over HTTP: thousands of opens of its
pixel with distinct crafted User-Agents and hundreds of huge unicode page URLs through the web tag.
The workflow must go on succeeding, count the attacked delivery exactly (the excess names in "Other")
and a bystander delivery exactly."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.apigw import API_TOKEN
from tests.e2e.conftest import local_stack
from tests.e2e.test_story import run_workflow

pytestmark = pytest.mark.e2e


# A stack of its own: every later run of the workflow re-reads the last few minutes before each
# checkpoint (the late-event grace window), so thousands of fresh hits in a shared stack would slow
# the other tests' runs for minutes.
@pytest.fixture(scope="module")
def stack_url() -> Iterator[str]:
    with local_stack() as base_url:
        yield base_url


@pytest.fixture(scope="module")
def api(stack_url: str) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield session


RUN = uuid.uuid4().hex[:6]
HTML = '<p><a href="https://shop.example.com/sale">Sale</a></p>'
PIXEL = re.compile(r'src="(http://127\.0\.0\.1:\d+/o/[^"]+)"')
LINK = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"(?! aria-hidden)')  # not the honeypot
CRAFTED_OPENS = 2_000
CRAFTED_PAGES = 250
CRAFTED_SUFFIX = "/1.0 CFNetwork/1 Darwin/1"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def _delivery(api: requests.Session, base_url: str, recipients: list[str]) -> tuple[str, list[str]]:
    """A delivery rendered for ``recipients``: its id and each message's HTML."""
    created = api.post(
        f"{base_url}/api/deliveries", json={"label": f"Attack {RUN}", "html": HTML}, timeout=30
    )
    assert created.status_code == 201, created.text
    delivery_id = created.json()["id"]
    rendered = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": r, "email": f"{r}@example.org"} for r in recipients]},
        timeout=30,
    )
    assert rendered.status_code == 200, rendered.text
    return delivery_id, [m["html"].replace("&amp;", "&") for m in rendered.json()["messages"]]


def _user_agents(chance: random.Random) -> list[bytes]:
    """Half 200 random letters, half 200 random CJK characters (sent as UTF-8 bytes), then the suffix."""
    agents = []
    for n in range(CRAFTED_OPENS):
        if n % 2:
            name = "".join(chr(chance.randrange(0x4E00, 0x9FFF)) for _ in range(200))
        else:
            name = "".join(chance.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(200))
        agents.append((name + CRAFTED_SUFFIX).encode())
    return agents


def _send_all(urls_and_headers: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[int]:
    """GET every (url, params, headers) over a few kept-alive connections; the status codes."""

    def send(chunk: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[int]:
        with requests.Session() as session:
            return [
                session.get(url, params=params, headers=headers, timeout=30).status_code
                for url, params, headers in chunk
            ]

    chunks = [urls_and_headers[n::4] for n in range(4)]
    with ThreadPoolExecutor(max_workers=4) as senders:
        return [status for statuses in senders.map(send, chunks) for status in statuses]


def test_thousands_of_crafted_user_agents_and_huge_unicode_pages_neither_halt_nor_miscount(
    api: requests.Session, stack_url: str, reliability: Any
) -> None:
    started = time.monotonic()
    chance = random.Random(20261206)
    # Given an attacked delivery (the attacker received its message) and a bystander delivery
    attacked, [message] = _delivery(api, stack_url, [f"attacker-{RUN}"])
    bystander, bystanders = _delivery(api, stack_url, [f"ann-{RUN}", f"bob-{RUN}"])
    site = api.post(
        f"{stack_url}/api/web-tracking/sites",
        json={"name": f"Shop {RUN}", "domains": ["shop.example.com"]},
        timeout=30,
    )
    assert site.status_code == 201, site.text
    tag = f"{stack_url}/w/{site.json()['site_token']}"

    # When the attacker loads the pixel 2,000 times with distinct crafted User-Agents
    [pixel] = PIXEL.findall(message)
    statuses = _send_all([(pixel, {}, {"User-Agent": agent}) for agent in _user_agents(chance)])
    assert statuses == [200] * CRAFTED_OPENS
    # and, after a click, has the web tag report 250 page URLs of 1,000 random CJK characters (3 KB)
    browser = requests.Session()
    [link] = LINK.findall(message)
    assert browser.get(link, allow_redirects=False, timeout=30).status_code == 302
    cookie = browser.cookies.get_dict()
    pages = [
        "https://shop.example.com/" + "".join(chr(chance.randrange(0x4E00, 0x9FFF)) for _ in range(1_000))
        for _ in range(CRAFTED_PAGES)
    ]
    statuses = _send_all(
        [
            (tag, {"type": "page", "url": page}, {"Cookie": "; ".join(f"{k}={v}" for k, v in cookie.items())})
            for page in pages
        ]
    )
    assert statuses == [200] * CRAFTED_PAGES
    # while the bystanders open and click as people do
    for html in bystanders:
        [bystander_pixel], [bystander_link] = PIXEL.findall(html), LINK.findall(html)
        person = requests.Session()
        person.headers["User-Agent"] = CHROME
        assert person.get(bystander_pixel, timeout=30).status_code == 200
        assert person.get(bystander_pixel, timeout=30).status_code == 200
        assert person.get(bystander_link, allow_redirects=False, timeout=30).status_code == 302
    sent = time.monotonic() - started
    # and the workflow runs, twice
    first = run_workflow(api, stack_url, timeout=120)
    second = run_workflow(api, stack_url, timeout=120)

    # Then both runs succeed and quarantine nothing: no item grew past its bounds
    assert (first["status"], second["status"]) == ("succeeded", "succeeded"), (first, second)
    assert not [e for e in first["errors"] + second["errors"] if "quarantined" in e]
    # And the attacked delivery counts every hit, the names past the first 100 in "Other"
    base = f"{stack_url}/api/deliveries/{attacked}/tracking"
    statistics = api.get(f"{base}/statistics", timeout=30).json()
    assert (statistics["total_opens"], statistics["opens"], statistics["total_clicks"]) == (
        CRAFTED_OPENS,
        1,
        1,
    )
    assert statistics["page_views"] == CRAFTED_PAGES
    browsers = statistics["breakdowns"]["browser"]
    assert len(browsers) <= 101 and browsers[-1]["name"] == "Other"
    assert sum(row["opens"] for row in browsers) == CRAFTED_OPENS
    assert sum(row["clicks"] for row in browsers) == 1
    assert sum(row["opens"] for row in statistics["breakdowns"]["os"]) == CRAFTED_OPENS
    assert all(len(row["name"].encode()) <= 200 for row in browsers)
    # and the click streams name at most 200 pages, the others counted in other_pages
    streams = api.get(f"{base}/click-streams", timeout=30).json()
    assert len(streams["pages"]) <= 200
    assert sum(page["views"] for page in streams["pages"]) + streams["other_pages"] == CRAFTED_PAGES
    # And the bystander delivery is counted exactly
    counted = api.get(f"{stack_url}/api/deliveries/{bystander}/tracking/statistics", timeout=30).json()
    assert (counted["opens"], counted["total_opens"], counted["clicks"], counted["total_clicks"]) == (
        2,
        4,
        2,
        2,
    )
    assert counted["breakdowns"]["browser"] == [{"name": "Chrome", "opens": 4, "clicks": 2}]
    elapsed = time.monotonic() - started
    expected = CRAFTED_OPENS + CRAFTED_PAGES + 1 + 4 + 2
    measured = statistics["total_opens"] + statistics["page_views"] + statistics["total_clicks"]
    measured += counted["total_opens"] + counted["total_clicks"]
    reliability.record(
        "Bad input",
        f"an attacker with one message: {CRAFTED_OPENS:,} pixel loads with distinct crafted User-Agents "
        f"(200 random letters or CJK characters + {CRAFTED_SUFFIX}) and {CRAFTED_PAGES} web-tag page URLs of "
        "1,000 CJK characters (3 KB), through the local stack, with a bystander delivery",
        1,
        f"hits sent in {sent:.0f} s, two runs succeeded ({elapsed:.0f} s in all), nothing quarantined; attacked "
        f"delivery exact ({len(browsers) - 1} browser names kept, the rest in Other; {len(streams['pages'])} "
        "pages named, the rest in other_pages); bystander exact",
        max(0, expected - measured),
        max(0, measured - expected),
    )
