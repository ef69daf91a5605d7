"""The tracking workflow consolidates the web-tracking tag's page views and transactions.

Raw events go through the real workflow and ``batch.consolidate`` on the in-memory store
(``tests/fakes_workflow.py``); every expected number is counted by hand from the events seeded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from functions.consolidate import batch
from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
from functions.shared.models import (
    PAGE_SEPARATOR,
    DeliveryStatsModel,
    RawEventModel,
    TrackedUrlModel,
    TrackingLogModel,
)
from functions.shared.raw_events import RawEvent
from tests.fakes_workflow import Crash, FakeWorkflowStore

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
RUN_AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
SHOP = "https://shop.example"


class Traffic:
    """Raw events of delivery d1, with unique ids and increasing times."""

    def __init__(self, store: FakeWorkflowStore) -> None:
        self.store = store
        self._ids = count()

    def _add(self, kind: str, recipient: str, **fields: Any) -> None:
        n = next(self._ids)
        self.store.add_raw(
            RawEvent(
                event_id=f"e{n:07d}",
                kind=kind,
                delivery_id=fields.pop("delivery_id", "d1"),
                recipient_id=recipient,
                url_id=fields.pop("url_id", None),
                at=T0 + timedelta(seconds=n),
                user_agent=CHROME,
                person_id=f"person-{recipient}",
                ip="203.0.113.0",
                proof=fields.pop("proof", False),
                **fields,
            )
        )

    def click(self, recipient: str, url_id: str, **fields: Any) -> None:
        self._add("click", recipient, url_id=url_id, **fields)

    def page(self, recipient: str, page: str, via: str | None = "1", **fields: Any) -> None:
        self._add("page", recipient, site_id="s1", via_url_id=via, page_url=page, **fields)

    def transaction(self, recipient: str, amount: str | None, currency: str | None, **fields: Any) -> None:
        self._add(
            "transaction",
            recipient,
            site_id="s1",
            via_url_id="1",
            page_url=f"{SHOP}/thanks",
            amount=amount,
            currency=currency,
            **fields,
        )


@pytest.fixture
def store() -> FakeWorkflowStore:
    store = FakeWorkflowStore()
    for url_id in ("1", "2"):
        store.add_url(
            TrackedUrlModel(
                delivery_id="d1", url_id=url_id, url=f"{SHOP}/{url_id}", label=url_id, category="click"
            )
        )
    return store


def run(store: FakeWorkflowStore, batch_size: int = 100, name: str = "run") -> Any:
    workflow = TrackingWorkflow(store, WorkflowConfig(batch_size=batch_size), clock=lambda: RUN_AT)
    return workflow.run(name, "schedule")


def stats(store: FakeWorkflowStore) -> DeliveryStatsModel:
    item = store.indicators[("d1", "stats")]
    assert isinstance(item, DeliveryStatsModel)
    return item


def counts(store: FakeWorkflowStore) -> dict[str, Any]:
    item = stats(store)
    return {
        "opens": int(item.opens),
        "clicks": int(item.clicks),
        "total_clicks": int(item.total_clicks),
        "page_views": int(item.page_views),
        "transactions": int(item.transactions),
        "transaction_amount": dict(item.transaction_amount.as_dict()),
    }


def pages(store: FakeWorkflowStore) -> tuple[dict[str, int], int]:
    item = store.indicators.get(("d1", "streams"))
    if item is None:
        return {}, 0
    named = {key: int(n) for key, n in item.pages.as_dict().items()}  # type: ignore[attr-defined]
    return named, int(item.other_pages)  # type: ignore[attr-defined]


def logs_of(store: FakeWorkflowStore, log_type: str) -> list[TrackingLogModel]:
    in_order = sorted(store.logs.values(), key=lambda log: (log.delivery_id, log.sk))
    return [log for log in in_order if log.type == log_type]


def page_key(via: str, url: str) -> str:
    return f"{via}{PAGE_SEPARATOR}{url}"


# --- page views -------------------------------------------------------------------------------


def test_a_page_view_counts_on_the_delivery_and_after_its_link(store: FakeWorkflowStore) -> None:
    # Given ann clicked link 1, then viewed two pages (one twice) and bob viewed one after link 2
    traffic = Traffic(store)
    traffic.click("ann", "1")
    traffic.page("ann", f"{SHOP}/shoes")
    traffic.page("ann", f"{SHOP}/shoes")
    traffic.page("ann", f"{SHOP}/cart")
    traffic.page("bob", f"{SHOP}/shoes", via="2")

    # When
    run(store)

    # Then 4 page views; opens and clicks are the click's only (ann), bob is not an open
    assert counts(store) == {
        "opens": 1,
        "clicks": 1,
        "total_clicks": 1,
        "page_views": 4,
        "transactions": 0,
        "transaction_amount": {},
    }
    assert pages(store) == (
        {
            page_key("1", f"{SHOP}/shoes"): 2,
            page_key("1", f"{SHOP}/cart"): 1,
            page_key("2", f"{SHOP}/shoes"): 1,
        },
        0,
    )


def test_a_page_view_is_logged_with_its_page_and_no_tracked_url(store: FakeWorkflowStore) -> None:
    Traffic(store).page("ann", f"{SHOP}/shoes?size=42")
    run(store)
    [log] = logs_of(store, "page")
    assert (log.url, log.url_id, log.label, log.amount, log.currency) == (
        f"{SHOP}/shoes?size=42",
        None,
        None,
        None,
        None,
    )
    assert (log.recipient_id, log.counted, log.proof, log.browser) == ("ann", True, False, "Chrome")


def test_a_page_view_stored_with_an_amount_is_logged_and_counted_without_it(store: FakeWorkflowStore) -> None:
    # Given a page view whose raw event carries an amount and a currency (written around the tag, which
    # keeps them for transactions only)
    Traffic(store).page("ann", f"{SHOP}/shoes", amount="99.00", currency="EUR")
    # When the workflow runs
    run(store)
    # Then it is a page view: logged without the amount, counted with no transaction
    [log] = logs_of(store, "page")
    assert (log.amount, log.currency) == (None, None)
    counted = counts(store)
    assert (counted["page_views"], counted["transactions"], counted["transaction_amount"]) == (1, 0, {})


def test_web_events_touch_neither_the_recipient_state_nor_the_timeline(store: FakeWorkflowStore) -> None:
    # Given only web events
    traffic = Traffic(store)
    traffic.page("ann", f"{SHOP}/shoes")
    traffic.transaction("ann", "10.00", "EUR")

    # When
    run(store)

    # Then only the delivery's stats and click streams count them: no p#, hour# or url# item, and the
    # recipient's state (there to list the recipient's logs, for their Tracking tab) counts nothing
    assert sorted(sk for _, sk in store.indicators) == ["r#ann", "stats", "streams"]
    state = store.indicators[("d1", "r#ann")]
    assert not (state.opened or state.clicked or state.opted_out or state.path or state.human_hits)
    assert str(state.logs).split() == sorted(
        sk for (_, sk), log in store.logs.items() if log.recipient_id == "ann"
    )
    assert counts(store)["opens"] == 0 and counts(store)["clicks"] == 0


def test_state_keys_name_the_items_web_events_touch() -> None:
    def event(kind: str, **fields: Any) -> RawEventModel:
        return RawEventModel(
            shard="00", sk=f"x#{kind}", event_id="e", kind=kind, delivery_id="d1", recipient_id="ann",
            at="2026-11-23T09:00:00.000Z", expires_at=0, **fields,
        )  # fmt: skip

    assert batch.state_keys([event("page", via_url_id="1", page_url="p")]) == {
        ("d1", "stats"),
        ("d1", "streams"),
        ("d1", "r#ann"),  # it lists the recipient's logs
    }
    assert batch.state_keys([event("page", page_url="p")]) == {("d1", "stats"), ("d1", "r#ann")}
    assert batch.state_keys([event("transaction", via_url_id="1", amount="1", currency="EUR")]) == {
        ("d1", "stats"),
        ("d1", "r#ann"),
    }
    assert batch.state_keys([event("page", via_url_id="1", proof=True)]) == {("d1", "r#ann")}


# --- transactions -----------------------------------------------------------------------------


def test_transaction_amounts_add_up_exactly_per_currency(store: FakeWorkflowStore) -> None:
    # Given 0.1 + 0.2 EUR (0.30000000000000004 in floats) and 19.99 + 0.01 USD
    traffic = Traffic(store)
    traffic.transaction("ann", "0.1", "EUR")
    traffic.transaction("bob", "0.2", "EUR")
    traffic.transaction("cy", "19.99", "USD")
    traffic.transaction("cy", "0.01", "USD")

    # When
    run(store)

    # Then 4 transactions, 0.3 EUR and 20.00 USD exactly; no page view
    item = counts(store)
    assert (item["transactions"], item["page_views"]) == (4, 0)
    assert {currency: Decimal(total) for currency, total in item["transaction_amount"].items()} == {
        "EUR": Decimal("0.3"),
        "USD": Decimal("20"),
    }
    assert [(log.amount, log.currency, log.url) for log in logs_of(store, "transaction")][:1] == [
        ("0.1", "EUR", f"{SHOP}/thanks")
    ]


def test_amounts_of_later_runs_add_to_the_stored_sum(store: FakeWorkflowStore) -> None:
    traffic = Traffic(store)
    traffic.transaction("ann", "12.50", "EUR")
    run(store, name="run-1")
    traffic.transaction("bob", "0.05", "EUR")
    run(store, name="run-2")
    assert Decimal(counts(store)["transaction_amount"]["EUR"]) == Decimal("12.55")
    assert counts(store)["transactions"] == 2


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        (None, "EUR"),
        ("ten", "EUR"),
        ("-1", "EUR"),
        ("NaN", "EUR"),
        ("Infinity", "EUR"),
        ("5", "E"),
        ("5", None),
        ("5", "E1R"),  # three characters, not letters
        ("5", "ÉUR"),  # three letters, not ASCII
    ],
)
def test_a_transaction_without_a_usable_amount_is_logged_not_counted(
    store: FakeWorkflowStore, amount: str | None, currency: str | None
) -> None:
    traffic = Traffic(store)
    traffic.transaction("ann", "1.00", "EUR")
    traffic.transaction("bob", amount, currency)
    run(store)
    assert counts(store)["transactions"] == 1
    assert [log.counted for log in logs_of(store, "transaction")] == [True, False]


def test_a_transaction_of_zero_counts_as_a_transaction(store: FakeWorkflowStore) -> None:
    # Given a free order (a voucher paid it all)
    Traffic(store).transaction("ann", "0", "eur")
    run(store)
    # Then it is a transaction, adding nothing to the EUR total
    assert (counts(store)["transactions"], counts(store)["transaction_amount"]) == (1, {"EUR": "0"})


def test_beyond_the_currency_cap_new_currencies_count_as_other_and_known_ones_keep_adding(
    store: FakeWorkflowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given room for two currencies, and transactions in four, the first one's coming again last (one
    # buyer's, so one raw-event shard holds them in the order they came: shards are read one by one)
    monkeypatch.setattr(batch, "MAX_CURRENCIES", 2)
    traffic = Traffic(store)
    traffic.transaction("ann", "10", "EUR")
    traffic.transaction("ann", "5", "USD")
    traffic.transaction("ann", "7", "GBP")  # no room
    traffic.transaction("ann", "900", "JPY")  # no room
    traffic.transaction("ann", "2.5", "EUR")

    # When they are consolidated
    run(store)

    # Then every one is a transaction; the two named currencies add up, the other two are counted apart
    item = stats(store)
    assert int(item.transactions) == 5
    assert dict(item.transaction_amount.as_dict()) == {"EUR": "12.5", "USD": "5"}
    assert int(item.other_currency_transactions) == 2


def test_a_page_view_without_a_link_counts_on_the_delivery_but_not_after_a_link(
    store: FakeWorkflowStore,
) -> None:
    # Given a page view the tag could not attribute to a link of the delivery
    Traffic(store).page("ann", f"{SHOP}/shoes", via=None)
    run(store)
    # Then it is a page view, and no page after a link
    assert counts(store)["page_views"] == 1
    assert pages(store) == ({}, 0)


# --- what is not counted ----------------------------------------------------------------------


def test_a_web_event_stored_without_a_page_url_is_logged_and_counted_without_a_page(
    store: FakeWorkflowStore,
) -> None:
    # Given a page view and a transaction whose raw events hold no page URL (optional in a raw event:
    # the tag records none without one, but the workflow reads what the table holds), and a click
    traffic = Traffic(store)
    traffic.page("ann", None)  # type: ignore[arg-type]
    traffic._add("transaction", "ann", site_id="s1", via_url_id="1", amount="5.00", currency="EUR")
    traffic.click("bob", "1")

    # When the workflow runs
    result = run(store)

    # Then the run succeeds, both are logged without a page and counted, and so is the click
    assert result.status == "succeeded"
    assert [log.url for log in logs_of(store, "page") + logs_of(store, "transaction")] == [None, None]
    assert (counts(store)["page_views"], counts(store)["transactions"], counts(store)["clicks"]) == (1, 1, 1)


def test_a_proof_web_event_is_logged_but_not_counted(store: FakeWorkflowStore) -> None:
    # Given a proof's page view and transaction, and one real page view
    traffic = Traffic(store)
    traffic.page("ann", f"{SHOP}/shoes", proof=True)
    traffic.transaction("ann", "5.00", "EUR", proof=True)
    traffic.page("bob", f"{SHOP}/cart")

    # When
    run(store)

    # Then both proofs are logged, flagged, and only bob's view counts
    assert [(log.proof, log.counted) for log in logs_of(store, "page")] == [(True, False), (False, True)]
    assert [(log.proof, log.counted) for log in logs_of(store, "transaction")] == [(True, False)]
    assert counts(store)["page_views"] == 1 and counts(store)["transactions"] == 0
    assert pages(store) == ({page_key("1", f"{SHOP}/cart"): 1}, 0)


def test_web_events_of_a_deleted_delivery_are_logged_not_counted(store: FakeWorkflowStore) -> None:
    # Given d1 was counted once, then deleted (its record and its URLs marked deleted)
    traffic = Traffic(store)
    traffic.page("ann", f"{SHOP}/shoes")
    run(store, name="run-1")
    store.delete_delivery("d1")

    # When more web events come for it
    traffic.page("bob", f"{SHOP}/shoes")
    traffic.transaction("bob", "9.99", "EUR")
    run(store, name="run-2")

    # Then they are logged, not counted: the totals stay as they were
    assert [log.counted for log in logs_of(store, "page")] == [True, False]
    assert [log.counted for log in logs_of(store, "transaction")] == [False]
    assert counts(store)["page_views"] == 1 and counts(store)["transactions"] == 0
    assert pages(store) == ({page_key("1", f"{SHOP}/shoes"): 1}, 0)


# --- bounded pages ----------------------------------------------------------------------------


def test_beyond_the_cap_new_pages_count_as_other_and_known_ones_keep_counting(
    store: FakeWorkflowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given room for two (link, page) keys
    monkeypatch.setattr(batch, "MAX_STREAM_PAGES", 2)
    traffic = Traffic(store)
    traffic.page("ann", f"{SHOP}/a")
    traffic.page("ann", f"{SHOP}/b")
    traffic.page("ann", f"{SHOP}/c")  # no room
    run(store, name="run-1")
    first, other = pages(store)
    assert sorted(first.values()) == [1, 1] and other == 1

    # When a named page is seen again and yet another new one comes
    named = sorted(first)[0].partition(PAGE_SEPARATOR)[2]
    traffic.page("bob", named)
    traffic.page("bob", f"{SHOP}/d")
    run(store, name="run-2")

    # Then the named page counts 2, the new one is "other", and every view is counted somewhere
    second, other = pages(store)
    assert set(second) == set(first)
    assert second[sorted(first)[0]] == 2 and other == 2
    assert sum(second.values()) + other == counts(store)["page_views"] == 5


def test_a_long_page_url_is_logged_to_1024_bytes_and_named_in_the_click_streams_to_512(
    store: FakeWorkflowStore,
) -> None:
    long_url = f"{SHOP}/" + "x" * 2000
    Traffic(store).page("ann", long_url)
    run(store)
    [log] = logs_of(store, "page")
    assert log.url == long_url[:1024]
    assert pages(store) == ({page_key("1", long_url[:512]): 1}, 0)


def test_a_page_url_stored_longer_than_the_bound_is_logged_to_1024_bytes(store: FakeWorkflowStore) -> None:
    # Given a page view whose raw item holds 2,000 bytes of page URL: written around the redirect, which
    # cuts it to 1,024 (a manual write, an older version)
    Traffic(store).page("ann", f"{SHOP}/shoes")
    [model] = [event for shard in store.raw.values() for event in shard]
    store.raw.clear()
    item = model.serialize()
    item["page_url"] = {"S": f"{SHOP}/" + "é" * 1000}  # 21 + 2,000 bytes
    store.add_raw_item({"shard": {"S": str(model.shard)}, "sk": {"S": str(model.sk)}, **item})
    # When the workflow consolidates it
    run(store)
    # Then its log keeps the first 1,024 bytes: 21 + 501 x 2 = 1,023 (never half a character)
    [log] = logs_of(store, "page")
    assert log.url == f"{SHOP}/" + "é" * 501


def test_a_long_unicode_page_url_is_cut_by_bytes_never_inside_a_character(store: FakeWorkflowStore) -> None:
    # Given a page URL of 1,000 euro signs (3 UTF-8 bytes each) after "https://shop.example/" (21 bytes)
    Traffic(store).page("ann", f"{SHOP}/" + "€" * 1000)
    # When the workflow consolidates it
    run(store)
    # Then the log keeps 21 + 334 x 3 = 1,023 bytes, the click streams 21 + 163 x 3 = 510 bytes
    [log] = logs_of(store, "page")
    assert log.url == f"{SHOP}/" + "€" * 334
    assert pages(store) == ({page_key("1", f"{SHOP}/" + "€" * 163): 1}, 0)


# --- exactly once -----------------------------------------------------------------------------


def seed_mixed(store: FakeWorkflowStore) -> None:
    traffic = Traffic(store)
    for n in range(12):
        recipient = f"r{n % 4}"
        if n < 3:  # r0, r1 and r2 click once each
            traffic.click(recipient, "1")
        traffic.page(recipient, f"{SHOP}/p{n % 3}", via=("1", "2")[n % 2])
        if n % 3 == 0:
            traffic.transaction(recipient, "0.1", "EUR")


# 3 clicks, 12 page views, 4 transactions of 0.1 EUR
EXPECTED = {
    "opens": 3,
    "clicks": 3,
    "total_clicks": 3,
    "page_views": 12,
    "transactions": 4,
    "transaction_amount": {"EUR": "0.4"},
}
# page n is p{n % 3} after link 1 (n even) or 2 (n odd): each of the 6 pairs comes twice in 12
EXPECTED_PAGES = ({page_key(via, f"{SHOP}/p{p}"): 2 for via in ("1", "2") for p in range(3)}, 0)


def test_a_rerun_adds_nothing(store: FakeWorkflowStore) -> None:
    seed_mixed(store)
    run(store, batch_size=5, name="run-1")
    once = (counts(store), pages(store))
    assert run(store, batch_size=5, name="run-2").events_processed == 0
    assert (counts(store), pages(store)) == once
    assert counts(store) == EXPECTED
    assert pages(store) == EXPECTED_PAGES


@pytest.mark.parametrize("nth_put", [1, 3, 7, 12, 20])
def test_a_run_that_dies_mid_batch_then_replays_counts_each_event_once(
    store: FakeWorkflowStore, nth_put: int
) -> None:
    # Given the same traffic consolidated without a crash, in a store of its own
    reference = FakeWorkflowStore()
    reference.urls = store.urls
    seed_mixed(reference)
    run(reference, batch_size=5)

    # When a run dies on the nth item write, and the next run replays its pending batch
    seed_mixed(store)
    store.fault = lambda operation, n: operation == "put_item" and n == nth_put
    with pytest.raises(Crash):
        run(store, batch_size=5, name="dies")
    store.restart()
    store.lock_expires = 0  # the dead run's lock has expired
    run(store, batch_size=5, name="replays")

    # Then every total is what the uninterrupted run got
    assert counts(store) == counts(reference) == EXPECTED
    assert pages(store) == pages(reference) == EXPECTED_PAGES
    assert len(store.logs) == len(reference.logs) == 3 + 12 + 4
