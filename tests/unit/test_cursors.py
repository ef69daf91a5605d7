"""Paging cursors round-trip and reject anything they did not produce."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.api import cursors
from functions.shared.errors import InvalidCursor

TRIED = {"tampered": 0}

positions = st.dictionaries(
    st.text(min_size=1, max_size=20),
    st.one_of(st.text(max_size=80), st.integers(), st.booleans(), st.none()),
    max_size=6,
)


@given(positions)
def test_a_cursor_round_trips(position: dict[str, object]) -> None:
    assert cursors.decode(cursors.encode(position)) == position


@given(positions, st.integers(min_value=0, max_value=10_000), st.characters(codec="ascii"))
def test_a_cursor_with_any_character_changed_is_refused(
    position: dict[str, object], at: int, new: str
) -> None:
    TRIED["tampered"] += 1
    cursor = cursors.encode(position)
    assert cursor is not None
    index = at % len(cursor)
    if cursor[index] == new:
        return
    tampered = cursor[:index] + new + cursor[index + 1 :]
    try:
        decoded = cursors.decode(tampered)
    except InvalidCursor:
        return
    # base64 padding bits can absorb a change; then the position must be the very same one
    assert decoded == position


@given(st.text(max_size=200))
def test_strings_that_are_not_cursors_are_refused(text: str) -> None:
    if not text:
        assert cursors.decode(text) is None
        return
    with pytest.raises(InvalidCursor):
        cursors.decode(text)


def test_record_the_tampered_cursors_tried(reliability: Any) -> None:
    """Runs after the property test above (file order) and reports how many cursors it tampered with."""
    reliability.record(
        "Bad input",
        "paging cursors with one character changed (hypothesis)",
        TRIED["tampered"],
        "400 or the same page",
    )


def test_no_next_page_has_no_cursor() -> None:
    assert cursors.encode(None) is None
