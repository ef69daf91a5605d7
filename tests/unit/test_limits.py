"""The bounds of limits.py: byte-exact cuts, DynamoDB's item-size arithmetic, and the worst-case
indicator items those bounds allow, measured against DynamoDB's 400 KB limit."""

from __future__ import annotations

import pytest

from functions.consolidate import batch
from functions.shared import limits
from functions.shared.limits import DYNAMODB_ITEM_LIMIT, ITEM_BUDGET, item_size, utf8_prefix
from functions.shared.machine import MACHINE_KINDS
from functions.shared.models import (
    PAGE_SEPARATOR,
    STREAM_CUT_SHORT,
    ClickStreamsModel,
    DeliveryStatsModel,
    RecipientStateModel,
    SendCountsModel,
)

BIGGEST_COUNT = 10**37 + 1  # 38 significant digits: the largest number DynamoDB stores (20 bytes)


@pytest.mark.parametrize(
    ("value", "max_bytes", "expected"),
    [
        ("Mozilla/5.0", 7, "Mozilla"),
        ("Mozilla/5.0", 100, "Mozilla/5.0"),
        ("€€€", 8, "€€"),  # 3 bytes each: a third one would need 9
        ("€€€", 5, "€"),  # never half a character
        ("a😀b", 4, "a"),  # the emoji takes 4 bytes
        ("a😀b", 5, "a😀"),
        ("ab\ud800cd", 10, "ab?cd"),  # a lone surrogate is not UTF-8: DynamoDB would refuse it
        ("", 5, ""),
    ],
)
def test_a_value_is_cut_by_utf8_bytes_never_inside_a_character(
    value: str, max_bytes: int, expected: str
) -> None:
    assert utf8_prefix(value, max_bytes) == expected
    assert len(utf8_prefix(value, max_bytes).encode()) <= max_bytes


def test_item_size_counts_names_and_values_as_the_dynamodb_guide_does() -> None:
    # "ab" + "cde" = 5; "n" + 1 + 2 (3 significant digits) = 4; "t" + 1 = 2;
    # "m" + 3 + ("k" + 1 + "é" 2 bytes) = 8; "l" + 3 + (1 + 1 + 1) + (1 + 1 + 1) = 10
    item = {
        "ab": {"S": "cde"},
        "n": {"N": "12300"},
        "t": {"BOOL": True},
        "m": {"M": {"k": {"S": "é"}}},
        "l": {"L": [{"N": "1"}, {"N": "12"}]},
    }
    assert item_size(item) == 5 + 4 + 2 + 8 + 10


def test_the_largest_number_counts_20_bytes() -> None:
    assert item_size({"n": {"N": str(BIGGEST_COUNT)}}) == 1 + 20


def _names(count: int, max_bytes: int, tag: str) -> list[str]:
    """``count`` distinct names of exactly ``max_bytes`` UTF-8 bytes, mostly 3-byte characters."""
    names = []
    for n in range(count):
        head = f"{tag}{n:04d}"
        filler = "€" * ((max_bytes - len(head)) // 3)
        name = head + filler + "x" * (max_bytes - len(head) - 3 * len(filler))
        assert len(name.encode()) == max_bytes
        names.append(name)
    return names


def worst_stats_item() -> DeliveryStatsModel:
    """Every breakdown full of names at their byte maximum, every count at DynamoDB's largest number,
    every currency a delivery may name with a long exact sum."""
    row = {"opens": BIGGEST_COUNT, "clicks": BIGGEST_COUNT}
    dimensions = ("browser", "os", "device", "domain")
    return DeliveryStatsModel(
        delivery_id="d" + "x" * 11,
        opens=BIGGEST_COUNT,
        total_opens=BIGGEST_COUNT,
        clicks=BIGGEST_COUNT,
        person_clicks=BIGGEST_COUNT,
        total_clicks=BIGGEST_COUNT,
        opt_outs=BIGGEST_COUNT,
        mirror_page_views=BIGGEST_COUNT,
        page_views=BIGGEST_COUNT,
        transactions=BIGGEST_COUNT,
        transaction_amount={
            f"{chr(65 + n // 676)}{chr(65 + n // 26 % 26)}{chr(65 + n % 26)}": "9" * 30 + ".99"
            for n in range(limits.MAX_CURRENCIES)
        },
        other_currency_transactions=BIGGEST_COUNT,
        breakdowns={
            dimension: dict.fromkeys(
                _names(limits.MAX_BREAKDOWN_NAMES, limits.MAX_NAME_BYTES, dimension), row
            )
            for dimension in dimensions
        },
        other_breakdowns=dict.fromkeys(dimensions, row),
        # The human traffic's breakdowns are bounded the same way (batch._bounded_breakdowns).
        human=dict.fromkeys(batch.HUMAN_FIELDS, BIGGEST_COUNT),
        human_breakdowns={
            dimension: dict.fromkeys(
                _names(limits.MAX_BREAKDOWN_NAMES, limits.MAX_NAME_BYTES, dimension), row
            )
            for dimension in dimensions
        },
        human_other_breakdowns=dict.fromkeys(dimensions, row),
        machine={
            "total_opens": BIGGEST_COUNT,
            "total_clicks": BIGGEST_COUNT,
            "by_kind": dict.fromkeys(MACHINE_KINDS, BIGGEST_COUNT),
        },
        updated_at="2026-11-23T10:00:00.000Z",
    )


def worst_streams_item() -> ClickStreamsModel:
    """Every path of the most steps of the longest url ids, every transition and every page named,
    each page at its byte maximum."""
    url_id = "9" * limits.MAX_URL_ID_BYTES
    path = ">".join([url_id] * limits.MAX_STREAM_STEPS + [STREAM_CUT_SHORT])
    return ClickStreamsModel(
        delivery_id="d" + "x" * 11,
        paths={f"{n:08d}{path[8:]}": BIGGEST_COUNT for n in range(limits.MAX_STREAM_ENTRIES)},
        other_paths=BIGGEST_COUNT,
        transitions={f"{n:08d}>{url_id}": BIGGEST_COUNT for n in range(limits.MAX_STREAM_ENTRIES)},
        other_transitions=BIGGEST_COUNT,
        pages={
            f"{url_id}{PAGE_SEPARATOR}{page}": BIGGEST_COUNT
            for page in _names(limits.MAX_STREAM_PAGES, limits.MAX_STREAM_PAGE_BYTES, "https://shop.example/")
        },
        other_pages=BIGGEST_COUNT,
    )


def worst_send_counts_item() -> SendCountsModel:
    """Every email domain the send counts may name at its byte maximum, every count 38 digits long."""
    return SendCountsModel(
        delivery_id="d" + "x" * 11,
        sent=BIGGEST_COUNT,
        failed=BIGGEST_COUNT,
        domains=dict.fromkeys(
            _names(limits.MAX_SENT_DOMAINS, limits.MAX_NAME_BYTES, "domain"), BIGGEST_COUNT
        ),
        other_domains=BIGGEST_COUNT,
    )


def test_the_worst_case_recipient_state_with_its_remembered_hits_stays_small() -> None:
    # Given a recipient state with every bounded list full: the click path, the hits remembered for a
    # later honeypot hit, the honeypot hits and its logs' sort keys, with the longest times, client
    # keys and log keys
    at = "2026-11-23T10:00:00.000000Z"
    sk = at + "#" + "e" * 32
    url_id = "9" * limits.MAX_URL_ID_BYTES
    item = RecipientStateModel(
        delivery_id="d" + "x" * 11,
        sk="r#" + "r" * 64,
        recipient_id="r" * 64,
        opened=True,
        clicked=True,
        opted_out=True,
        path=[f"{at}|{url_id}"] * limits.MAX_PATH,
        email_domain="x" * limits.MAX_NAME_BYTES,
        human_hits=BIGGEST_COUNT,
        human_clicks=BIGGEST_COUNT,
        human_opt_outs=BIGGEST_COUNT,
        human_urls=",".join(f"{n:08d}:{BIGGEST_COUNT}" for n in range(50)),
        recent_hits=" ".join([f"{sk}|{'f' * 16}"] * batch.MAX_RECENT_HITS),
        honeypot_hits=[[at, "f" * 16, 86_400]] * batch.MAX_HONEYPOT_HITS,
        logs=" ".join([sk] * limits.MAX_RECIPIENT_LOGS),
    )
    # When DynamoDB measures it
    size = item_size(item.serialize())
    # Then it stays far within the budget (its url ids are the delivery's own, as before)
    assert size <= 20_000 < ITEM_BUDGET


@pytest.mark.parametrize("build", [worst_stats_item, worst_streams_item, worst_send_counts_item])
def test_the_worst_case_indicator_item_under_the_bounds_fits_dynamodb_with_margin(build: object) -> None:
    # Given the largest item the bounds allow (every map full, every name at its byte maximum)
    item = build()  # type: ignore[operator]
    # When DynamoDB measures it
    size = item_size(item.serialize())
    # Then it stays within the budget, a quarter below DynamoDB's limit
    assert size <= ITEM_BUDGET < DYNAMODB_ITEM_LIMIT
    assert size > ITEM_BUDGET // 3  # the item really is full: the bounds are not far too tight either
