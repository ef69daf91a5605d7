"""Signed link tokens: round trips, tampering, rotation."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.shared.errors import InvalidToken
from functions.shared.tokens import MAX_TOKEN_LENGTH, LinkClaims, Signer, key_id

KEY = "k" * 32
OLD_KEY = "o" * 32

claims_strategy = st.builds(
    LinkClaims,
    kind=st.sampled_from(["c", "o", "w", "l"]),
    delivery_id=st.text(min_size=1, max_size=20),
    recipient_id=st.text(min_size=1, max_size=60),
    url_id=st.just("7"),
    proof=st.booleans(),
    fields=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=3),
)


@given(claims_strategy)
def test_a_signed_token_verifies_to_the_same_claims(claims: LinkClaims) -> None:
    signer = Signer(KEY)
    token = signer.sign(claims)
    assert signer.verify(token) == claims
    assert all(c.isalnum() or c in "-_." for c in token)  # URL-safe as is


def test_a_click_token_is_compact() -> None:
    token = Signer(KEY).sign(LinkClaims("c", "d7k2m9x4q1ab", "customer-000123", "12"))
    assert len(token) < 90


def test_any_string_the_signer_did_not_produce_is_an_invalid_token(reliability: Any) -> None:
    tried = 0

    @given(st.text(max_size=300))
    def verify(text: str) -> None:
        nonlocal tried
        tried += 1
        with pytest.raises(InvalidToken):
            Signer(KEY).verify(text)

    verify()
    reliability.record(
        "Security",
        "generated strings verified as link tokens (hypothesis)",
        tried,
        "InvalidToken every time: none redirects",
    )


def test_a_tampered_payload_or_signature_is_rejected() -> None:
    signer = Signer(KEY)
    kid, payload, mac = signer.sign(LinkClaims("c", "d1", "r1", "1")).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(["c", "d1", "r2", "1"]).encode()).decode().rstrip("=")
    for token in (f"{kid}.{forged}.{mac}", f"{kid}.{payload}.{mac[:-1]}A", f"{kid}.{payload}", "x" * 5000):
        with pytest.raises(InvalidToken):
            signer.verify(token)


def test_tokens_signed_with_the_previous_key_still_verify_during_rotation() -> None:
    old_token = Signer(OLD_KEY).sign(LinkClaims("o", "d1", "r1"))
    assert Signer(KEY, previous=(OLD_KEY,)).verify(old_token).recipient_id == "r1"
    with pytest.raises(InvalidToken):
        Signer(KEY).verify(old_token)  # once the old key is dropped, its links stop


def test_a_token_with_the_right_key_id_and_a_non_ascii_signature_is_invalid() -> None:
    signer = Signer(KEY)
    kid, payload, _ = signer.sign(LinkClaims("c", "d1", "r1", "1")).split(".")
    for mac in ("\x80" * 22, "é", "\ud800"):
        with pytest.raises(InvalidToken):
            signer.verify(f"{kid}.{payload}.{mac}")


def test_previous_keys_work_during_their_configured_overlap_then_stop(monkeypatch) -> None:
    from datetime import UTC, datetime, timedelta

    from functions.shared import settings, tokens

    # Given a rotation: the old key stays valid until tomorrow, an older one expired yesterday
    old_token = Signer(OLD_KEY).sign(LinkClaims("o", "d1", "r1"))
    oldest_key = "p" * 32
    oldest_token = Signer(oldest_key).sign(LinkClaims("o", "d1", "r2"))
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setenv("MSGTRACK_SIGNING_KEY", KEY)
    monkeypatch.setenv("MSGTRACK_PREVIOUS_SIGNING_KEYS", f"{OLD_KEY}@{tomorrow},{oldest_key}@{yesterday}")
    settings.reset_caches()
    tokens.reset_signer()
    # When links signed with each are followed
    # Then the one inside its overlap still verifies and the one past it does not
    assert tokens.signer().verify(old_token).recipient_id == "r1"
    with pytest.raises(InvalidToken, match=r"^the signing key of this link was retired$"):
        tokens.signer().verify(oldest_token)


def test_a_previous_key_still_verifies_at_the_very_instant_its_overlap_ends(monkeypatch) -> None:
    from datetime import UTC, datetime

    from functions.shared import tokens
    from functions.shared.settings import PreviousKey

    # Given a previous key whose overlap ends at noon, and a clock that reads exactly noon
    noon = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    class Noon(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return noon

    monkeypatch.setattr(tokens, "datetime", Noon)
    old_token = Signer(OLD_KEY).sign(LinkClaims("o", "d1", "r1"))
    # When a link signed with it is followed
    claims = Signer(KEY, [PreviousKey(OLD_KEY, noon)]).verify(old_token)
    # Then it still verifies: a key's links stop once its end has passed, not when it is reached
    assert claims.recipient_id == "r1"


def test_a_malformed_previous_key_setting_is_refused_at_start(monkeypatch) -> None:
    from functions.shared import settings

    monkeypatch.setenv("MSGTRACK_PREVIOUS_SIGNING_KEYS", f"{OLD_KEY}@next-tuesday")
    settings.reset_caches()
    with pytest.raises(settings.SettingsError):
        settings.signing_secrets()


def test_a_click_token_must_name_a_url() -> None:
    with pytest.raises(InvalidToken):
        Signer(KEY).verify(Signer(KEY).sign(LinkClaims("c", "d1", "r1", None)))


def test_site_and_latest_click_tokens_round_trip_and_stay_cookie_sized() -> None:
    signer = Signer(KEY)
    site = LinkClaims("w", "s7k2m9x4q1ab", "")
    latest = LinkClaims("l", "d7k2m9x4q1ab", "customer-000123", "12", True, {"t": "1795420800"})
    assert signer.verify(signer.sign(site)) == site
    latest_token = signer.sign(latest)
    assert signer.verify(latest_token) == latest
    assert len(latest_token) < 130  # the person cookie carries it on every request to the tracking host


def test_claims_compare_by_value() -> None:
    assert LinkClaims("c", "d", "r", "1") == LinkClaims("c", "d", "r", "1", False, {})
    assert LinkClaims("c", "d", "r", "1") != LinkClaims("c", "d", "r", "2")
    assert "url_id='1'" in repr(LinkClaims("c", "d", "r", "1"))


def _payload(body: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "body",
    [
        ["c", "d1", "r2", "1"],  # a click on someone else's behalf
        ["w", "s1", "", ""],  # a web-tracking site token
        ["l", "d1", "r2", "1", 0, {"t": "1795420800"}],  # a latest-click cookie
        ["o", "d1", "r2", ""],
    ],
)
def test_a_forged_payload_with_an_empty_or_short_signature_is_refused(body: list[object]) -> None:
    # Given a forger who knows the key id (it is in every link) but not the key
    signer = Signer(KEY)
    kid, _, mac = signer.sign(LinkClaims("c", "d1", "r1", "1")).split(".")
    forged = _payload(body)
    # When they present their own claims with no signature, or the first characters of a real one
    # Then every such token is refused: the signature is compared whole, never over what was presented
    for presented in ("", mac[:1], mac[:4], mac[:-1], mac + "A", f"{mac}{mac}"):
        with pytest.raises(InvalidToken):
            signer.verify(f"{kid}.{forged}.{presented}")


def test_a_genuine_token_with_its_signature_cut_short_is_refused() -> None:
    signer = Signer(KEY)
    kid, payload, mac = signer.sign(LinkClaims("c", "d1", "r1", "1")).split(".")
    assert len(mac) == 22  # 16 bytes of HMAC-SHA256, base64url without padding
    for length in range(len(mac)):
        with pytest.raises(InvalidToken):
            signer.verify(f"{kid}.{payload}.{mac[:length]}")


def _signed(body: object) -> str:
    """A token over any claims, signed with KEY: what a leaked key (or a past bug) could produce."""
    kid = key_id(KEY)
    payload = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    mac = Signer._mac(KEY.encode(), f"{kid}.{payload}")
    return f"{kid}.{payload}.{mac}"


def test_the_key_id_is_four_characters_fixed_by_the_key() -> None:
    # Links already sent carry the key id: if it changed, every one of them would stop working
    assert (key_id(KEY), key_id(OLD_KEY)) == ("XjGP", "t7yn")
    assert key_id("rotation-key-0002" + "x" * 16) == "GdWX"  # any last character, "X" and "=" too
    assert Signer(KEY).sign(LinkClaims("o", "d1", "r1")).startswith("XjGP.")


def test_personalization_values_travel_as_utf8_not_escaped() -> None:
    token = Signer(KEY).sign(LinkClaims("c", "d1", "José", "1", fields={"city": "Zürich"}))
    payload = token.split(".")[1]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert "José".encode() in decoded and "Zürich".encode() in decoded  # \u00e9 would make links longer


def test_a_genuine_token_of_exactly_the_maximum_length_verifies() -> None:
    signer = Signer(KEY)
    for size in range(1_400, 1_600):
        claims = LinkClaims("c", "d1", "r1", "1", fields={"v": "x" * size})
        token = signer.sign(claims)
        if len(token) == MAX_TOKEN_LENGTH:
            break
    assert len(token) == MAX_TOKEN_LENGTH
    assert signer.verify(token) == claims
    with pytest.raises(InvalidToken, match="too long"):
        signer.verify(signer.sign(LinkClaims("c", "d1", "r1", "1", fields={"v": "x" * (size + 3)})))


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "token too long or not ASCII"),
        (b"XjGP.e30.AAAA", "token too long or not ASCII"),
        ("x" * 5000, "token too long or not ASCII"),
        ("XjGP.é.AAAA", "token too long or not ASCII"),
        ("XjGP.e30", "malformed token"),
        ("a.b.c.d", "malformed token"),
        ("ZZZZ.e30.AAAA", "unknown signing key"),
        ("XjGP.e30.AAAA", "bad signature"),
        ("XjGP.e30.", "bad signature"),
    ],
)
def test_each_refused_token_says_why(token: Any, reason: str) -> None:
    with pytest.raises(InvalidToken) as refused:
        Signer(KEY).verify(token)
    assert str(refused.value) == reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"c": 1, "d": 2, "r": 3, "u": 4, "p": 5}, "malformed claims"),  # not a list
        (["c", "d1", "r1"], "malformed claims"),
        (["c", "d1", "r1", "1", 0, {}, "extra"], "malformed claims"),
        (["x", "d1", "r1", "1"], "malformed claims"),
        (["c", 7, "r1", "1"], "malformed claims"),
        (["c", "d1", "r1", "1", 0, []], "malformed claims"),
        (["c", "d1", "r1", "1", 0, {"t": 1}], "malformed claims"),
        (["c", "d1", "r1", "1", 2], "malformed claims"),
        (["c", "d1", "r1", ""], "click token without a URL"),
        ("not json at all", "malformed claims"),
    ],
)
def test_signed_claims_of_the_wrong_shape_are_refused_saying_why(body: Any, reason: str) -> None:
    token = _signed(body)
    if body == "not json at all":  # a payload that is not JSON, under a valid signature
        kid = key_id(KEY)
        payload = base64.urlsafe_b64encode(b"{not json").decode().rstrip("=")
        token = f"{kid}.{payload}.{Signer._mac(KEY.encode(), f'{kid}.{payload}')}"
    with pytest.raises(InvalidToken) as refused:
        Signer(KEY).verify(token)
    assert str(refused.value) == reason


def test_signed_claims_of_every_allowed_shape_verify() -> None:
    assert Signer(KEY).verify(_signed(["o", "d1", "r1", ""])) == LinkClaims("o", "d1", "r1")
    assert Signer(KEY).verify(_signed(["c", "d1", "r1", "1", 1, {"t": "5"}])) == LinkClaims(
        "c", "d1", "r1", "1", True, {"t": "5"}
    )
