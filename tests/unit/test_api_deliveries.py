"""The deliveries logic with the in-memory repository: registration, listing, sends and failures."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from itertools import chain

import pytest

from functions.api import deliveries, delivery_repository
from functions.api.delivery_repository import SentMessage, chunks_for_transactions
from functions.api.errors import PayloadTooLarge
from functions.api.handler import lambda_handler
from functions.api.rendering import Recipient
from functions.shared import settings
from functions.shared.errors import DeliveryNotFound, InvalidContent, InvalidCursor, InvalidRequest
from functions.shared.tokens import signer
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_deliveries import FakeDeliveryRepository

BASE_URL = "https://t.example.net"
HTML = (
    "<p>Hi {{ first_name }}</p>"
    '<a href="https://shop.example.com/p?sku={{ sku }}">Our <b>offer</b></a>'
    '<a href="https://shop.example.com/news" data-label="News">read</a>'
    '<a href="https://shop.example.com/bye" data-track="optout">Unsubscribe</a>'
    '<a href="https://shop.example.com/online" data-track="mirror">View online</a>'
    '<a href="https://partner.example.org/x" data-track="none">Partner</a>'
    '<a href="https://shop.example.com/news" data-label="News">read again</a>'
    '<a href="mailto:help@example.com">Write</a><a href="#top">Top</a>'
)
TOKEN = re.compile(re.escape(BASE_URL) + r"/([ro])/([A-Za-z0-9_\-.]+)")


@pytest.fixture
def repo() -> FakeDeliveryRepository:
    return FakeDeliveryRepository()


def register(repo: FakeDeliveryRepository, html: str = HTML, **options: object) -> str:
    return deliveries.register(label="November", html=html, repo=repo, **options).delivery.id  # type: ignore[arg-type]


def people(count: int, domain: str = "Example.COM") -> list[Recipient]:
    return [Recipient(id=f"r{n}", email=f"p{n}@{domain}", fields={"sku": str(n)}) for n in range(count)]


# --- registering ------------------------------------------------------------------------------


def test_links_are_registered_in_first_seen_order_with_their_categories(repo: FakeDeliveryRepository) -> None:
    # Given content with click, opt-out, mirror and untracked links, a repeated link and a mailto
    # When the delivery is registered
    details = deliveries.register(label="November", html=HTML, repo=repo)

    # Then each distinct http(s) link is a tracked URL numbered in order
    assert [(u.url_id, u.url, u.label, u.category, u.tracked) for u in details.urls] == [
        ("1", "https://shop.example.com/p?sku={{ sku }}", "Our offer", "click", True),
        ("2", "https://shop.example.com/news", "News", "click", True),
        ("3", "https://shop.example.com/bye", "Unsubscribe", "opt_out", True),
        ("4", "https://shop.example.com/online", "View online", "mirror", True),
        ("5", "https://partner.example.org/x", "Partner", "click", False),
    ]
    assert details.urls[0].fields == ("sku",)
    # And they are stored with the delivery and zeroed send counts
    assert repo.tracked_urls(details.delivery.id) == list(details.urls)
    assert repo.get(details.delivery.id) == details.delivery
    assert repo.send_counts(details.delivery.id).sent == 0


def test_links_matching_an_exclude_pattern_are_listed_but_not_tracked(repo: FakeDeliveryRepository) -> None:
    details = deliveries.register(
        label="November", html=HTML, exclude_url_patterns=["https://shop.example.com/n*"], repo=repo
    )

    tracked = {u.url: u.tracked for u in details.urls}
    assert tracked["https://shop.example.com/news"] is False
    assert tracked["https://shop.example.com/bye"] is True


def test_a_personalization_placeholder_in_a_host_is_refused(repo: FakeDeliveryRepository) -> None:
    with pytest.raises(InvalidContent, match="host"):
        register(repo, '<a href="https://{{ shop }}.example.com/p">Shop</a>')

    assert repo.deliveries == {}


def test_the_api_answers_a_placeholder_in_a_host_with_a_422(repo: FakeDeliveryRepository) -> None:
    # Given the fake repository behind the real handler
    delivery_repository.use(repo)
    try:
        # When a delivery with a personalised host is registered
        body = {"label": "x", "html": '<a href="https://{{ shop }}.example.com/p">Shop</a>'}
        response = lambda_handler(http_event("POST", "/api/deliveries", body=body), FakeContext())
    finally:
        delivery_repository.use(None)

    # Then it is a validation error that explains where placeholders may go
    assert response["statusCode"] == 422
    assert json_body(response)["error"] == "validation_error"
    assert "path, query or fragment" in json_body(response)["message"]
    assert repo.deliveries == {}


def test_content_too_big_for_one_item_is_refused(repo: FakeDeliveryRepository) -> None:
    # Given html and text that are each small enough but too big together (multi-byte characters count as bytes)
    html = "<p>" + "é" * 100_000 + "</p>"
    text = "x" * 150_001

    with pytest.raises(PayloadTooLarge, match="350000"):
        deliveries.register(label="big", html=html, text=text, repo=repo)

    assert repo.deliveries == {}


# --- reading ----------------------------------------------------------------------------------


def test_deliveries_are_listed_newest_first_with_a_cursor_between_pages(repo: FakeDeliveryRepository) -> None:
    # Given three deliveries created a minute apart
    start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    created = [
        deliveries.register(label=f"d{n}", html=HTML, repo=repo, now=start + timedelta(minutes=n)).delivery.id
        for n in range(3)
    ]

    # When they are listed two at a time
    first = deliveries.newest(2, repo=repo)
    second = deliveries.newest(2, first.next_cursor, repo=repo)

    # Then pages follow each other, newest first, and the last page says it is the last
    assert [d.id for d in first.items] == [created[2], created[1]]
    assert [d.id for d in second.items] == [created[0]]
    assert second.next_cursor is None
    assert first.items[0].url_count == 5


def test_an_exact_last_page_has_no_cursor(repo: FakeDeliveryRepository) -> None:
    register(repo)
    register(repo)

    assert deliveries.newest(2, repo=repo).next_cursor is None


def test_a_tampered_cursor_is_refused(repo: FakeDeliveryRepository) -> None:
    register(repo)
    register(repo)
    cursor = deliveries.newest(1, repo=repo).next_cursor
    assert cursor is not None

    with pytest.raises(InvalidCursor):
        deliveries.newest(1, cursor[:-1] + ("A" if cursor[-1] != "A" else "B"), repo=repo)


def test_an_unknown_delivery_is_not_found(repo: FakeDeliveryRepository) -> None:
    with pytest.raises(DeliveryNotFound):
        deliveries.get("dmissing", repo=repo)
    with pytest.raises(DeliveryNotFound):
        deliveries.render_messages("dmissing", people(1), base_url=BASE_URL, repo=repo)
    with pytest.raises(DeliveryNotFound):
        deliveries.report_failures("dmissing", ["r1"], repo=repo)


# --- rendering and counting sends -------------------------------------------------------------


def test_sent_counts_each_recipient_once_however_often_rendered(repo: FakeDeliveryRepository) -> None:
    # Given a delivery already rendered for three recipients
    delivery_id = register(repo)
    deliveries.render_messages(delivery_id, people(3), base_url=BASE_URL, repo=repo)

    # When five recipients (the same three among them) are rendered, twice
    for _ in range(2):
        messages = deliveries.render_messages(delivery_id, people(5), base_url=BASE_URL, repo=repo)

    # Then every recipient gets a message but each is counted once, under its lower-cased email domain
    assert [m.recipient_id for m in messages] == ["r0", "r1", "r2", "r3", "r4"]
    counts = repo.send_counts(delivery_id)
    assert counts.sent == 5
    assert dict(counts.domains) == {"example.com": 5}


def test_rendered_links_carry_signed_tokens_for_the_recipient(repo: FakeDeliveryRepository) -> None:
    delivery_id = register(repo)

    [message] = deliveries.render_messages(
        delivery_id,
        [Recipient("r9", None, {"sku": "A-1", "first_name": "Ann"})],
        base_url=BASE_URL,
        repo=repo,
    )

    claims = [(kind, signer().verify(token)) for kind, token in TOKEN.findall(message.html)]
    assert sorted(c.url_id or "" for kind, c in claims if c.kind == "c") == ["1", "2", "2", "3", "4"]
    assert [c.kind for kind, c in claims if kind == "o"] == ["o"]
    # And one more /r/ link: the honeypot (its own kind, no URL), on by default
    assert [(kind, c.url_id) for kind, c in claims if c.kind == "h"] == [("r", None)]
    assert all(c.delivery_id == delivery_id and c.recipient_id == "r9" and not c.proof for _, c in claims)
    # The untracked link, the mailto and the anchor are left exactly as written
    assert 'href="https://partner.example.org/x"' in message.html
    assert 'href="mailto:help@example.com"' in message.html
    assert 'href="#top"' in message.html


def test_proofs_are_tracked_as_proofs_and_never_counted(repo: FakeDeliveryRepository) -> None:
    delivery_id = register(repo)

    [proof] = deliveries.render_messages(delivery_id, people(1), base_url=BASE_URL, proof=True, repo=repo)

    tokens = [signer().verify(token) for _, token in TOKEN.findall(proof.html)]
    assert tokens and all(t.proof for t in tokens)
    assert repo.send_counts(delivery_id).sent == 0
    assert repo.messages[delivery_id] == {}


def test_a_delivery_that_tracks_nothing_still_renders_and_counts(repo: FakeDeliveryRepository) -> None:
    delivery_id = register(repo, track_opens=False, track_clicks=False)

    [message] = deliveries.render_messages(delivery_id, people(1), base_url=BASE_URL, repo=repo)

    assert TOKEN.findall(message.html) == []
    assert repo.send_counts(delivery_id).sent == 1


def test_more_than_1000_recipients_in_one_call_is_refused(repo: FakeDeliveryRepository) -> None:
    delivery_id = register(repo)

    with pytest.raises(InvalidRequest, match="at most 1000"):
        deliveries.render_messages(delivery_id, people(1001), base_url=BASE_URL, repo=repo)

    assert repo.send_counts(delivery_id).sent == 0


def test_no_recipients_or_a_repeated_recipient_is_refused(repo: FakeDeliveryRepository) -> None:
    delivery_id = register(repo)

    with pytest.raises(InvalidRequest, match="at least one"):
        deliveries.render_messages(delivery_id, [], base_url=BASE_URL, repo=repo)
    with pytest.raises(InvalidRequest, match="'r0' appears more than once"):
        deliveries.render_messages(delivery_id, people(2) + people(1), base_url=BASE_URL, repo=repo)
    assert repo.send_counts(delivery_id).sent == 0


# --- failures ---------------------------------------------------------------------------------


def test_failures_are_counted_once_and_unknown_recipients_reported(repo: FakeDeliveryRepository) -> None:
    # Given a delivery sent to three recipients and proofed to a reviewer
    delivery_id = register(repo)
    deliveries.render_messages(delivery_id, people(3), base_url=BASE_URL, repo=repo)
    deliveries.render_messages(
        delivery_id, [Recipient("reviewer", None, {})], base_url=BASE_URL, proof=True, repo=repo
    )

    # When failures are reported, one of them twice in the same call, then again
    first = deliveries.report_failures(delivery_id, ["r0", "r1", "r0", "reviewer", "stranger"], repo=repo)
    second = deliveries.report_failures(delivery_id, ["r1", "r2"], repo=repo)

    # Then each message fails once; recipients never sent to are reported as unknown
    assert (first.failed, first.already_failed, first.unknown) == (2, (), ("reviewer", "stranger"))
    assert (second.failed, second.already_failed, second.unknown) == (1, ("r1",), ())
    counts = repo.send_counts(delivery_id)
    assert (counts.sent, counts.failed) == (3, 3)


def test_more_than_1000_failures_in_one_call_is_refused(repo: FakeDeliveryRepository) -> None:
    delivery_id = register(repo)

    with pytest.raises(InvalidRequest, match="at most 1000"):
        deliveries.report_failures(delivery_id, [f"r{n}" for n in range(1001)], repo=repo)


# --- small rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("Ann@Example.COM", "example.com"),
        ("a@b@sub.example.org ", "sub.example.org"),
        ("nobody", None),
        ("a@", None),
        (None, None),
    ],
)
def test_the_email_domain_is_lower_cased(email: str | None, domain: str | None) -> None:
    assert deliveries.email_domain(email) == domain


def test_the_tracking_base_url_comes_from_settings_else_from_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = {"host": "api.example.com", "x-forwarded-proto": "http"}
    assert deliveries.tracking_base_url(headers) == "http://api.example.com"
    assert deliveries.tracking_base_url({"host": "api.example.com:8080"}) == "https://api.example.com:8080"
    with pytest.raises(InvalidRequest):
        deliveries.tracking_base_url({"host": "evil.example.com/path?"})

    monkeypatch.setenv("MSGTRACK_TRACKING_BASE_URL", "https://t.example.net/")
    settings.reset_caches()
    assert deliveries.tracking_base_url(headers) == "https://t.example.net"


def test_transaction_chunks_respect_the_item_and_domain_limits() -> None:
    many = [SentMessage(f"r{n}", "example.com", "t") for n in range(250)]
    spread = [SentMessage(f"s{n}", f"d{n}.example", "t") for n in range(120)]

    assert [len(c) for c in chunks_for_transactions(many)] == [99, 99, 52]
    assert [len(c) for c in chunks_for_transactions(spread)] == [50, 50, 20]
    assert list(chain.from_iterable(chunks_for_transactions(many + spread))) == many + spread
