"""The redirect function: a click or an open records one raw event and answers; bad tokens are 404s."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.redirect import handler, tracking
from functions.shared.raw_events import RawEvent
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext, http_event


class FakeTargets:
    def __init__(self, targets: dict[tuple[str, str], str]) -> None:
        self.targets = targets
        self.reads = 0

    def target(self, delivery_id: str, url_id: str) -> tracking.Target | None:
        self.reads += 1
        url = self.targets.get((delivery_id, url_id))
        return tracking.Target(url) if url else None


class FakeSink:
    def __init__(self) -> None:
        self.events: list[RawEvent] = []

    def record(self, event: RawEvent) -> None:
        self.events.append(event)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeTargets, FakeSink]:
    targets = FakeTargets({("d1", "1"): "https://shop.example/p/{{ sku }}?ref=mail#top"})
    sink = FakeSink()
    monkeypatch.setattr(handler, "_targets", tracking.CachedTargets(targets))
    monkeypatch.setattr(handler, "_sink", sink)
    return targets, sink


def call(path: str, **kwargs: Any) -> dict[str, Any]:
    return handler.lambda_handler(http_event("GET", path, token=None, **kwargs), FakeContext())


def click_token(**fields: str) -> str:
    return signer().sign(LinkClaims("c", "d1", "r1", "1", fields=fields))


def test_a_click_redirects_to_the_personalized_target_and_records_one_event(fakes) -> None:
    _, sink = fakes
    # Given a signed click link carrying a personalization value
    # When a recipient follows it
    response = call(f"/r/{click_token(sku='A 1/é')}", source_ip="198.51.100.23")
    # Then they land on the exact target, query and fragment kept, the value encoded
    assert response["statusCode"] == 302
    assert response["headers"]["Location"] == "https://shop.example/p/A%201%2F%C3%A9?ref=mail#top"
    # And one raw event is recorded with a truncated IP and a new person cookie
    [event] = sink.events
    assert (event.kind, event.delivery_id, event.recipient_id, event.url_id) == ("click", "d1", "r1", "1")
    assert event.ip == "198.51.100.0"
    [cookie] = response["cookies"]
    assert cookie.startswith(f"mtpid={event.person_id}.")
    # sent cross-site too, so that the web-tracking tag on the shop's pages gets it
    for attribute in ("Max-Age=31536000", "HttpOnly", "SameSite=None", "Secure", "Path=/"):
        assert attribute in cookie


def _cookie_value(response: dict[str, Any]) -> str:
    [cookie] = response["cookies"]
    return cookie.split(";")[0].partition("=")[2]


def test_every_click_sets_the_person_cookie_with_that_click_as_the_latest(fakes) -> None:
    _, sink = fakes
    # Given a browser whose cookie names a person and an older click
    older = signer().sign(LinkClaims("l", "d0", "r0", "9", fields={"t": "1"}))
    # When it clicks a link of delivery d1 (a proof message)
    token = signer().sign(LinkClaims("c", "d1", "r1", "1", proof=True))
    response = call(f"/r/{token}", cookies=[f"mtpid=abcdefgh12345678.{older}"])
    # Then the person id is kept and the cookie now carries this click, signed
    person, _, latest = _cookie_value(response).partition(".")
    assert person == "abcdefgh12345678" == sink.events[0].person_id
    claims = signer().verify(latest)
    assert (claims.kind, claims.delivery_id, claims.recipient_id, claims.url_id, claims.proof) == (
        "l",
        "d1",
        "r1",
        "1",
        True,
    )
    assert int(claims.fields["t"]) == int(sink.events[0].at.timestamp())


def test_a_cookie_from_before_web_tracking_keeps_its_person_id(fakes) -> None:
    _, sink = fakes
    response = call(f"/r/{click_token()}", cookies=["mtpid=abcdefgh12345678", "other=1"])
    assert sink.events[0].person_id == "abcdefgh12345678"
    assert _cookie_value(response).startswith("abcdefgh12345678.")


def test_a_malformed_person_id_is_replaced(fakes) -> None:
    _, sink = fakes
    response = call(f"/r/{click_token()}", cookies=["mtpid=no!.x.y.z"])
    person = sink.events[0].person_id
    assert person != "no!" and person is not None and len(person) == 22
    assert _cookie_value(response).startswith(f"{person}.")


def test_over_plain_http_the_cookie_is_same_site_lax(fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a local run over plain http (SameSite=None would need Secure, which http cannot carry)
    monkeypatch.setenv("MSGTRACK_COOKIE_SECURE", "false")
    [cookie] = call(f"/r/{click_token()}")["cookies"]
    assert "SameSite=Lax" in cookie and "Secure" not in cookie


def test_an_open_answers_a_transparent_gif_that_is_never_cached(fakes) -> None:
    _, sink = fakes
    token = signer().sign(LinkClaims("o", "d1", "r1", proof=True))
    response = call(f"/o/{token}")
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "image/gif"
    assert "no-store" in response["headers"]["Cache-Control"]
    assert base64.b64decode(response["body"]).startswith(b"GIF89a")
    [event] = sink.events
    assert event.kind == "open" and event.proof and event.url_id is None


@pytest.mark.parametrize(
    "path",
    [
        "/r/not-a-token",
        "/r/",
        "/r/a.b.c",
        "/r/" + "x" * 10_000,
        "/o/%00%ff",
        "/x/anything",
    ],
)
def test_a_bad_token_is_a_404_page_without_location_and_records_nothing(fakes, path: str) -> None:
    _, sink = fakes
    response = call(path)
    assert response["statusCode"] == 404
    assert "Location" not in response["headers"]
    assert "text/html" in response["headers"]["Content-Type"]
    assert sink.events == []


def test_a_tampered_token_is_a_404(fakes) -> None:
    token = click_token()
    kid, payload, mac = token.split(".")
    response = call(f"/r/{kid}.{payload[:-2]}AA.{mac}")
    assert response["statusCode"] == 404 and "Location" not in response["headers"]


def test_an_open_token_is_not_a_click_and_an_unknown_url_is_a_404(fakes) -> None:
    open_token = signer().sign(LinkClaims("o", "d1", "r1"))
    unknown = signer().sign(LinkClaims("c", "d1", "r1", "99"))
    assert call(f"/r/{open_token}")["statusCode"] == 404
    assert call(f"/r/{unknown}")["statusCode"] == 404


def test_a_warm_container_reads_each_target_once(fakes) -> None:
    targets, sink = fakes
    for _ in range(5):
        call(f"/r/{click_token()}")
    assert targets.reads == 1 and len(sink.events) == 5


def test_a_head_request_answers_without_recording(fakes) -> None:
    _, sink = fakes
    response = handler.lambda_handler(http_event("HEAD", f"/r/{click_token()}", token=None), FakeContext())
    assert response["statusCode"] == 302 and sink.events == []
    assert "cookies" not in response  # a HEAD is no click: it does not become the latest one


def test_a_failing_store_still_answers_the_recipient(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def target(self, delivery_id: str, url_id: str) -> None:
            raise RuntimeError("DynamoDB unavailable")

        def record(self, event: RawEvent) -> None:
            raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(handler, "_targets", Broken())
    monkeypatch.setattr(handler, "_sink", Broken())
    assert call(f"/o/{signer().sign(LinkClaims('o', 'd1', 'r1'))}")["statusCode"] == 200
    assert call(f"/r/{click_token()}")["statusCode"] == 404


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:abcd:12::1", "2001:db8:abcd::"),
        ("::ffff:203.0.113.77", "::"),
        ("10.0.0.1", "10.0.0.0"),
        ("1.2.3", None),
        ("256.1.1.1", None),
        ("2001:db8::g", None),
        ("", None),
        ("junk", None),
        (None, None),
    ],
)
def test_client_addresses_are_truncated(address: str | None, kept: str | None) -> None:
    assert tracking.truncate_ip(address) == kept


def test_time_is_recorded_in_utc(fakes) -> None:
    _, sink = fakes
    call(f"/r/{click_token()}")
    assert sink.events[0].at.tzinfo is not None
    assert abs((datetime.now(UTC) - sink.events[0].at).total_seconds()) < 60


# --- track() and its helpers, as the handler calls them -------------------------------------------

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
LONG_UA = "Mozilla/5.0 " + "x" * 600


def _track(token: str, kind: str = "click", **hit: Any) -> tuple[tracking.Answer, FakeSink]:
    sink = FakeSink()
    targets = FakeTargets({("d1", "1"): "https://shop.example/"})
    fields: dict[str, Any] = {
        "user_agent": "UA/1",
        "source_ip": "198.51.100.23",
        "person_cookie": None,
        **hit,
    }
    answer = tracking.track(tracking.Hit(token, kind, AT, **fields), signer(), targets, sink)
    return answer, sink


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        ("not-a-token", "click"),  # not ours
        (signer().sign(LinkClaims("o", "d1", "r1")), "click"),  # an open token on /r
        (signer().sign(LinkClaims("c", "d1", "r1", "1")), "open"),  # a click token on /o
        (signer().sign(LinkClaims("c", "d1", "r1", "9")), "click"),  # a URL the delivery does not have
    ],
)
def test_track_answers_404_and_records_nothing_for_what_it_cannot_use(token: str, kind: str) -> None:
    answer, sink = _track(token, kind)
    assert (answer.status, answer.location, answer.person_cookie) == (404, None, None)
    assert sink.events == []


def test_track_records_a_honeypot_hit_with_the_hits_own_facts_and_the_clients_key() -> None:
    # Given a client that clicks a proof message's link, then follows its honeypot link, with a long
    # User-Agent
    _, clicked_sink = _track(signer().sign(LinkClaims("c", "d1", "r1", "1", proof=True)), user_agent=LONG_UA)
    _, sink = _track(signer().sign(LinkClaims("h", "d1", "r1", proof=True)), user_agent=LONG_UA)
    [clicked], [trap] = clicked_sink.events, sink.events
    # Then the honeypot hit is an event of its own naming the message, its time and the User-Agent cut as
    # a click's is
    assert trap.event_id and trap.event_id != clicked.event_id
    assert (trap.kind, trap.delivery_id, trap.recipient_id, trap.url_id, trap.at, trap.proof) == (
        "click",
        "d1",
        "r1",
        None,
        AT,
        True,
    )
    assert trap.user_agent == LONG_UA[: tracking.MAX_USER_AGENT]
    # And it carries the client's key on that message, the one the burst rule matches the click by
    assert trap.client_key == clicked.client_key


def test_track_records_a_honeypot_hit_without_a_user_agent() -> None:
    # When a client that sends no User-Agent follows a honeypot link
    answer, sink = _track(signer().sign(LinkClaims("h", "d1", "r1")), user_agent=None)
    # Then the hit is recorded, without a User-Agent
    [trap] = sink.events
    assert (answer.status, trap.honeypot, trap.user_agent) == (tracking.HONEYPOT, True, None)


def test_track_records_a_click_with_the_hits_own_facts() -> None:
    answer, sink = _track(signer().sign(LinkClaims("c", "d1", "r1", "1")), user_agent=LONG_UA)
    [event] = sink.events
    assert (answer.status, answer.location) == (302, "https://shop.example/")
    assert event.event_id and event.kind == "click" and event.at == AT
    assert event.user_agent == LONG_UA[: tracking.MAX_USER_AGENT] and len(event.user_agent) == 512
    assert (event.ip, event.person_id) == ("198.51.100.0", answer.person_cookie.split(".")[0])


def test_track_records_an_open_without_location_or_cookie_and_without_a_user_agent_if_none() -> None:
    answer, sink = _track(signer().sign(LinkClaims("o", "d1", "r1")), "open", user_agent=None)
    [event] = sink.events
    assert (answer.status, answer.location, answer.person_cookie) == (200, None, None)
    assert event.user_agent is None
    _, again = _track(signer().sign(LinkClaims("o", "d1", "r1")), "open", user_agent="")
    assert again.events[0].user_agent is None


def test_every_recorded_hit_has_its_own_event_id() -> None:
    token = signer().sign(LinkClaims("o", "d1", "r1"))
    ids = {_track(token, "open")[1].events[0].event_id for _ in range(20)}
    assert len(ids) == 20 and None not in ids


@pytest.mark.parametrize(
    ("person", "kept"),
    [
        ("abcdefg", False),  # 7 characters
        ("abcdefgh", True),  # 8
        ("a" * 64, True),
        ("a" * 65, False),
        ("abcd-efgh", False),  # not alphanumeric
        ("", False),
    ],
)
def test_a_person_id_from_the_cookie_is_kept_only_if_8_to_64_letters_or_digits(
    person: str, kept: bool
) -> None:
    assert tracking.read_person_cookie(f"{person}.latest") == (person if kept else None, "latest")


def test_the_target_cache_keeps_each_url_for_300_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000.0]
    monkeypatch.setattr(tracking.time, "monotonic", lambda: now[0])
    source = FakeTargets({("d1", "1"): "https://a.example/", ("d1", "2"): "https://b.example/"})
    cache = tracking.CachedTargets(source)
    # Two URLs are two entries, each read once
    assert cache.target("d1", "1").url == "https://a.example/"
    assert cache.target("d1", "2").url == "https://b.example/"
    assert cache.target("d1", "1").url == "https://a.example/"
    assert source.reads == 2
    # Until 300 s have passed (not at 300 s exactly), then read again
    now[0] += 299.5
    cache.target("d1", "1")
    assert source.reads == 2
    now[0] += 0.5
    cache.target("d1", "1")
    assert source.reads == 3


def test_the_target_cache_starts_over_once_it_holds_10000_urls() -> None:
    source = FakeTargets({})
    cache = tracking.CachedTargets(source)
    for n in range(10_000):
        cache.target("d1", str(n))
    cache.target("d1", "0")
    assert source.reads == 10_000  # all 10,000 kept
    cache.target("d1", "new")  # the 10,001st empties the cache first
    cache.target("d1", "0")
    assert source.reads == 10_002


def test_a_hit_records_unless_told_otherwise() -> None:
    assert tracking.Hit("t", "open", AT, "UA/1", None, None).record is True
    assert tracking.Hit("t", "open", AT, "UA/1", None, None).user_agent == "UA/1"
