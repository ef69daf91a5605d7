"""The redirect's machine detection: every recorded hit carries a verdict and a client key, never the
full address; the honeypot link answers a neutral page; the operator's settings apply within the cache."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.redirect import detection, handler, tracking
from functions.shared import machine
from functions.shared.tokens import LinkClaims, Signer, signer
from tests.apigw import FakeContext, http_event
from tests.unit.test_redirect import FakeSink, FakeTargets

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


class FakeMachineSettings:
    def __init__(self, document: str | None = None) -> None:
        self.document = document
        self.reads = 0

    def machine_settings(self) -> str | None:
        self.reads += 1
        return self.document


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> FakeSink:
    found = FakeSink()
    monkeypatch.setattr(
        handler, "_targets", tracking.CachedTargets(FakeTargets({("d1", "1"): "https://shop.example/"}))
    )
    monkeypatch.setattr(handler, "_sink", found)
    monkeypatch.setattr(handler, "_detection", detection.CachedDetection(FakeMachineSettings()))
    return found


def call(path: str, method: str = "GET", **kwargs: Any) -> dict[str, Any]:
    return handler.lambda_handler(http_event(method, path, token=None, **kwargs), FakeContext())


def click() -> str:
    return signer().sign(LinkClaims("c", "d1", "r1", "1"))


def pixel() -> str:
    return signer().sign(LinkClaims("o", "d1", "r1"))


def honeypot() -> str:
    return signer().sign(LinkClaims("h", "d1", "r1"))


def test_a_chrome_click_is_a_person_with_a_client_key_and_no_full_address(sink: FakeSink) -> None:
    # When a person clicks in Chrome
    call(f"/r/{click()}", source_ip="198.51.100.23", user_agent=CHROME)
    # Then the event says person, keeps the /24 and a 16-hex client key, never the address
    [event] = sink.events
    assert (event.machine, event.machine_reason) == (None, None)
    assert event.ip == "198.51.100.0"
    assert event.client_key is not None and len(event.client_key) == 16
    assert "198.51.100.23" not in json.dumps({k: str(getattr(event, k)) for k in event.__slots__})


def test_a_python_requests_hit_is_a_bot(sink: FakeSink) -> None:
    call(f"/r/{click()}", source_ip="198.51.100.23", user_agent="python-requests/2.31")
    [event] = sink.events
    assert (event.machine, event.machine_reason) == ("bot", "User-Agent python-requests")


def test_an_open_from_apple_with_the_bare_user_agent_is_apple_mpp_but_a_click_from_there_is_a_person(
    sink: FakeSink,
) -> None:
    call(f"/o/{pixel()}", source_ip="17.58.1.2", user_agent="Mozilla/5.0")
    call(f"/r/{click()}", source_ip="17.58.1.2", user_agent="Mozilla/5.0")
    opened, clicked = sink.events
    assert (opened.machine, opened.machine_reason) == (
        "apple_mpp",
        "open with User-Agent Mozilla/5.0 from 17.0.0.0/8 (Apple, AS714)",
    )
    assert clicked.machine is None


def test_the_client_key_is_one_per_address_and_message(sink: FakeSink) -> None:
    # Given the same address hitting two links of one message, another address, and another message
    call(f"/r/{click()}", source_ip="198.51.100.23")
    call(f"/o/{pixel()}", source_ip="198.51.100.23")
    call(f"/o/{pixel()}", source_ip="198.51.100.24")
    call(f"/o/{signer().sign(LinkClaims('o', 'd1', 'r2'))}", source_ip="198.51.100.23")
    keys = [event.client_key for event in sink.events]
    # Then only the first two share a key
    assert keys[0] == keys[1]
    assert len({keys[0], keys[2], keys[3]}) == 3


def test_the_client_key_secret_is_derived_from_the_signing_key_and_changes_with_it() -> None:
    old, new = Signer("key-one"), Signer("key-two", previous=["key-one"])
    secret = old.derived_key(detection.CLIENT_KEY_PURPOSE)
    assert secret != b"key-one" and len(secret) == 32
    assert new.derived_key(detection.CLIENT_KEY_PURPOSE) != secret
    assert machine.client_key(secret, "d1#r1", "198.51.100.23") != machine.client_key(
        new.derived_key(detection.CLIENT_KEY_PURPOSE), "d1#r1", "198.51.100.23"
    )


def test_the_web_tag_page_view_is_classified_too(sink: FakeSink, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.redirect import web

    class Sites:
        def site(self, site_id: str) -> web.Site | None:
            return web.Site(site_id, ("shop.example",))

    monkeypatch.setattr(handler, "_sites", Sites())
    # Given a browser whose cookie carries a click
    response = call(f"/r/{click()}", source_ip="198.51.100.23")
    cookie = response["cookies"][0].split(";")[0]
    site = signer().sign(LinkClaims("w", "s1", ""))
    # When a headless browser loads the tag with that cookie
    call(
        f"/w/{site}",
        query={"url": "https://shop.example/p"},
        cookies=[cookie],
        source_ip="198.51.100.23",
        user_agent="Mozilla/5.0 HeadlessChrome/120.0",
    )
    # Then the page view is a bot's, keyed to the clicked message
    _, page = sink.events
    assert page.kind == "page"
    assert page.machine == "bot"
    assert page.client_key == sink.events[0].client_key


def test_a_honeypot_hit_answers_a_neutral_page_and_records_a_scanner_hit(sink: FakeSink) -> None:
    # When a scanner follows the message's honeypot link
    response = call(f"/r/{honeypot()}", source_ip="40.92.3.4", user_agent=CHROME)
    # Then it gets a neutral 200 page: no redirect, no cookie
    assert response["statusCode"] == 200
    assert "Location" not in response["headers"] and "cookies" not in response
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    # And the raw event is a scanner's click without a URL, with the window in force
    [event] = sink.events
    assert (event.kind, event.url_id, event.honeypot) == ("click", None, True)
    assert (event.machine, event.machine_reason) == ("scanner", "honeypot link")
    assert event.burst_seconds == 30
    assert event.client_key is not None
    assert event.person_id is None and event.ip == "40.92.3.0"


def test_a_head_on_the_honeypot_records_nothing(sink: FakeSink) -> None:
    response = call(f"/r/{honeypot()}", method="HEAD")
    assert response["statusCode"] == 200
    assert sink.events == []


def test_a_honeypot_token_is_no_open(sink: FakeSink) -> None:
    assert call(f"/o/{honeypot()}")["statusCode"] == 404
    assert sink.events == []


def test_operator_settings_apply_after_the_cache_and_the_window_travels_with_honeypot_hits(
    sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given settings with a custom range and a 90 s window
    source = FakeMachineSettings(
        json.dumps(
            {
                "ranges": [{"cidr": "192.0.2.0/24", "kind": "scanner"}],
                "user_agents": [],
                "honeypot": True,
                "burst_seconds": 90,
            }
        )
    )
    monkeypatch.setattr(handler, "_detection", detection.CachedDetection(source))
    # When hits come from that range
    call(f"/r/{click()}", source_ip="192.0.2.9", user_agent=CHROME)
    call(f"/r/{honeypot()}", source_ip="192.0.2.9", user_agent=CHROME)
    # Then they are machines, and the settings were read once
    first, trap = sink.events
    assert (first.machine, first.machine_reason) == ("scanner", "network 192.0.2.0/24")
    assert trap.burst_seconds == 90
    assert source.reads == 1


def test_with_the_honeypot_off_its_link_records_nothing(
    sink: FakeSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = FakeMachineSettings(json.dumps({"honeypot": False, "burst_seconds": 30}))
    monkeypatch.setattr(handler, "_detection", detection.CachedDetection(source))
    assert call(f"/r/{honeypot()}")["statusCode"] == 200
    assert sink.events == []


def test_the_cache_rereads_after_its_ttl_and_keeps_the_last_settings_when_a_read_fails() -> None:
    clock = [1000.0]
    source = FakeMachineSettings()
    cached = detection.CachedDetection(source, ttl_seconds=60, clock=lambda: clock[0])
    assert cached.current().detector.classify("click", "192.0.2.9", CHROME) == (None, None)
    source.document = json.dumps({"ranges": [{"cidr": "192.0.2.0/24", "kind": "bot"}]})
    clock[0] += 30
    assert cached.current().detector.classify("click", "192.0.2.9", CHROME) == (None, None)
    clock[0] += 31
    assert cached.current().detector.classify("click", "192.0.2.9", CHROME)[0] == "bot"

    def failing() -> str | None:
        raise OSError("throttled")

    source.machine_settings = failing  # type: ignore[method-assign]
    clock[0] += 61
    assert cached.current().detector.classify("click", "192.0.2.9", CHROME)[0] == "bot"


def test_an_unreadable_stored_document_falls_back_to_the_builtin_detection(reliability: Any) -> None:
    for document in ("{", '{"ranges": [{"cidr": "not a network", "kind": "bot"}]}', '{"ranges": 5}'):
        found = detection.detection_of(document)
        reliability.record(
            "Bad input",
            "an unreadable machine-detection settings item at the redirect",
            1,
            "built-in detection, hit recorded",
        )
        assert found.detector.classify("click", "198.51.100.1", "curl/8.0") == ("bot", "User-Agent curl/")
        assert found.honeypot is True


def test_x_forwarded_for_is_ignored_unless_trusted(
    sink: FakeSink, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    # Given a hit whose X-Forwarded-For claims an Apple address, sent from elsewhere
    spoofed = {"x-forwarded-for": "17.58.1.2, 10.0.0.1"}
    # When the stack does not trust the header
    call(f"/o/{pixel()}", source_ip="198.51.100.23", user_agent="Mozilla/5.0", headers=spoofed)
    # Then the connection's address counts
    reliability.record(
        "Security",
        "X-Forwarded-For spoofing an Apple address without trust",
        1,
        "ignored: the connection's address classifies",
    )
    assert sink.events[0].machine is None and sink.events[0].ip == "198.51.100.0"
    # And when it is trusted (behind a CDN), the first entry counts
    monkeypatch.setattr(handler.settings(), "trust_forwarded_for", True)
    call(f"/o/{pixel()}", source_ip="198.51.100.23", user_agent="Mozilla/5.0", headers=spoofed)
    assert sink.events[1].machine == "apple_mpp" and sink.events[1].ip == "17.58.1.0"


@pytest.mark.parametrize("forwarded", ["not-an-address", "", " , 1.2.3.4", "999.1.1.1", "::zz", "1.2.3.4/24"])
def test_a_malformed_client_address_is_recorded_as_no_address(
    sink: FakeSink, monkeypatch: pytest.MonkeyPatch, forwarded: str, reliability: Any
) -> None:
    monkeypatch.setattr(handler.settings(), "trust_forwarded_for", True)
    response = call(f"/r/{click()}", source_ip="198.51.100.23", headers={"x-forwarded-for": forwarded})
    reliability.record(
        "Bad input",
        "a malformed client address (X-Forwarded-For, trusted)",
        1,
        "hit recorded as a person without address or client key",
    )
    assert response["statusCode"] == 302
    [event] = sink.events
    if forwarded.strip(" ,") == "" or forwarded.startswith(" ,"):
        assert event.ip == "198.51.100.0"  # an empty first entry falls back to the connection
    else:
        assert (event.ip, event.client_key, event.machine) == (None, None, None)


def test_the_redirect_reads_the_settings_item_the_models_write() -> None:
    from functions.redirect import store
    from functions.shared import models

    assert (store.SETTINGS_PK, store.MACHINE_DETECTION_SK) == (
        models.SETTINGS_PK,
        models.MACHINE_DETECTION_SK,
    )
    assert models.MachineDetectionSettingsModel.document.attr_name == "document"


@pytest.mark.parametrize(("raw", "trusted"), [("true", True), ("1", True), ("false", False), ("", False)])
def test_trust_in_x_forwarded_for_is_a_setting(
    monkeypatch: pytest.MonkeyPatch, raw: str, trusted: bool
) -> None:
    from functions.shared.settings import Settings

    monkeypatch.setenv("MSGTRACK_TRUST_FORWARDED_FOR", raw)
    assert Settings.from_env().trust_forwarded_for is trusted


def test_a_huge_user_agent_is_classified_on_what_a_raw_event_keeps(reliability: Any) -> None:
    # Given a fresh detection and hits with ever new 10 KB User-Agents
    found = detection.default_detection()
    for n in range(50):
        judged = detection.judge(
            found, signer(), "click", "d1", "r1", "198.51.100.1", f"curl/8.{n} " + "x" * 10_000
        )
        assert judged.machine == "bot"
    reliability.record(
        "Bad input",
        "10 KB User-Agents at the redirect's machine detection",
        50,
        "classified on the first 512 characters; the verdict cache keeps no more",
    )
    # Then the detector's cache keeps no User-Agent longer than a raw event does
    assert max(len(agent) for agent in found.detector._agent_verdicts) == 512
