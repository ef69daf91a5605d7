"""Paging cursors round-trip and reject anything they did not produce."""

from __future__ import annotations

import base64
import json
import re
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.api import cursors
from functions.shared.errors import InvalidCursor

positions = st.dictionaries(
    st.text(min_size=1, max_size=20),
    st.one_of(st.text(max_size=80), st.integers(), st.booleans(), st.none()),
    max_size=6,
)


@given(positions)
def test_a_cursor_round_trips(position: dict[str, object]) -> None:
    assert cursors.decode(cursors.encode(position)) == position


def test_a_cursor_with_any_character_changed_is_refused_or_names_the_same_position(reliability: Any) -> None:
    outcomes = {"refused": 0, "same position": 0}

    @given(positions, st.integers(min_value=0, max_value=10_000), st.characters(codec="ascii"))
    def tamper(position: dict[str, object], at: int, new: str) -> None:
        cursor = cursors.encode(position)
        assert cursor is not None
        index = at % len(cursor)
        if cursor[index] == new:
            return
        tampered = cursor[:index] + new + cursor[index + 1 :]
        try:
            decoded = cursors.decode(tampered)
        except InvalidCursor:
            outcomes["refused"] += 1
            return
        # base64 padding bits can absorb a change; then the position must be the very same one
        assert decoded == position
        outcomes["same position"] += 1

    tamper()
    tried = sum(outcomes.values())
    reliability.record(
        "Bad input", "paging cursors with one character changed (hypothesis)", tried, "400 or the same page"
    )
    # Hypothesis tried a hundred or so; almost every change is refused, the rest decode unchanged
    assert tried >= 50
    assert outcomes["refused"] >= 0.9 * tried


def test_a_cursor_with_its_signature_cut_short_or_removed_is_refused() -> None:
    cursor = cursors.encode({"before": "2026-11-23T08:00:00.000Z#d1"})
    assert cursor is not None
    payload, _, mac = cursor.partition(".")
    assert len(mac) == 16  # 12 bytes of HMAC-SHA256, base64url
    for length in range(len(mac)):
        with pytest.raises(InvalidCursor):
            cursors.decode(f"{payload}.{mac[:length]}")
    with pytest.raises(InvalidCursor):
        cursors.decode(payload)
    # And a position written by the client with no signature, or a part of a real one
    forged = base64.urlsafe_b64encode(b'{"before":"9999"}').decode().rstrip("=")
    for presented in ("", mac[:1], mac[:8]):
        with pytest.raises(InvalidCursor):
            cursors.decode(f"{forged}.{presented}")


@given(st.text(max_size=200))
def test_strings_that_are_not_cursors_are_refused(text: str) -> None:
    if not text:
        assert cursors.decode(text) is None
        return
    with pytest.raises(InvalidCursor):
        cursors.decode(text)


def test_no_next_page_has_no_cursor() -> None:
    assert cursors.encode(None) is None


INVALID = "the cursor is invalid; use the next_cursor of a previous page"


def _signed(payload: bytes) -> str:
    """A cursor over any payload, signed as ``encode`` signs: what a leaked key could produce."""
    text = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{text}.{cursors._mac(text)}"


def test_a_cursor_is_the_same_text_for_the_same_position_and_key() -> None:
    # A cursor handed out before a deployment must still be read after it: its form is fixed
    cursor = cursors.encode({"before": "2026-11-23T08:00:00.000Z#d1"})
    assert cursor == "eyJiZWZvcmUiOiIyMDI2LTExLTIzVDA4OjAwOjAwLjAwMFojZDEifQ.m6IanDMHfHCmuNCA"
    assert cursors.decode(cursor) == {"before": "2026-11-23T08:00:00.000Z#d1"}


def test_a_cursor_of_up_to_4096_characters_is_read_and_a_longer_one_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cursors, "COMPRESS_OVER", 10_000)  # plain payloads, whatever their length
    for size in range(2_900, 3_200):
        cursor = cursors.encode({"before": "x" * size})
        assert cursor is not None
        if len(cursor) == 4096:
            break
    assert len(cursor) == 4096
    assert cursors.decode(cursor) == {"before": "x" * size}
    longer = cursors.encode({"before": "x" * (size + 1)})
    assert longer is not None and len(longer) > 4096
    with pytest.raises(InvalidCursor, match="invalid"):
        cursors.decode(longer)


@pytest.mark.parametrize(
    "cursor",
    [
        "eyJiZWZvcmUiOiJ4In0.AAAAAAAAAAAAAAAA",  # a signature that is not its own
        _signed(b"{not json"),  # signed, but not JSON
        _signed(b'["a", "list"]'),  # signed JSON that is not a position
    ],
    ids=["bad signature", "not json", "not an object"],
)
def test_each_refused_cursor_says_to_use_a_next_cursor(cursor: str) -> None:
    with pytest.raises(InvalidCursor) as refused:
        cursors.decode(cursor)
    assert str(refused.value) == INVALID


def test_given_a_position_of_64_chains_when_encoded_then_the_cursor_is_compressed_within_the_bound() -> None:
    # Given where each of 64 chains resumes: a sort key with a random event id each
    position = {
        "q": "0123456789abcdef",
        "c": 1,
        "a": {f"c{n:02d}": f"2026-11-23T08:{n % 60:02d}:0{n % 10}.{n:03d}Z#{ids(n)}" for n in range(64)},
        "x": [],
    }
    # When it is made a cursor
    cursor = cursors.encode(position)
    # Then the cursor is compressed, well within the bound, and names the same position
    assert cursor is not None and cursor.startswith("z")
    assert len(cursor) < cursors.MAX_CURSOR * 3 // 4, len(cursor)
    assert cursors.decode(cursor) == position


def ids(n: int) -> str:
    import hashlib

    return hashlib.sha256(str(n).encode()).hexdigest()[:26].upper()


def test_given_a_signed_compressed_position_that_unpacks_beyond_its_bound_then_it_is_refused() -> None:
    # Given a cursor signed with the route's key whose payload unpacks to 1 MB (a zip bomb)
    import zlib

    bomb = b'{"a":"' + b"x" * 1_000_000 + b'"}'
    payload = "z" + base64.urlsafe_b64encode(zlib.compress(bomb, 9)).decode().rstrip("=")
    forged = f"{payload}.{cursors._mac(payload)}"
    assert len(forged) < cursors.MAX_CURSOR
    # When it is decoded, Then it is refused as invalid without unpacking it whole
    with pytest.raises(InvalidCursor):
        cursors.decode(forged)


URL_SAFE_CURSOR = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def test_given_long_positions_whose_packed_form_ends_in_any_character_then_each_cursor_is_url_safe_and_round_trips() -> (
    None
):
    # Given 300 long positions (the logs route's kind), packed into base64 that ends in every way: with
    # padding, and with an "X" (checked on the inputs, so that the cases below are really exercised)
    positions = [{"a": {f"c{n:02d}": f"{seed}-{ids(n * seed)}" for n in range(40)}} for seed in range(1, 301)]
    packed = [
        base64.urlsafe_b64encode(zlib.compress(json.dumps(p, separators=(",", ":")).encode(), 9)).decode()
        for p in positions
    ]
    assert any(text.endswith("=") for text in packed)
    assert any(text.rstrip("=").endswith("X") for text in packed)
    for position in positions:
        # When each is made a cursor
        cursor = cursors.encode(position)
        # Then it is compressed, holds only URL-safe characters (no "=" padding to escape in a query
        # string) and names the same position
        assert cursor is not None and cursor.startswith("z")
        assert URL_SAFE_CURSOR.fullmatch(cursor), cursor
        assert cursors.decode(cursor) == position


def test_a_plain_payload_of_512_characters_stays_plain_and_a_longer_one_is_compressed() -> None:
    # Given a position whose JSON is 384 bytes (512 base64 characters) and one a byte longer
    at_bound = {"a": "x" * 376}
    over = {"a": "x" * 377}
    # When they are made cursors
    plain, packed = cursors.encode(at_bound), cursors.encode(over)
    # Then the first is plain base64 of its JSON (starts with "e", for '{'), the second compressed
    assert plain is not None and packed is not None
    assert len(plain.partition(".")[0]) == cursors.COMPRESS_OVER
    assert plain.startswith("e") and packed.startswith("z")
    assert cursors.decode(plain) == at_bound and cursors.decode(packed) == over


def test_given_a_signed_compressed_position_whose_stream_never_ends_then_it_is_refused() -> None:
    # Given a cursor signed with the route's key whose packed stream stops before its end, though what it
    # unpacks to so far is a whole JSON object (encode always writes a whole stream)
    packing = zlib.compressobj(9)
    cut_short = packing.compress(b'{"a":1}') + packing.flush(zlib.Z_SYNC_FLUSH)
    payload = "z" + base64.urlsafe_b64encode(cut_short).decode().rstrip("=")
    forged = f"{payload}.{cursors._mac(payload)}"
    # When it is decoded, Then it is refused as invalid
    with pytest.raises(InvalidCursor) as refused:
        cursors.decode(forged)
    assert str(refused.value) == INVALID
