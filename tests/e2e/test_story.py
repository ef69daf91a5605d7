"""The whole story of the contract, told over HTTP to a running local stack.

A sending system registers two deliveries and renders messages; recipients open and click through
``/r`` and ``/o`` in their own browsers (one cookie-keeping ``requests.Session`` per person), a
message is forwarded and clicked by someone else, a proof is clicked, a failure is reported; the
tracking workflow runs; then every report is checked against indicators this test computes itself
from what it sent. The story is played once per module (``story``), each test checks one part of it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]  # recipient ids of this session only, whatever else the stack holds
MAIL_CLIENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
BROWSERS = {
    "anna": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "carla": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "friend": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "dan": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile "
    "Safari/537.36",
    "proofreader": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
}

# The newsletter, its anchors in document order: (key, href as written, category or None if untracked)
NEWSLETTER_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Story newsletter</title></head>
<body>
<p><a href="https://news.example.com/view?issue=42" data-track="mirror">View in browser</a></p>
<h1>Hello {{ first_name }}</h1>
<p><a href="https://shop.example.com/winter?utm_source=mail&amp;utm_medium=email#top">Shop the winter sale</a></p>
<p><a href="https://shop.example.com/account/{{ first_name }}?greeting={{ first_name }}" data-label="My account">Your
account</a></p>
<p><a href="https://blog.example.com/post/layering" data-label="Blog">Read the blog</a></p>
<p><a href="mailto:help@example.com">Mail us</a> · <a href="tel:+431234567">Call us</a> ·
<a href="#details">Details</a> · <a href="/relative/page">Relative</a> ·
<a href="https://status.example.com/" data-track="none">Status</a></p>
<p id="details">Prices include VAT.</p>
<p><a href="https://example.com/unsubscribe?list=news" data-track="optout">Unsubscribe</a></p>
</body></html>
"""
ANCHORS = (
    ("mirror", "https://news.example.com/view?issue=42", "mirror"),
    ("shop", "https://shop.example.com/winter?utm_source=mail&utm_medium=email#top", "click"),
    ("account", "https://shop.example.com/account/{{ first_name }}?greeting={{ first_name }}", "click"),
    ("blog", "https://blog.example.com/post/layering", "click"),
    ("mailto", "mailto:help@example.com", None),
    ("tel", "tel:+431234567", None),
    ("anchor", "#details", None),
    ("relative", "/relative/page", None),
    ("status", "https://status.example.com/", None),
    ("optout", "https://example.com/unsubscribe?list=news", "opt_out"),
)
LABELS = {
    "mirror": "View in browser",
    "shop": "Shop the winter sale",
    "account": "My account",
    "blog": "Blog",
}
UNTOUCHED = (
    'href="mailto:help@example.com"',
    'href="tel:+431234567"',
    'href="#details"',
    'href="/relative/page"',
)

FOLLOW_UP_HTML = """<html><body>
<p><a href="https://shop.example.com/last-call?utm_campaign=last-call" data-label="Last call">Last call</a></p>
<p><a href="https://example.com/unsubscribe?list=offers" data-track="optout">Unsubscribe</a></p>
</body></html>
"""
FOLLOW_UP_ANCHORS = (
    ("last_call", "https://shop.example.com/last-call?utm_campaign=last-call", "click"),
    ("optout", "https://example.com/unsubscribe?list=offers", "opt_out"),
)

FIRST_NAMES = {"anna": "Anna", "ben": "Ben", "carla": "Carla", "dan": "Dan", "eva": "Eva", "fay": "Fay"}
LOG_FIELDS = {"event_id", "delivery_id", "recipient_id", "type", "url_id", "url", "label", "at"}
LOG_FIELDS |= {"browser", "os", "device", "proof"}
STAT_FIELDS: tuple[str, ...] = ("sent", "delivered", "opens", "total_opens", "clicks", "person_clicks")
STAT_FIELDS += (
    "total_clicks",
    "opt_outs",
    "mirror_page_views",
    "estimated_forwards",
    "open_rate",
    "click_rate",
)
STAT_FIELDS += ("reactivity",)


def rid(name: str) -> str:
    return f"{name}-{RUN}"


@dataclass(frozen=True)
class Message:
    links: dict[str, str]  # anchor key -> tracked /r/ link
    pixel: str | None
    html: str


@dataclass(frozen=True)
class Hit:
    """One tracked request this test made, as the ledger the expected indicators are computed from."""

    delivery: str  # "newsletter" or "follow_up"
    recipient: str
    link: str | None  # anchor key; None for an open-pixel load
    person: str | None  # the browser that clicked; None for a mail client loading the pixel
    proof: bool = False


@dataclass
class Story:
    base_url: str
    newsletter: dict[str, Any] = field(default_factory=dict)
    follow_up: dict[str, Any] = field(default_factory=dict)
    untracked: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    follow_up_messages: dict[str, Message] = field(default_factory=dict)
    ledger: list[Hit] = field(default_factory=list)
    answers: dict[str, requests.Response] = field(default_factory=dict)
    cookies_sent: dict[str, bool] = field(default_factory=dict)
    failure_answer: requests.Response | None = None
    first_run: dict[str, Any] = field(default_factory=dict)
    second_run: dict[str, Any] = field(default_factory=dict)
    statistics_after_first_run: dict[str, Any] = field(default_factory=dict)
    logs_after_first_run: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tab(self) -> str:
        """The newsletter's Tracking tab."""
        return f"{self.base_url}/api/deliveries/{self.newsletter['id']}/tracking"

    def url_id(self, key: str, delivery: dict[str, Any] | None = None) -> str:
        anchors = ANCHORS if delivery is None or delivery is self.newsletter else FOLLOW_UP_ANCHORS
        written = {k: href for k, href, _ in anchors}[key]
        urls = (delivery or self.newsletter)["urls"]
        return str(next(u["id"] for u in urls if u["url"] == written))


# --- talking to the stack ------------------------------------------------------------------------


def anchors_of(html: str) -> list[str]:
    """The hrefs of the message's anchors, without the hidden honeypot link rendering adds."""
    return re.findall(r"<a\b[^>]*?\bhref=\"([^\"]*)\"(?! aria-hidden)", html)


def message_of(html: str, anchors: tuple[tuple[str, str, str | None], ...]) -> Message:
    """The tracked links of a rendered message, by anchor key (the anchors keep their order)."""
    hrefs = anchors_of(html)
    assert len(hrefs) == len(anchors), f"rendered message has {len(hrefs)} anchors: {hrefs}"
    links = {key: href for (key, _, _), href in zip(anchors, hrefs, strict=True) if "/r/" in href}
    pixel = re.search(r"<img\b[^>]*?\bsrc=\"([^\"]*/o/[^\"]*)\"", html)
    return Message(links, pixel.group(1) if pixel else None, html)


def register(
    api: requests.Session, base_url: str, label: str, html: str, *, track: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {"label": label, "html": html, "track_opens": track, "track_clicks": track}
    body["exclude_url_patterns"] = []
    answer = api.post(f"{base_url}/api/deliveries", json=body, timeout=30)
    assert answer.status_code == 201, answer.text
    delivery: dict[str, Any] = answer.json()
    return delivery


def render(
    api: requests.Session,
    base_url: str,
    delivery_id: str,
    names: list[str],
    anchors: tuple[tuple[str, str, str | None], ...],
    *,
    proof: bool = False,
) -> dict[str, Message]:
    recipients: list[dict[str, Any]] = [
        {
            "id": rid(name),
            "email": f"{name}@example.org",
            "fields": {"first_name": FIRST_NAMES.get(name, "Ida")},
        }
        for name in names
    ]
    answer = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": recipients, "proof": proof},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    rendered = {m["recipient_id"]: m["html"] for m in answer.json()["messages"]}
    assert set(rendered) == {rid(name) for name in names}
    return {name: message_of(rendered[rid(name)], anchors) for name in names}


def run_workflow(api: requests.Session, base_url: str, timeout: float = 60.0) -> dict[str, Any]:
    started = api.post(f"{base_url}/api/workflows/tracking/runs", timeout=30)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.get(f"{base_url}/api/workflows/tracking", timeout=30).json()["runs"]
        run: dict[str, Any] | None = next((r for r in runs if r["id"] == run_id), None)
        if run is not None and run["status"] in ("succeeded", "failed", "skipped"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish within {timeout} s")


def all_logs(api: requests.Session, url: str, **query: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        params = {**query, **({"cursor": cursor} if cursor else {})}
        page = api.get(url, params=params, timeout=30)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


def tamper(token_url: str) -> str:
    """The same link with one character of its signed payload changed."""
    prefix, token = token_url.rsplit("/", 1)
    kid, payload, mac = token.split(".")
    position = len(payload) // 2
    swapped = "A" if payload[position] != "A" else "B"
    return f"{prefix}/{kid}.{payload[:position]}{swapped}{payload[position + 1 :]}.{mac}"


# --- the story -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def story(stack_url: str, api: requests.Session) -> Iterator[Story]:
    tale = Story(stack_url)

    # A sending system registers a newsletter, a follow-up and a delivery that tracks nothing
    tale.newsletter = register(api, stack_url, f"Story newsletter {RUN}", NEWSLETTER_HTML)
    tale.follow_up = register(api, stack_url, f"Story follow-up {RUN}", FOLLOW_UP_HTML)
    tale.untracked = register(api, stack_url, f"Story untracked {RUN}", NEWSLETTER_HTML, track=False)

    # ... renders the newsletter for six recipients and one proof, the follow-up for two
    tale.messages = render(api, stack_url, tale.newsletter["id"], list(FIRST_NAMES), ANCHORS)
    proof = render(api, stack_url, tale.newsletter["id"], ["proofreader"], ANCHORS, proof=True)["proofreader"]
    tale.follow_up_messages = render(api, stack_url, tale.follow_up["id"], ["anna", "ben"], FOLLOW_UP_ANCHORS)

    # ... and learns that Fay's message bounced
    tale.failure_answer = api.post(
        f"{stack_url}/api/deliveries/{tale.newsletter['id']}/failures",
        json={"recipient_ids": [rid("fay")]},
        timeout=30,
    )

    browsers = {name: requests.Session() for name in BROWSERS}
    for name, session in browsers.items():
        session.headers["User-Agent"] = BROWSERS[name]

    def click(name: str, person: str, key: str, *, delivery: str = "newsletter") -> requests.Response:
        message = tale.follow_up_messages[name] if delivery == "follow_up" else tale.messages[name]
        tale.cookies_sent[f"{person}:{key}"] = bool(browsers[person].cookies)
        answer = browsers[person].get(message.links[key], allow_redirects=False, timeout=30)
        tale.ledger.append(Hit(delivery, name, key, person))
        return answer

    def open_pixel(name: str) -> requests.Response:
        pixel = tale.messages[name].pixel
        assert pixel is not None, "a message of a delivery that tracks opens has an open pixel"
        answer = requests.get(pixel, headers={"User-Agent": MAIL_CLIENT}, timeout=30)
        tale.ledger.append(Hit("newsletter", name, None, None))
        return answer

    # Anna clicks the sale, opens the message twice, then goes to her (personalized) account page
    tale.answers["anna_shop"] = click("anna", "anna", "shop")
    tale.answers["anna_open"] = open_pixel("anna")
    open_pixel("anna")
    tale.answers["anna_account"] = click("anna", "anna", "account")
    # Ben only opens; Carla's mail client blocks images, she clicks, and forwards it to a friend who clicks
    open_pixel("ben")
    tale.answers["carla_shop"] = click("carla", "carla", "shop")
    tale.answers["friend_shop"] = click("carla", "friend", "shop")
    # Dan opens, reads the mirror page and opts out; Eva does nothing; Fay never got the message
    open_pixel("dan")
    tale.answers["dan_mirror"] = click("dan", "dan", "mirror")
    tale.answers["dan_optout"] = click("dan", "dan", "optout")
    # The proofreader checks a link of the proof
    tale.answers["proof_shop"] = browsers["proofreader"].get(proof.links["shop"], allow_redirects=False)
    tale.ledger.append(Hit("newsletter", "proofreader", "shop", "proofreader", proof=True))
    # Anna clicks the follow-up in the same browser
    tale.answers["anna_last_call"] = click("anna", "anna", "last_call", delivery="follow_up")

    # Someone tries a tampered click link, a tampered pixel and garbage: nothing may be recorded
    ben = tale.messages["ben"]
    tale.answers["tampered_click"] = requests.get(tamper(ben.links["shop"]), allow_redirects=False)
    tale.answers["tampered_open"] = requests.get(tamper(ben.pixel or ""), allow_redirects=False)
    tale.answers["garbage"] = requests.get(f"{stack_url}/r/not-a-token", allow_redirects=False)

    # The tracking workflow runs on demand, twice
    tale.first_run = run_workflow(api, stack_url)
    tale.statistics_after_first_run = api.get(f"{tale.tab}/statistics", timeout=30).json()
    tale.logs_after_first_run = all_logs(api, f"{tale.tab}/logs")
    tale.second_run = run_workflow(api, stack_url)

    yield tale
    for session in browsers.values():
        session.close()


# --- what the test expects, from its own ledger --------------------------------------------------


def category(hit: Hit) -> str:
    if hit.link is None:
        return "open"
    anchors = FOLLOW_UP_ANCHORS if hit.delivery == "follow_up" else ANCHORS
    found = {key: cat for key, _, cat in anchors}[hit.link]
    assert found is not None
    return found


def expected_statistics(story: Story) -> dict[str, Any]:
    counted = [h for h in story.ledger if h.delivery == "newsletter" and not h.proof]
    clicks = [h for h in counted if category(h) == "click"]
    sent, failed = len(FIRST_NAMES), 1
    delivered = sent - failed
    opens = len({h.recipient for h in counted})
    clickers = len({h.recipient for h in clicks})
    persons = len({h.person for h in clicks})

    def rate(part: int, whole: int) -> float:
        return round(part / whole * 100, 2) if whole else 0

    return {
        "sent": sent,
        "delivered": delivered,
        "opens": opens,
        "total_opens": sum(1 for h in counted if category(h) == "open"),
        "clicks": clickers,
        "person_clicks": persons,
        "total_clicks": len(clicks),
        "opt_outs": len({h.recipient for h in counted if category(h) == "opt_out"}),
        "mirror_page_views": sum(1 for h in counted if category(h) == "mirror"),
        "estimated_forwards": max(0, persons - clickers),
        "open_rate": rate(opens, delivered),
        "click_rate": rate(clickers, delivered),
        "reactivity": rate(clickers, opens),
    }


def newsletter_hits(story: Story, *, counted_only: bool = True) -> list[Hit]:
    return [h for h in story.ledger if h.delivery == "newsletter" and not (counted_only and h.proof)]


# --- Then: the public tracking endpoints -----------------------------------------------------------


def test_health_answers_ok(stack_url: str) -> None:
    answer = requests.get(f"{stack_url}/health", timeout=10)

    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_registration_finds_the_tracked_links_with_their_categories_and_labels(story: Story) -> None:
    tracked = {u["url"]: u for u in story.newsletter["urls"] if u["tracked"]}

    expected = {href: cat for _, href, cat in ANCHORS if cat is not None}
    assert {url: u["category"] for url, u in tracked.items()} == expected
    for key, label in LABELS.items():
        href = {k: h for k, h, _ in ANCHORS}[key]
        assert tracked[href]["label"] == label
    written = {u["url"] for u in story.newsletter["urls"]}
    assert not written & {"mailto:help@example.com", "tel:+431234567", "#details", "/relative/page"}
    assert story.newsletter["track_opens"] is True
    assert story.newsletter["track_clicks"] is True


def test_rendered_messages_rewrite_tracked_links_only_and_carry_an_open_pixel(story: Story) -> None:
    message = story.messages["anna"]

    assert set(message.links) == {key for key, _, cat in ANCHORS if cat is not None}
    assert all(link.startswith(f"{story.base_url}/r/") for link in message.links.values())
    assert message.pixel is not None
    assert message.pixel.startswith(f"{story.base_url}/o/")
    for untouched in (*UNTOUCHED, 'href="https://status.example.com/"'):
        assert untouched in message.html
    assert "data-track" not in message.html
    assert "data-label" not in message.html
    assert '<p id="details">Prices include VAT.</p>' in message.html


def test_each_recipient_gets_links_of_their_own(story: Story) -> None:
    assert story.messages["anna"].links["shop"] != story.messages["ben"].links["shop"]
    assert story.messages["anna"].pixel != story.messages["ben"].pixel


def test_a_click_redirects_to_the_target_with_query_and_fragment_and_sets_the_person_cookie(
    story: Story,
) -> None:
    answer = story.answers["anna_shop"]

    assert answer.status_code == 302
    assert (
        answer.headers["Location"] == "https://shop.example.com/winter?utm_source=mail&utm_medium=email#top"
    )
    assert "set-cookie" in answer.headers
    assert story.cookies_sent["anna:account"], "the browser sent its person cookie back on the next click"


def test_a_personalized_link_redirects_with_the_recipients_values(story: Story) -> None:
    answer = story.answers["anna_account"]

    assert answer.status_code == 302
    assert answer.headers["Location"] == "https://shop.example.com/account/Anna?greeting=Anna"


@pytest.mark.parametrize(
    ("answer", "location"),
    [
        ("carla_shop", "https://shop.example.com/winter?utm_source=mail&utm_medium=email#top"),
        ("friend_shop", "https://shop.example.com/winter?utm_source=mail&utm_medium=email#top"),
        ("dan_mirror", "https://news.example.com/view?issue=42"),
        ("dan_optout", "https://example.com/unsubscribe?list=news"),
        ("proof_shop", "https://shop.example.com/winter?utm_source=mail&utm_medium=email#top"),
        ("anna_last_call", "https://shop.example.com/last-call?utm_campaign=last-call"),
    ],
)
def test_every_tracked_link_redirects_to_its_target(story: Story, answer: str, location: str) -> None:
    assert story.answers[answer].status_code == 302
    assert story.answers[answer].headers["Location"] == location


def test_an_open_answers_a_gif_that_is_never_cached(story: Story) -> None:
    answer = story.answers["anna_open"]

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("image/gif")
    assert "no-store" in answer.headers["Cache-Control"]
    assert answer.content.startswith(b"GIF8")


@pytest.mark.parametrize("answer", ["tampered_click", "tampered_open", "garbage"])
def test_a_bad_token_is_a_404_page_without_location(story: Story, answer: str) -> None:
    response = story.answers[answer]

    assert response.status_code == 404
    assert "Location" not in response.headers
    assert len(response.content) < 4096


def test_a_failure_report_is_accepted(story: Story) -> None:
    assert story.failure_answer is not None
    assert story.failure_answer.status_code in (200, 202, 204), story.failure_answer.text


# --- Then: the tracking workflow -------------------------------------------------------------------


def test_the_run_consolidates_every_recorded_event_and_a_second_run_adds_nothing(
    story: Story, api: requests.Session
) -> None:
    assert story.first_run["status"] == "succeeded", story.first_run
    assert story.first_run["events_processed"] == len(story.ledger)
    assert story.first_run["errors"] == []
    assert story.second_run["status"] == "succeeded", story.second_run
    assert story.second_run["events_processed"] == 0

    statistics = api.get(f"{story.tab}/statistics").json()
    logs = all_logs(api, f"{story.tab}/logs")
    assert {k: statistics[k] for k in STAT_FIELDS} == {
        k: story.statistics_after_first_run[k] for k in STAT_FIELDS
    }
    assert sorted(log["event_id"] for log in logs) == sorted(
        log["event_id"] for log in story.logs_after_first_run
    )


def test_the_workflow_status_lists_runs_newest_first(story: Story, api: requests.Session) -> None:
    workflow = api.get(f"{story.base_url}/api/workflows/tracking").json()

    assert workflow["schedule"] == "rate(1 day)"
    ids = [run["id"] for run in workflow["runs"]]
    assert ids.index(story.second_run["id"]) < ids.index(story.first_run["id"])
    assert workflow["last_run"]["id"] == workflow["runs"][0]["id"]
    for run in workflow["runs"]:
        assert {"id", "status", "started_at", "finished_at", "events_processed", "errors"} <= set(run)
        assert run["status"] in ("running", "succeeded", "failed")


# --- Then: the delivery's Tracking tab --------------------------------------------------------------


def test_statistics_match_what_was_sent(story: Story, api: requests.Session) -> None:
    statistics = api.get(f"{story.tab}/statistics").json()

    assert {k: statistics[k] for k in STAT_FIELDS} == expected_statistics(story)


def test_url_report_counts_events_and_distinct_recipients_per_link(
    story: Story, api: requests.Session
) -> None:
    answer = api.get(f"{story.tab}/urls")
    assert answer.status_code == 200, answer.text
    by_id = {u["id"]: u for u in answer.json()["urls"]}

    hits = newsletter_hits(story)
    for key, _, cat in ANCHORS:
        if cat is None:
            continue
        on_link = [h for h in hits if h.link == key]
        url = by_id[story.url_id(key)]
        assert (url["clicks"], url["distinct_clicks"]) == (
            len(on_link),
            len({h.recipient for h in on_link}),
        ), key
        assert url["category"] == cat


def test_hot_clicks_give_each_click_links_share_of_all_link_events(
    story: Story, api: requests.Session
) -> None:
    answer = api.get(f"{story.tab}/hot-clicks")
    assert answer.status_code == 200, answer.text
    report = answer.json()

    link_events = [h for h in newsletter_hits(story) if h.link is not None]
    click_keys = [key for key, _, cat in ANCHORS if cat == "click"]
    listed = {link["url_id"]: link for link in report["links"]}
    click_urls = {u["id"] for u in story.newsletter["urls"] if u["category"] == "click"}
    assert set(listed) <= click_urls, "hot clicks list click links only"
    for key in click_keys:
        events = sum(1 for h in link_events if h.link == key)
        if events:
            link = listed[story.url_id(key)]
            assert link["clicks"] == events
            assert link["percent"] == round(events / len(link_events) * 100, 2)
        elif story.url_id(key) in listed:
            assert listed[story.url_id(key)]["percent"] == 0
    assert isinstance(report["html"], str)
    assert "shop.example.com/winter" in report["html"]


def test_logs_page_through_every_event_newest_first(story: Story, api: requests.Session) -> None:
    url = f"{story.tab}/logs"

    first = api.get(url, params={"limit": 2}).json()
    items = all_logs(api, url, limit=2)

    assert len(first["items"]) == 2
    assert first["next_cursor"] is not None
    expected = newsletter_hits(story, counted_only=False)
    assert len(items) == len(expected)
    assert len({item["event_id"] for item in items}) == len(items)
    assert [item["at"] for item in items] == sorted((item["at"] for item in items), reverse=True)
    assert all(set(item) >= LOG_FIELDS for item in items)
    assert {item["delivery_id"] for item in items} == {story.newsletter["id"]}
    types = sorted(item["type"] for item in items)
    assert types == sorted(category(h) for h in expected)
    for item in items:
        if item["type"] == "open":
            assert (item["url_id"], item["url"], item["label"]) == (None, None, None)
        else:
            assert item["url_id"] is not None
    proofs = [item for item in items if item["proof"]]
    assert [(p["recipient_id"], p["type"]) for p in proofs] == [(rid("proofreader"), "click")]


def test_logs_filter_by_type_and_recipient(story: Story, api: requests.Session) -> None:
    url = f"{story.tab}/logs"

    opt_outs = all_logs(api, url, type="opt_out")
    annas = all_logs(api, url, recipient_id=rid("anna"))

    assert [(log["recipient_id"], log["url"]) for log in opt_outs] == [
        (rid("dan"), "https://example.com/unsubscribe?list=news")
    ]
    anna_hits = [h for h in newsletter_hits(story) if h.recipient == "anna"]
    assert sorted(log["type"] for log in annas) == sorted(category(h) for h in anna_hits)


def test_a_tampered_cursor_is_a_400(story: Story, api: requests.Session) -> None:
    url = f"{story.tab}/logs"
    cursor = api.get(url, params={"limit": 2}).json()["next_cursor"]
    position = len(cursor) // 3
    tampered = cursor[:position] + ("x" if cursor[position] != "x" else "y") + cursor[position + 1 :]

    answer = api.get(url, params={"limit": 2, "cursor": tampered})

    assert answer.status_code == 400
    assert answer.json()["error"] == "validation_error"


# --- Then: the recipient's Tracking tab --------------------------------------------------------------


def test_the_recipient_tab_lists_events_across_deliveries_with_their_labels(
    story: Story, api: requests.Session
) -> None:
    answer = api.get(f"{story.base_url}/api/recipients/{rid('anna')}/tracking")
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]

    anna = [h for h in story.ledger if h.recipient == "anna"]
    assert len(items) == len(anna)
    labels = {
        story.newsletter["id"]: story.newsletter["label"],
        story.follow_up["id"]: story.follow_up["label"],
    }
    assert {item["delivery_id"] for item in items} == set(labels)
    assert all(item["delivery_label"] == labels[item["delivery_id"]] for item in items)
    assert all(item["recipient_id"] == rid("anna") for item in items)
    follow_up = [item for item in items if item["delivery_id"] == story.follow_up["id"]]
    assert [(i["type"], i["url_id"]) for i in follow_up] == [
        ("click", story.url_id("last_call", story.follow_up))
    ]

    only_follow_up = api.get(
        f"{story.base_url}/api/recipients/{rid('anna')}/tracking",
        params={"delivery_id": story.follow_up["id"]},
    ).json()["items"]
    assert [i["event_id"] for i in only_follow_up] == [i["event_id"] for i in follow_up]


# --- Then: errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic eA=="}]
)
def test_the_report_api_needs_the_token(stack_url: str, headers: dict[str, str]) -> None:
    answer = requests.get(f"{stack_url}/api/deliveries", headers=headers, timeout=10)

    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"


@pytest.mark.parametrize("report", ["statistics", "urls", "hot-clicks", "logs"])
def test_a_delivery_that_tracks_nothing_has_no_tracking_tab(
    story: Story, api: requests.Session, report: str
) -> None:
    answer = api.get(f"{story.base_url}/api/deliveries/{story.untracked['id']}/tracking/{report}")

    assert answer.status_code == 409
    assert answer.json()["error"] == "tracking_not_activated"


def test_an_unknown_delivery_is_a_404(stack_url: str, api: requests.Session) -> None:
    answer = api.get(f"{stack_url}/api/deliveries/dunknown00000/tracking/statistics")

    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"


# --- The demo that `make run` shows ---------------------------------------------------------------


def test_the_demo_fills_the_stack_through_its_http_interface(stack_url: str, api: requests.Session) -> None:
    from local import demo
    from tests.apigw import API_TOKEN

    result = demo.run_demo(stack_url, API_TOKEN, say=lambda _: None)

    assert result.run["status"] == "succeeded"
    statistics = result.statistics
    assert (statistics["sent"], statistics["delivered"]) == (
        demo.RECIPIENTS,
        demo.RECIPIENTS - demo.FAILED_MESSAGES,
    )
    assert 0 < statistics["clicks"] < statistics["opens"] <= statistics["delivered"]
    assert statistics["opt_outs"] > 0
    assert statistics["estimated_forwards"] > 0
    assert statistics["mirror_page_views"] > 0
    # the shop's web-tracking tag saw readers browse and buy after their clicks
    assert statistics["page_views"] > statistics["transactions"] > 0
    assert statistics["transaction_amount"]["EUR"] > 0
    tab = api.get(f"{stack_url}/api/recipients/r0001/tracking").json()["items"]
    assert {item["delivery_id"] for item in tab} == {result.delivery_id, result.follow_up_id}
    assert requests.get(result.sample_click, allow_redirects=False).status_code == 302
    assert requests.get(result.sample_open).headers["Content-Type"].startswith("image/gif")
