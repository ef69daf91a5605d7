"""The indicator formulas, checked against numbers worked out by hand."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.shared.indicators import Indicators, amounts, money, rate


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (1, 3, 33.33),  # 33.333… rounds down
        (2, 3, 66.67),  # 66.666… rounds up
        (1, 6, 16.67),
        (3, 4, 75.0),
        (1, 8, 12.5),
        (7, 7, 100.0),
        (0, 9, 0.0),
        (1, 800, 0.13),  # exactly 0.125: half-up, where float rounding would give 0.12
        (1, 1600, 0.06),  # exactly 0.0625 → 0.06
        (3, 2, 150.0),  # more clicks than opens cannot happen, but the formula does not hide it
    ],
)
def test_rate_is_a_percentage_rounded_half_up_to_two_decimals(
    numerator: int, denominator: int, expected: float
) -> None:
    # Given counts, When rated, Then the percentage matches the hand computation
    assert rate(numerator, denominator) == expected


@pytest.mark.parametrize(("numerator", "denominator"), [(0, 0), (5, 0), (5, -1)])
def test_rate_is_zero_without_a_positive_denominator(numerator: int, denominator: int) -> None:
    assert rate(numerator, denominator) == 0


def test_indicators_of_a_typical_delivery() -> None:
    # Given 200 messages sent, 10 failed, 57 recipients who opened, 19 who clicked, 23 persons clicking
    indicators = Indicators.from_counts(
        sent=200,
        failed=10,
        opens=57,
        total_opens=140,
        clicks=19,
        person_clicks=23,
        total_clicks=31,
        opt_outs=2,
        mirror_page_views=4,
    )
    # Then: delivered = 190; 57/190 = 30 %; 19/190 = 10 %; 19/57 = 33.33 %; 23 - 19 = 4 forwards
    assert indicators.delivered == 190
    assert indicators.open_rate == 30.0
    assert indicators.click_rate == 10.0
    assert indicators.reactivity == 33.33
    assert indicators.estimated_forwards == 4
    assert (indicators.total_opens, indicators.total_clicks) == (140, 31)
    assert (indicators.opt_outs, indicators.mirror_page_views) == (2, 4)


def test_small_delivery_rates() -> None:
    # Given 3 delivered, 2 opened, 1 clicked: 66.67 %, 33.33 % and 50 %
    indicators = Indicators.from_counts(sent=3, failed=0, opens=2, clicks=1, person_clicks=1)
    assert (indicators.open_rate, indicators.click_rate, indicators.reactivity) == (66.67, 33.33, 50.0)
    assert indicators.estimated_forwards == 0


def test_estimated_forwards_is_never_negative() -> None:
    # Given fewer persons than recipients clicked (a shared browser), Then no forwards, not -3
    indicators = Indicators.from_counts(sent=10, failed=0, opens=6, clicks=5, person_clicks=2)
    assert indicators.estimated_forwards == 0


def test_a_delivery_nobody_received_has_zero_rates() -> None:
    # Given every message failed (and more failures than sends reported), Then nothing divides by zero
    indicators = Indicators.from_counts(sent=4, failed=6)
    assert indicators.delivered == 0
    assert (indicators.open_rate, indicators.click_rate, indicators.reactivity) == (0, 0, 0)


def test_no_counts_at_all_means_zeros() -> None:
    indicators = Indicators()
    assert (indicators.sent, indicators.delivered, indicators.estimated_forwards) == (0, 0, 0)
    assert (indicators.open_rate, indicators.click_rate, indicators.reactivity) == (0, 0, 0)


@given(st.integers(min_value=1, max_value=10**9), st.data())
def test_rate_of_a_part_stays_between_0_and_100_and_within_half_a_cent(
    denominator: int, data: st.DataObject
) -> None:
    numerator = data.draw(st.integers(min_value=0, max_value=denominator))
    value = rate(numerator, denominator)
    assert 0 <= value <= 100
    assert abs(Fraction(value).limit_denominator(100) - Fraction(numerator * 100, denominator)) <= Fraction(
        1, 200
    )


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=10**6))
def test_rate_grows_with_the_numerator(numerator: int, denominator: int) -> None:
    assert rate(numerator, denominator) <= rate(numerator + 1, denominator)


@pytest.mark.parametrize(
    ("clicks", "person_clicks", "forwards"),
    [
        (0, 0, 0),
        (0, 1, 1),  # a forwarded message clicked by someone else only
        (1, 1, 0),
        (1, 2, 1),
        (19, 23, 4),
        (5, 2, 0),  # fewer persons than recipients (a shared browser): none, not -3
        (7, 7, 0),
        (1_000_000, 1_000_003, 3),
    ],
)
def test_estimated_forwards_is_the_surplus_of_persons_over_recipients_who_clicked(
    clicks: int, person_clicks: int, forwards: int
) -> None:
    indicators = Indicators.from_counts(sent=0, failed=0, clicks=clicks, person_clicks=person_clicks)
    assert indicators.estimated_forwards == forwards


@pytest.mark.parametrize(
    ("exact", "expected"),
    [
        ("12.50", 12.5),
        ("0.3", 0.3),  # the workflow's exact sum of 0.1 + 0.2
        ("0.125", 0.13),  # half-up, where float rounding would give 0.12
        ("2.005", 2.01),
        ("0.124", 0.12),
        ("1000", 1000.0),
        ("1E+3", 1000.0),
    ],
)
def test_money_is_a_decimal_sum_rounded_half_up_to_two_decimals(exact: str, expected: float) -> None:
    assert money(exact) == expected


@pytest.mark.parametrize("not_a_number", [None, "", "ten", "NaN", "Infinity"])
def test_money_that_is_not_a_number_is_none(not_a_number: str | None) -> None:
    assert money(not_a_number) is None


def test_amounts_per_currency_leave_out_sums_that_are_not_numbers() -> None:
    assert amounts({"USD": "19.999", "EUR": "0.3", "GBP": "oops"}) == {"EUR": 0.3, "USD": 20.0}
    assert amounts({}) == {}


def test_page_views_and_transactions_are_carried_as_counted() -> None:
    indicators = Indicators.from_counts(sent=3, failed=0, page_views=7, transactions=2)
    assert (indicators.page_views, indicators.transactions, indicators.clicks) == (7, 2, 0)
