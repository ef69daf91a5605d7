"""The indicator formulas of a delivery's Tracking tab: pure arithmetic on counts.

The tracking workflow keeps the counts (``DeliveryStatsModel``, ``SendCountsModel``); this module turns
them into what a report shows. Rates are percentages rounded half-up to 2 decimals on the exact
fraction, so a hand computation and the API agree to the last digit (``round`` on a float would give
``0.12`` for 1/800).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

_CENT = Decimal("0.01")


def rate(numerator: int, denominator: int) -> float:
    """``numerator / denominator * 100`` rounded to 2 decimals; 0 when the denominator is not positive."""
    if denominator <= 0:
        return 0.0
    percent = Decimal(numerator) * 100 / Decimal(denominator)
    return float(percent.quantize(_CENT, rounding=ROUND_HALF_UP))


def amounts(totals: Mapping[str, str]) -> dict[str, float]:
    """Transaction amounts per currency, from the workflow's exact decimal sums, rounded half-up to
    2 decimals (``{"EUR": "12.50"}`` -> ``{"EUR": 12.5}``); a sum that is not a number is left out."""
    rounded = {currency: money(total) for currency, total in sorted(totals.items())}
    return {currency: value for currency, value in rounded.items() if value is not None}


def money(amount: str | None) -> float | None:
    """A decimal string as a JSON number rounded half-up to 2 decimals; None when it is not a number."""
    try:
        exact = Decimal(str(amount))
    except InvalidOperation:
        return None
    if not exact.is_finite():
        return None
    return float(exact.quantize(_CENT, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Indicators:
    """A delivery's indicators, proofs excluded (the workflow never counts them)."""

    sent: int = 0
    delivered: int = 0
    opens: int = 0  # distinct recipients with any tracking event
    total_opens: int = 0  # open-pixel events
    clicks: int = 0  # distinct recipients who clicked a click link
    person_clicks: int = 0  # distinct persons (browsers) who clicked a click link
    total_clicks: int = 0  # events on click links
    opt_outs: int = 0  # distinct recipients who followed an opt-out link
    mirror_page_views: int = 0  # events on mirror links
    page_views: int = 0  # web-tracking tag: page events attributed to the delivery
    transactions: int = 0  # web-tracking tag: transaction events attributed to the delivery

    @classmethod
    def from_counts(
        cls,
        *,
        sent: int,
        failed: int,
        opens: int = 0,
        total_opens: int = 0,
        clicks: int = 0,
        person_clicks: int = 0,
        total_clicks: int = 0,
        opt_outs: int = 0,
        mirror_page_views: int = 0,
        page_views: int = 0,
        transactions: int = 0,
    ) -> Indicators:
        """Indicators from the stored counters; ``delivered`` is what was sent minus reported failures."""
        return cls(
            sent=sent,
            delivered=max(0, sent - failed),
            opens=opens,
            total_opens=total_opens,
            clicks=clicks,
            person_clicks=person_clicks,
            total_clicks=total_clicks,
            opt_outs=opt_outs,
            mirror_page_views=mirror_page_views,
            page_views=page_views,
            transactions=transactions,
        )

    @property
    def estimated_forwards(self) -> int:
        """More persons than recipients clicked: the surplus is taken as forwarded messages."""
        return max(0, self.person_clicks - self.clicks)

    @property
    def open_rate(self) -> float:
        return rate(self.opens, self.delivered)

    @property
    def click_rate(self) -> float:
        return rate(self.clicks, self.delivered)

    @property
    def reactivity(self) -> float:
        """Of the recipients who opened, the share who clicked."""
        return rate(self.clicks, self.opens)
