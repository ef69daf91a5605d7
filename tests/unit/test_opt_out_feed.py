"""One-click opt-outs in the tracking workflow (counted as opt-outs exactly, taken off by the honeypot
burst) and the opt-out feed built from what the workflow wrote, once verdicts are final."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from functions.api import opt_outs
from functions.api.delivery_repository import RecipientEmail
from functions.api.opt_outs import settled_until
from functions.api.report_repository import RunRecord
from functions.shared.errors import InvalidCursor, InvalidRequest
from functions.shared.raw_events import ONE_CLICK, RawEvent
from tests.fakes_opt_outs import FakeOptOutStore
from tests.fakes_workflow import Crash, FakeWorkflowStore
from tests.unit.test_workflow import CHROME, T0, Clock, seeded_store, workflow
from tests.unit.test_workflow_human import add, stats

SETTLE = timedelta(seconds=600)  # MAX_BURST_SECONDS + the default late-event grace
GMAIL_POST = "Mozilla/5.0 (compatible; mailbox provider)"


def one_click(
    store: FakeWorkflowStore,
    event_id: str,
    recipient: str,
    at: datetime,
    *,
    client: str | None = "k-provider",
    proof: bool = False,
) -> None:
    """The raw event the redirect records for a one-click POST (redirect/unsubscribe.py)."""
    store.add_raw(
        RawEvent(
            event_id,
            "click",
            "d1",
            recipient,
            None,
            at,
            GMAIL_POST,
            None,
            "198.51.100.0",
            proof,
            client_key=client,
            source=ONE_CLICK,
        )
    )


def feed_logs(store: FakeWorkflowStore) -> dict[str, Any]:
    return {
        sk.split("#")[-1]: log.opt_out_feed for (_, sk), log in store.logs.items() if log.type == "opt_out"
    }


def test_a_one_click_unsubscribe_is_an_opt_out_of_the_recipient_counted_like_an_opt_out_link() -> None:
    # Given r1's one-click unsubscribe, r2's opt-out link, and r1 unsubscribing again by the link and by
    # a repeated POST (a provider retrying)
    store = seeded_store()
    one_click(store, "u1", "r1", T0)
    add(store, "l2", "r2", "3", T0 + timedelta(seconds=5), person="p2", client="k2")
    add(store, "l1", "r1", "3", T0 + timedelta(seconds=9), person="p1", client="k1")
    one_click(store, "u1b", "r1", T0 + timedelta(seconds=20))
    # When the workflow runs
    run = workflow(store).run("run-1", "schedule")
    assert run.status == "succeeded"
    # Then opt_outs counts recipients (r1 and r2), in all traffic and in human traffic
    figures = stats(store)
    assert figures["all"]["opt_outs"] == 2
    assert figures["human"]["opt_outs"] == 2
    # And a one-click unsubscribe is a tracking event of the recipient: it proves an open, no click
    assert figures["all"]["opens"] == 2 and figures["human"]["opens"] == 2
    assert figures["all"]["clicks"] == 0 and figures["all"]["total_clicks"] == 0
    # And it is logged as an opt_out without a URL, in the feed like the links
    one = next(log for (_, sk), log in store.logs.items() if sk.endswith("#u1"))
    assert (one.type, one.url_id, one.url, one.counted, one.machine) == ("opt_out", None, None, True, None)
    assert feed_logs(store) == {"u1": "human", "l2": "human", "l1": "human", "u1b": "human"}
    # And no URL's figures moved
    assert int(store.indicators[("d1", "url#3")].clicks) == 2


def test_a_proof_one_click_is_logged_and_neither_counted_nor_in_the_feed() -> None:
    store = seeded_store()
    one_click(store, "u1", "r1", T0, proof=True)
    workflow(store).run("run-1", "schedule")
    assert ("d1", "stats") not in store.indicators  # nothing counted at all
    assert feed_logs(store) == {"u1": None}


def test_machine_opt_outs_are_counted_in_all_traffic_and_never_in_the_feed() -> None:
    # Given a bot following the opt-out link
    store = seeded_store()
    add(store, "l1", "r1", "3", T0, person="p1", machine="bot", client="k1", ua="python-requests/2.31")
    workflow(store).run("run-1", "schedule")
    assert stats(store)["all"]["opt_outs"] == 1
    assert stats(store)["human"].get("opt_outs", 0) == 0  # no human hit: no human figures at all
    assert feed_logs(store) == {"l1": None}


@pytest.mark.parametrize("honeypot_run", ["same", "later"])
def test_a_one_click_in_a_honeypot_burst_is_a_scanners_and_leaves_the_feed(honeypot_run: str) -> None:
    # Given a scanner that followed the honeypot link and submitted the confirmation page from the same
    # address within the burst, and a person's one-click on another message
    store = seeded_store()
    one_click(store, "u5", "r5", T0, client="k5")
    one_click(store, "u1", "r1", T0, client="k1")
    clock = Clock(T0 + timedelta(seconds=30))
    if honeypot_run == "later":  # the opt-out is consolidated (and in the feed) before the honeypot hit
        workflow(store, clock).run("run-1", "schedule")
        assert feed_logs(store) == {"u5": "human", "u1": "human"}
        assert stats(store)["human"]["opt_outs"] == 2
    add(store, "hp", "r5", None, T0 + timedelta(seconds=10), client="k5", honeypot=True, machine="scanner")
    clock.now = T0 + timedelta(hours=1)
    # When the workflow consolidates the honeypot hit
    workflow(store, clock).run("run-2", "schedule")
    # Then r5's opt-out is a scanner's: still in all traffic, off the human figures and the feed
    assert stats(store)["all"]["opt_outs"] == 2
    assert stats(store)["human"]["opt_outs"] == 1
    assert feed_logs(store) == {"u5": None, "u1": "human"}


def test_a_crash_anywhere_still_counts_the_one_click_once_and_settles_the_feed() -> None:
    for nth in range(1, 200):
        store = seeded_store()
        one_click(store, "u5", "r5", T0, client="k5")
        add(
            store, "hp", "r5", None, T0 + timedelta(seconds=10), client="k5", honeypot=True, machine="scanner"
        )
        one_click(store, "u1", "r1", T0, client="k1")
        store.fault = lambda op, count, nth=nth: count == nth
        clock = Clock(T0 + timedelta(hours=1))
        try:
            workflow(store, clock, batch_size=1).run("crashing", "schedule")
        except Crash:
            pass
        else:
            break
        store.restart()
        clock.now += timedelta(hours=1)
        workflow(store, clock, batch_size=1).run("rerun", "schedule")
        assert stats(store)["all"]["opt_outs"] == 2, nth
        assert stats(store)["human"]["opt_outs"] == 1, nth
        assert feed_logs(store) == {"u5": None, "u1": "human"}, nth
    else:
        pytest.fail("the workflow never ran out of calls to crash")


# --- the feed -----------------------------------------------------------------------------------


def test_the_feed_ends_where_verdicts_are_final_the_newest_complete_run_less_the_burst_and_grace() -> None:
    runs = [
        RunRecord("run", "running", "schedule", "2026-11-23T12:00:00.000Z", None, 0, ()),
        RunRecord(
            "run",
            "succeeded",
            "schedule",
            "2026-11-23T11:00:00.000Z",
            None,
            0,
            ("stopped early to stay within the time limit",),
        ),
        RunRecord("run", "failed", "schedule", "2026-11-23T10:30:00.000Z", None, 0, ()),
        RunRecord(
            "run", "succeeded", "schedule", "2026-11-23T10:00:00.000Z", None, 0, ("a write quarantined",)
        ),
    ]
    assert settled_until(runs, 600) == "2026-11-23T09:50:00.000Z"
    assert settled_until(runs[:3], 600) is None
    assert settled_until([], 600) is None
    assert opt_outs.settle_seconds() == SETTLE.total_seconds()  # the longest burst + the grace


def feed_store(store: FakeWorkflowStore) -> FakeOptOutStore:
    feed = FakeOptOutStore(store)
    feed.deliveries.record_emails(
        "d1", [RecipientEmail("r1", "ann@example.com", "x"), RecipientEmail("r2", "bob@example.org", "x")]
    )
    return feed


def test_the_feed_lists_human_opt_outs_oldest_first_with_email_and_source() -> None:
    # Given r1's one-click, r2's opt-out link, r3's (no email given) link and a bot's, consolidated
    store = seeded_store()
    one_click(store, "u1", "r1", T0 + timedelta(seconds=30))
    add(store, "l2", "r2", "3", T0, person="p2", client="k2")
    add(store, "l3", "r3", "3", T0 + timedelta(seconds=60), person="p3", client="k3")
    add(store, "b4", "r4", "3", T0, person="p4", machine="bot", client="k4", ua="curl/8.0")
    workflow(store, Clock(T0 + SETTLE + timedelta(minutes=5))).run("run-1", "schedule")
    # When a sending system reads the feed
    page = opt_outs.page(store=feed_store(store))
    # Then it lists the people's opt-outs oldest first, with the address each message went to
    assert [(o.recipient_id, o.email, o.delivery_id, o.source, o.event_id) for o in page.items] == [
        ("r2", "bob@example.org", "d1", "link", "l2"),
        ("r1", "ann@example.com", "d1", "one_click", "u1"),
        ("r3", None, "d1", "link", "l3"),
    ]
    assert page.items[0].at.startswith("2026-11-23T09:00:00")
    assert page.next_cursor is None


def test_an_opt_out_is_listed_only_once_a_complete_run_started_late_enough_to_settle_it() -> None:
    # Given a one-click consolidated by a run that started a minute after it
    store = seeded_store()
    one_click(store, "u1", "r1", T0)
    clock = Clock(T0 + timedelta(minutes=1))
    workflow(store, clock).run("run-1", "schedule")
    feed = feed_store(store)
    # Then the feed does not list it yet: a honeypot hit within the burst may still come
    assert opt_outs.page(store=feed).items == ()
    # When a run starts after its burst and the late-event grace have passed
    clock.now = T0 + SETTLE + timedelta(seconds=1)
    workflow(store, clock).run("run-2", "schedule")
    # Then it is listed
    assert [o.event_id for o in opt_outs.page(store=feed).items] == ["u1"]


def test_the_feed_pages_with_signed_cursors_and_since() -> None:
    store = seeded_store()
    for n in range(1, 6):
        one_click(store, f"u{n}", f"r{n}", T0 + timedelta(seconds=n))
    workflow(store, Clock(T0 + timedelta(hours=1))).run("run-1", "schedule")
    feed = feed_store(store)
    first = opt_outs.page(limit=2, store=feed)
    assert [o.event_id for o in first.items] == ["u1", "u2"]
    second = opt_outs.page(limit=2, cursor=first.next_cursor, store=feed)
    assert [o.event_id for o in second.items] == ["u3", "u4"]
    third = opt_outs.page(limit=2, cursor=second.next_cursor, store=feed)
    assert [o.event_id for o in third.items] == ["u5"] and third.next_cursor is None
    since = opt_outs.page(since=T0 + timedelta(seconds=4), store=feed)
    assert [o.event_id for o in since.items] == ["u4", "u5"]


@pytest.mark.parametrize("limit", [0, 201, -1])
def test_a_limit_out_of_range_is_refused(limit: int) -> None:
    with pytest.raises(InvalidRequest):
        opt_outs.page(limit=limit, store=feed_store(seeded_store()))


def test_a_tampered_or_foreign_cursor_is_refused() -> None:
    from functions.api import cursors

    feed = feed_store(seeded_store())
    for cursor in (
        "garbage",
        cursors.encode({"before": "x"}),
        cursors.encode({"after": 3, "feed": "opt-outs"}),
    ):
        with pytest.raises(InvalidCursor):
            opt_outs.page(cursor=cursor, store=feed)


def test_an_erasure_deletes_the_recipients_addresses() -> None:
    feed = feed_store(seeded_store())
    feed.deliveries.record_emails("d2", [RecipientEmail("r1", "ann@example.net", "x")])
    assert feed.erase_emails("r1") == 2
    assert set(feed.deliveries.emails) == {("r2", "d1")}


def test_chrome_is_a_person_here_too() -> None:  # the helpers' default user agent: a person's
    assert "Chrome" in CHROME


# --- the route ----------------------------------------------------------------------------------


@pytest.fixture
def installed() -> Any:
    store = seeded_store()
    one_click(store, "u1", "r1", T0)
    workflow(store, Clock(T0 + timedelta(hours=1))).run("run-1", "schedule")
    feed = feed_store(store)
    opt_outs.use(feed)
    yield feed
    opt_outs.use(None)


def get(path: str, **query: str) -> dict[str, Any]:
    from functions.api.handler import lambda_handler
    from tests.apigw import FakeContext, http_event

    return lambda_handler(http_event("GET", path, query=query or None), FakeContext())


def test_the_route_answers_the_contracts_fields(installed: FakeOptOutStore) -> None:
    from tests.apigw import json_body

    response = get("/api/opt-outs")
    assert response["statusCode"] == 200
    body = json_body(response)
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert {k: item[k] for k in ("recipient_id", "email", "delivery_id", "source")} == {
        "recipient_id": "r1",
        "email": "ann@example.com",
        "delivery_id": "d1",
        "source": "one_click",
    }
    assert item["at"].endswith("Z")


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"limit": "0"}, 422),
        ({"limit": "201"}, 422),
        ({"limit": "ten"}, 422),
        ({"since": "yesterday"}, 422),
        ({"cursor": "forged.cursor"}, 400),
    ],
)
def test_bad_query_parameters_are_refused_with_a_message(
    installed: FakeOptOutStore, query: dict[str, str], status: int, reliability: Any
) -> None:
    from tests.apigw import json_body

    response = get("/api/opt-outs", **query)
    assert response["statusCode"] == status
    assert json_body(response)["message"]
    assert installed.reads == 0  # refused before reading anything
    reliability.record(
        "Bad input", "opt-out feed with a bad since, limit or cursor", 1, f"{status}, nothing read"
    )


def test_the_route_needs_the_api_token(installed: FakeOptOutStore) -> None:
    from functions.api.handler import lambda_handler
    from tests.apigw import FakeContext, http_event

    response = lambda_handler(http_event("GET", "/api/opt-outs", token=None), FakeContext())
    assert response["statusCode"] == 401


def test_a_one_click_on_a_deleted_delivery_counts_nowhere_but_is_still_in_the_feed() -> None:
    # Given a delivery deleted after sending, and a recipient who then unsubscribes in one click
    store = seeded_store()
    store.delete_delivery("d1", "2026-11-23T08:00:00.000Z")
    one_click(store, "u1", "r1", T0)
    add(store, "l2", "r2", "3", T0, person="p2", client="k2")  # an opt-out link: no longer counted
    workflow(store).run("run-1", "schedule")
    # Then nothing is counted, but the person's explicit request is still for the sending system to honour
    assert ("d1", "stats") not in store.indicators
    assert feed_logs(store) == {"u1": "human", "l2": None}


def test_a_refused_opt_out_log_replaced_by_its_bare_facts_stays_in_the_feed() -> None:
    from functions.consolidate.quarantine import bare_log
    from functions.shared.models import TrackingLogModel

    log = TrackingLogModel(
        delivery_id="d1", sk="2026-11-23T09:00:00.000Z#u1", event_id="u1", recipient_id="r1", type="opt_out",
        at="2026-11-23T09:00:00.000Z", browser="x" * 10_000, opt_out_feed="human",
    )  # fmt: skip
    assert bare_log(log).opt_out_feed == "human"


def test_a_run_stopped_early_at_its_time_limit_does_not_move_the_feed_on() -> None:
    # Given opt-outs, and a run that stops at a checkpoint before its time limit, having read only some
    store = seeded_store()
    for n in range(1, 7):
        one_click(store, f"u{n}", f"r{n}", T0 + timedelta(seconds=n))
    remaining = iter([120_000] * 12 + [1_000] * 100)  # runs out after a few shards
    clock = Clock(T0 + timedelta(hours=1))
    first = workflow(store, clock, batch_size=2).run(
        "run-1", "schedule", remaining_ms=lambda: next(remaining)
    )
    # (which shards it reached depends on how the recipients hash over the shards: maybe none of these)
    assert first.status == "succeeded" and first.events_processed < 6
    assert first.errors.count("stopped early to stay within the time limit") == 1
    # Then the feed lists nothing yet: that run did not consolidate everything before its start
    feed = feed_store(store)
    assert opt_outs.page(store=feed).items == ()
    # When the next run finishes the work, the feed lists them all
    clock.now += timedelta(minutes=1)
    workflow(store, clock, batch_size=2).run("run-2", "schedule")
    assert [o.event_id for o in opt_outs.page(store=feed).items] == [f"u{n}" for n in range(1, 7)]
