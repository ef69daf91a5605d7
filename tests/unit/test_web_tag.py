"""The web-tracking tag: a visit or purchase on an allowed site, after a click, is one raw event."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from functions.redirect import handler, store, tracking, web
from functions.shared import fallback, models, settings
from functions.shared.currencies import ISO_4217
from functions.shared.raw_events import RawEvent
from functions.shared.settings import Settings, SettingsError
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext, http_event

SHOP = "https://shop.example.com/sale?x=1"


class FakeTargets:
    def target(self, delivery_id: str, url_id: str) -> tracking.Target | None:
        return tracking.Target("https://shop.example.com/") if (delivery_id, url_id) == ("d1", "1") else None


class FakeSites:
    def __init__(self, sites: dict[str, tuple[str, ...]]) -> None:
        self.sites = sites
        self.reads = 0

    def site(self, site_id: str) -> web.Site | None:
        self.reads += 1
        domains = self.sites.get(site_id)
        return web.Site(site_id, domains) if domains is not None else None


class FakeSink:
    def __init__(self) -> None:
        self.events: list[RawEvent] = []

    def record(self, event: RawEvent) -> None:
        self.events.append(event)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> FakeSink:
    events = FakeSink()
    monkeypatch.setattr(handler, "_targets", tracking.CachedTargets(FakeTargets()))
    monkeypatch.setattr(handler, "_sink", events)
    monkeypatch.setattr(handler, "_sites", FakeSites({"s1": ("shop.example.com",)}))
    return events


def site_token(site_id: str = "s1") -> str:
    return signer().sign(LinkClaims("w", site_id, ""))


def click_cookie(proof: bool = False) -> str:
    """The person cookie a browser holds after clicking link 1 of delivery d1 for recipient r1."""
    token = signer().sign(LinkClaims("c", "d1", "r1", "1", proof=proof))
    [cookie] = call("GET", f"/r/{token}")["cookies"]
    return cookie.split(";")[0]


def latest_cookie(seconds_ago: float, person: str = "abcdefgh12345678", kind: str = "l") -> str:
    clicked = str(int(time.time() - seconds_ago))
    latest = signer().sign(LinkClaims(kind, "d1", "r1", "1", fields={"t": clicked}))
    return f"mtpid={person}.{latest}"


def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    return handler.lambda_handler(http_event(method, path, token=None, **kwargs), FakeContext())


def tag(
    query: dict[str, str] | None = None,
    cookie: str | None = None,
    method: str = "GET",
    token: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    return call(
        method,
        f"/w/{token or site_token()}",
        query=query,
        cookies=[cookie] if cookie else None,
        **kwargs,
    )


def is_pixel(response: dict[str, Any]) -> bool:
    return (
        response["statusCode"] == 200
        and response["headers"]["Content-Type"] == "image/gif"
        and "no-store" in response["headers"]["Cache-Control"]
        and base64.b64decode(response["body"]).startswith(b"GIF89a")
    )


def test_a_page_view_after_a_click_is_attributed_to_that_click(sink: FakeSink) -> None:
    # Given a browser that clicked link 1 of delivery d1 (recipient r1)
    cookie = click_cookie()
    clicked = sink.events.pop()
    # When the shop's page runs the tag
    response = tag({"type": "page", "url": SHOP}, cookie, source_ip="198.51.100.23", user_agent="UA/1")
    # Then the pixel answers, and one page event names the click's delivery, recipient and link
    assert is_pixel(response)
    [event] = sink.events
    assert (event.kind, event.delivery_id, event.recipient_id, event.url_id) == ("page", "d1", "r1", None)
    assert (event.via_url_id, event.site_id, event.page_url) == ("1", "s1", SHOP)
    assert (event.person_id, event.ip, event.user_agent) == (clicked.person_id, "198.51.100.0", "UA/1")
    assert (event.amount, event.currency, event.proof) == (None, None, False)
    assert event.event_id != clicked.event_id


def test_a_transaction_records_its_amount_and_upper_case_currency(sink: FakeSink) -> None:
    cookie = click_cookie(proof=True)
    sink.events.clear()
    response = tag({"type": "transaction", "url": SHOP, "amount": "19.90", "currency": "eur"}, cookie)
    assert is_pixel(response)
    [event] = sink.events
    assert (event.kind, event.amount, event.currency, event.via_url_id) == (
        "transaction",
        "19.90",
        "EUR",
        "1",
    )
    assert event.proof  # the latest click was a proof's: its visits are not counted either


@pytest.mark.parametrize(
    ("page", "recorded"),
    [
        ("https://shop.example.com/", True),
        ("https://www.shop.example.com/cart", True),
        ("https://SHOP.example.com:8443/x", True),
        ("https://evil.example.org/?shop.example.com", False),
        ("https://notshop.example.com/", False),
        ("https://shop.example.com.evil.org/", False),
        ("not a url", False),
        ("http://[::1/", False),
        # read as a browser reads them: the host it would visit decides
        ("https://evil.example\\@shop.example.com/login", False),
        ("javascript://shop.example.com/%0aalert(document.cookie)", False),
        ("https://evil.example#@shop.example.com", False),
        ("https://shop.example.com:443@evil.example/", False),
        ("https://evil\t.exa\nmple/?shop.example.com", False),
        ("https://sh\u043ep.example.com/", False),  # a Cyrillic o (U+043E)
        ("//shop.example.com/", False),  # no scheme: no page
        ("data:text/html,https://shop.example.com/", False),
        ("blob:https://shop.example.com/0b5c", False),
        ("HTTPS://SHOP.EXAMPLE.COM./", True),
        ("https://%73hop.example.com/", True),
        ("https://\uff53hop.example.com/", True),  # a full-width "s", which browsers map to "s"
        ("https://user@shop.example.com/", True),
        ("https:\\\\www.shop.example.com\\cart", True),
    ],
)
def test_only_pages_of_the_sites_domains_and_their_subdomains_are_recorded(
    sink: FakeSink, page: str, recorded: bool, reliability: Any
) -> None:
    cookie = click_cookie()
    sink.events.clear()
    assert is_pixel(tag({"type": "page", "url": page}, cookie))
    assert len(sink.events) == (1 if recorded else 0)
    reliability.record(
        "Bad input",
        "web tag: page URLs off the site's domains as a browser reads them (backslash, user info, "
        "tabs, look-alike and percent-encoded hosts, javascript:/data:/blob:, scheme-relative)",
        1,
        "pixel; recorded only when a browser would be on one of the site's domains",
    )


def test_without_a_url_parameter_the_referer_then_the_origin_names_the_page(sink: FakeSink) -> None:
    cookie = click_cookie()
    sink.events.clear()
    tag({"type": "page"}, cookie, headers={"Referer": "https://www.shop.example.com/p/1"})
    tag({"type": "page"}, cookie, headers={"Origin": "https://shop.example.com"})
    tag({"type": "page"}, cookie, headers={"Referer": "https://evil.example.org/"})
    tag({"type": "page"}, cookie)  # no page at all
    assert [e.page_url for e in sink.events] == [
        "https://www.shop.example.com/p/1",
        "https://shop.example.com",
    ]


def test_a_bare_pixel_without_type_counts_a_page_view(sink: FakeSink) -> None:
    cookie = click_cookie()
    sink.events.clear()
    assert is_pixel(tag({"url": SHOP}, cookie))
    assert [e.kind for e in sink.events] == ["page"]


def test_a_long_page_url_is_cut_to_1024_characters(sink: FakeSink) -> None:
    cookie = click_cookie()
    sink.events.clear()
    tag({"url": SHOP + "&q=" + "x" * 5000}, cookie)
    assert sink.events[0].page_url == (SHOP + "&q=" + "x" * 5000)[:1024]


@pytest.mark.parametrize(
    "cookie",
    [
        None,  # never clicked in this browser
        "mtpid=abcdefgh12345678",  # a cookie from before web tracking: a person, no latest click
        "mtpid=abcdefgh12345678.",
        "mtpid=abcdefgh12345678.not.a.token",
        "mtpid=no.",
    ],
)
def test_a_visitor_without_a_latest_click_is_not_recorded(sink: FakeSink, cookie: str | None) -> None:
    assert is_pixel(tag({"type": "page", "url": SHOP}, cookie))
    assert sink.events == []


def test_a_tampered_latest_click_is_not_recorded(sink: FakeSink) -> None:
    person, _, latest = click_cookie().partition(".")
    sink.events.clear()
    kid, payload, mac = latest.split(".")
    forged_claims = signer().sign(LinkClaims("l", "d2", "r9", "1", fields={"t": str(int(time.time()))}))
    forged = f"{kid}.{forged_claims.split('.')[1]}.{mac}"  # someone else's click under this MAC
    assert is_pixel(tag({"url": SHOP}, f"{person}.{forged}"))
    # a MAC changed in its first character, whose 6 bits all count (its last ones were "AA" at times,
    # and the last character's low bits are padding, so changing them may change nothing)
    tampered = ("B" if mac[0] == "A" else "A") + mac[1:]
    assert is_pixel(tag({"url": SHOP}, f"{person}.{kid}.{payload}.{tampered}"))
    # nor claims written by the visitor with no signature, or with a part of a real one
    assert is_pixel(tag({"url": SHOP}, f"{person}.{kid}.{forged_claims.split('.')[1]}."))
    assert is_pixel(tag({"url": SHOP}, f"{person}.{kid}.{forged_claims.split('.')[1]}.{mac[:2]}"))
    # nor a click token in place of a latest click (it has no time)
    assert is_pixel(tag({"url": SHOP}, f"{person}.{signer().sign(LinkClaims('c', 'd1', 'r1', '1'))}"))
    assert sink.events == []


def test_a_click_older_than_the_window_is_not_recorded(
    sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = 86_400
    # Given the default window of 7 days
    tag({"url": SHOP}, latest_cookie(6 * day))
    tag({"url": SHOP}, latest_cookie(8 * day))
    tag({"url": SHOP}, latest_cookie(-day))  # a click "tomorrow" is not believed either
    assert len(sink.events) == 1
    # When the window is set to 1 day, Then a click 2 days ago no longer counts
    monkeypatch.setenv("MSGTRACK_WEB_ATTRIBUTION_DAYS", "1")
    settings.reset_caches()
    sink.events.clear()
    tag({"url": SHOP}, latest_cookie(2 * day))
    tag({"url": SHOP}, latest_cookie(day - 60))
    assert len(sink.events) == 1


def test_the_attribution_window_setting_defaults_to_7_days_and_is_at_least_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.from_env().web_attribution_days == 7
    monkeypatch.setenv("MSGTRACK_WEB_ATTRIBUTION_DAYS", "0")
    with pytest.raises(SettingsError, match="MSGTRACK_WEB_ATTRIBUTION_DAYS"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"type": "visit"}, "type must be page or transaction"),
        ({"type": "transaction", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "ten", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "-1", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "1.234", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "1e3", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "10"}, "currency"),
        ({"type": "transaction", "amount": "10", "currency": "euro"}, "currency"),
        ({"type": "transaction", "amount": "10", "currency": "E1R"}, "currency"),
        # absurd amounts: above the maximum (10,000,000 by default), or no plain decimal at all
        ({"type": "transaction", "amount": "10000000.01", "currency": "EUR"}, "at most 10000000"),
        ({"type": "transaction", "amount": "999999999999999", "currency": "EUR"}, "at most 10000000"),
        ({"type": "transaction", "amount": "1234567890123456", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "NaN", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "Infinity", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "1E+400", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "0x10", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "+10", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "1_000", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "12,50", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": "\uff11\uff12", "currency": "EUR"}, "amount"),  # full-width digits
        ({"type": "transaction", "amount": "\u0661\u0662", "currency": "EUR"}, "amount"),  # Arabic-Indic
        ({"type": "transaction", "amount": "10.", "currency": "EUR"}, "amount"),
        ({"type": "transaction", "amount": ".5", "currency": "EUR"}, "amount"),
        # three letters, but no ISO 4217 code
        ({"type": "transaction", "amount": "10", "currency": "XYZ"}, "ISO 4217"),
        ({"type": "transaction", "amount": "10", "currency": "BTC"}, "ISO 4217"),
        ({"type": "transaction", "amount": "10", "currency": "HRK"}, "ISO 4217"),  # withdrawn in 2023
        (
            {"type": "transaction", "amount": "10", "currency": "\u0395UR"},
            "ISO 4217",
        ),  # a Greek capital epsilon
    ],
)
def test_a_malformed_tag_request_is_a_400_saying_why(
    sink: FakeSink, query: dict[str, str], message: str, reliability: Any
) -> None:
    reliability.record(
        "Bad input",
        "web tag: absurd transactions (above the configured maximum, NaN, Infinity, exponents, signs, "
        "too many digits, non-ASCII digits, currencies that are not ISO 4217 codes)",
        1,
        "400 saying why; nothing recorded",
    )
    response = tag({**query, "url": SHOP}, click_cookie())
    assert response["statusCode"] == 400
    assert response["headers"]["Content-Type"] == "text/plain; charset=utf-8"
    assert message in response["body"]
    assert [e.kind for e in sink.events] == ["click"]  # the click only


@pytest.mark.parametrize("amount", ["0", "10", "10.5", "12.50", "000001.00", "10000000", "10000000.00"])
def test_amounts_with_at_most_two_decimals_are_accepted(sink: FakeSink, amount: str) -> None:
    tag({"type": "transaction", "amount": amount, "currency": "USD", "url": SHOP}, click_cookie())
    assert sink.events[-1].amount == amount


@pytest.mark.parametrize("currency", ["EUR", "usd", "Jpy", " CHF ", "XAU", "ZWG", "XCG"])
def test_iso_4217_codes_in_any_case_are_accepted_upper_cased(sink: FakeSink, currency: str) -> None:
    tag({"type": "transaction", "amount": "1", "currency": currency, "url": SHOP}, click_cookie())
    assert sink.events[-1].currency == currency.strip().upper()


def test_the_maximum_amount_is_configured(sink: FakeSink, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a maximum of 500 per transaction
    monkeypatch.setenv("MSGTRACK_MAX_TRANSACTION_AMOUNT", "500")
    settings.reset_caches()
    cookie = click_cookie()
    sink.events.clear()
    # When transactions of 500.00 and 500.01 are tagged
    accepted = tag({"type": "transaction", "amount": "500.00", "currency": "EUR", "url": SHOP}, cookie)
    refused = tag({"type": "transaction", "amount": "500.01", "currency": "EUR", "url": SHOP}, cookie)
    # Then the first is recorded and the second refused, saying the maximum
    assert is_pixel(accepted) and [e.amount for e in sink.events] == ["500.00"]
    assert refused["statusCode"] == 400 and "at most 500" in refused["body"]


def test_the_maximum_amount_setting_defaults_to_ten_million_and_is_at_least_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.from_env().max_transaction_amount == 10_000_000
    for bad in ("0", "-5", "1e6", "lots"):
        monkeypatch.setenv("MSGTRACK_MAX_TRANSACTION_AMOUNT", bad)
        with pytest.raises(SettingsError, match="MSGTRACK_MAX_TRANSACTION_AMOUNT"):
            Settings.from_env()


def test_the_currency_list_is_iso_4217_list_one() -> None:
    assert len(ISO_4217) == 182
    assert {"EUR", "USD", "JPY", "CHF", "GBP", "XAU", "XXX", "ZWG", "XCG"} <= ISO_4217
    assert not {"HRK", "BTC", "EURO", "eur", "DEM"} & ISO_4217
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in ISO_4217)


def test_a_head_request_answers_without_recording(sink: FakeSink) -> None:
    cookie = click_cookie()
    sink.events.clear()
    assert is_pixel(tag({"url": SHOP}, cookie, method="HEAD"))
    assert sink.events == []


def _claims_of(body: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def _bad_site_tokens() -> list[str]:
    good = site_token()
    kid, payload, mac = good.split(".")
    return [
        f"{kid}.{payload}.{mac[:-2]}AA",  # tampered
        f"{kid}.{_claims_of(['w', 's1', '', ''])}.",  # forged, with no signature at all
        f"{kid}.{payload}.{mac[:3]}",  # the first characters of the signature only
        "not-a-token",
        "",
        signer().sign(LinkClaims("c", "s1", "r1", "1")),  # a click token is not a site token
        signer().sign(LinkClaims("w", "s-deleted", "")),  # signed, but the site does not exist (any more)
    ]


@pytest.mark.parametrize("index", range(7))
def test_a_bad_or_unknown_site_token_is_a_404_and_records_nothing(sink: FakeSink, index: int) -> None:
    cookie = click_cookie()
    sink.events.clear()
    token = _bad_site_tokens()[index]
    for path in (f"/w/{token}", f"/w/{token}/tag.js"):
        response = call("GET", path, query={"url": SHOP}, cookies=[cookie])
        assert response["statusCode"] == 404
        assert "Location" not in response["headers"]
    assert sink.events == []


def test_a_forged_token_is_a_404_even_with_malformed_parameters(sink: FakeSink) -> None:
    # Given a token that is not ours and a transaction without an amount
    token = _bad_site_tokens()[0]
    # When the tag is requested, Then the token decides first: 404, nothing said about the parameters
    response = call("GET", f"/w/{token}", query={"type": "transaction", "currency": "EUR"})
    assert response["statusCode"] == 404
    assert sink.events == []


def test_the_script_variant_loads_the_pixel_and_offers_transactions(sink: FakeSink) -> None:
    response = call("GET", f"/w/{site_token()}/tag.js")
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/javascript; charset=utf-8"
    assert response["headers"]["Cache-Control"] == "public, max-age=300"
    script = response["body"]
    assert "document.currentScript" in script and "/tag\\.js" in script  # the pixel is its own address
    assert "type=page" in script and "location.href" in script
    assert "msgtrack" in script and "transaction=function(amount,currency)" in script
    assert sink.events == []  # loading the script records nothing: its pixel request does


def test_a_warm_container_reads_each_site_once_in_a_while() -> None:
    sites = FakeSites({"s1": ("shop.example.com",)})
    cached = web.CachedSites(sites)
    assert cached.site("s1") == web.Site("s1", ("shop.example.com",))
    assert cached.site("s1") is not None and cached.site("nope") is None and cached.site("nope") is None
    assert sites.reads == 2


def test_recorded_web_events_are_counted_in_the_emf_document(
    sink: FakeSink, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cookie = click_cookie()
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    tag({"type": "page", "url": SHOP}, cookie)
    tag({"type": "page", "url": "https://evil.example.org/"}, cookie)  # not recorded, not counted
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d.get("WebEvents") for d in documents] == [[1.0]]


def test_the_redirect_names_the_same_sites_and_queue_as_the_shared_modules() -> None:
    assert web.SITES_PK == models.SITES_PK
    assert store.FALLBACK_QUEUE_URL_ENV == fallback.QUEUE_URL_ENV
