"""The recipient Tracking tab on moto, served from the recipients' state items (no index on the logs).

Pages concatenated are the recipient's logs across deliveries in exact time order, each page reads a
bounded number of logs, a deleted delivery drops out, and an erasure leaves nothing to list.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.api import reports
from functions.api.handler import lambda_handler
from functions.consolidate.batch import keep_log, recipient_key
from functions.consolidate.store import DynamoWorkflowStore
from functions.shared import recipient_log_pages, recipient_logs
from functions.shared.limits import MAX_RECIPIENT_LOGS
from functions.shared.log_chain_store import write_logs
from functions.shared.log_chains import chain_of
from functions.shared.models import DeliveryModel, RecipientStateModel, TrackingLogModel
from tests.apigw import FakeContext, http_event, json_body

DELIVERIES = {"d1": "November news", "d2": "Flash sale", "d3": "Winter"}
_recipients = itertools.count()


def call(method: str, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    return lambda_handler(http_event(method, path, query=query), FakeContext())


@pytest.fixture
def deliveries(aws_tables: None) -> Iterator[None]:
    for delivery_id, label in DELIVERIES.items():
        DeliveryModel(
            delivery_id=delivery_id,
            created=f"2026-11-23T07:00:00.000Z#{delivery_id}",
            created_at="2026-11-23T07:00:00.000Z",
            label=label,
            html="<p>hi</p>",
        ).save()
    yield


def log(delivery_id: str, recipient_id: str, second: int, event_id: str, kind: str, machine: bool) -> str:
    """A tracking log as the workflow writes it, listed in its recipient's state; its sort key."""
    at = f"2026-11-23T08:{second // 60:02d}:{second % 60:02d}.000Z"
    sk = f"{at}#{event_id}"
    written = TrackingLogModel(
        delivery_id=delivery_id,
        sk=sk,
        event_id=event_id,
        recipient_id=recipient_id,
        type=kind,
        url_id="1" if kind == "click" else None,
        at=at,
        machine="bot" if machine else None,
        machine_reason="python-requests" if machine else None,
    )
    assert write_logs([written]) == []  # into its chain
    list_in_state(delivery_id, recipient_id, sk)
    return sk


def list_in_state(delivery_id: str, recipient_id: str, sk: str) -> None:
    """List a tracking log in its recipient's state, as the tracking workflow does (through its store)."""
    store = DynamoWorkflowStore()
    key = recipient_key(delivery_id, recipient_id)
    state = store.load_indicators([key]).get(key) or RecipientStateModel(
        delivery_id=delivery_id, sk=key[1], recipient_id=recipient_id
    )
    assert isinstance(state, RecipientStateModel)
    pages = keep_log(state, sk)  # past the bound, the list spills to a page written with the state
    assert store.put_items([state, *pages]) == []


def pages(recipient_id: str, query: dict[str, str]) -> list[list[dict[str, Any]]]:
    found = []
    cursor = None
    while True:
        answer = call(
            "GET",
            f"/api/recipients/{recipient_id}/tracking",
            {**query, **({"cursor": cursor} if cursor else {})},
        )
        assert answer["statusCode"] == 200, answer["body"]
        body = json_body(answer)
        found.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return found
        assert len(found) < 200, "the tab never ends"


HITS = st.lists(
    st.tuples(
        st.sampled_from(sorted(DELIVERIES)),
        st.integers(0, 3599),  # seconds after 08:00: times collide across deliveries
        st.sampled_from(["open", "click"]),
        st.booleans(),  # a machine's
    ),
    max_size=25,
)


def keys_read_per_load(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many log keys each ``recipient_logs.load`` reads from now on, in order."""
    read: list[int] = []
    load = recipient_logs.load

    def counted(keys: Any) -> Any:
        keys = list(keys)
        read.append(len(keys))
        return load(keys)

    monkeypatch.setattr(recipient_logs, "load", counted)
    return read


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hits=HITS,
    bound=st.sampled_from([MAX_RECIPIENT_LOGS, 2, 5]),  # small: the states spill to pages, late keys too
    limit=st.integers(1, 6),
    order=st.sampled_from(["asc", "desc"]),
    traffic=st.sampled_from(["all", "human"]),
    delivery=st.sampled_from(["", "d2"]),
    kind=st.sampled_from(["", "click"]),
)
def test_pages_concatenated_are_the_recipients_logs_in_exact_time_order(
    deliveries: None,
    hits: list[tuple[str, int, str, bool]],
    limit: int,
    order: str,
    traffic: str,
    delivery: str,
    kind: str,
    bound: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a recipient's logs across three deliveries (and another recipient's at the same times),
    # in any time order, listed in states that list at most ``bound`` keys and spill the others
    monkeypatch.setattr(recipient_log_pages, "MAX_RECIPIENT_LOGS", bound)
    recipient = f"r{next(_recipients)}"
    expected = []
    for n, (delivery_id, second, log_type, machine) in enumerate(hits):
        sk = log(delivery_id, recipient, second, f"{recipient}e{n:03d}", log_type, machine)
        log(delivery_id, recipient + "x", second, f"{recipient}x{n:03d}", log_type, machine)
        if (
            (not delivery or delivery_id == delivery)
            and (not kind or log_type == kind)
            and (traffic == "all" or not machine)
        ):
            expected.append((sk, delivery_id))
    expected.sort(reverse=order == "desc")
    read = keys_read_per_load(monkeypatch)
    # When the tab is paged through with these filters
    query = {"limit": str(limit), "order": order, "traffic": traffic, "delivery_id": delivery, "type": kind}
    found = pages(recipient, {name: value for name, value in query.items() if value})
    # Then the pages hold exactly the matching logs, in time order, none twice, each page within its limit
    assert [(item["event_id"], item["delivery_id"]) for page in found for item in page] == [
        (sk.split("#", 1)[1], delivery_id) for sk, delivery_id in expected
    ]
    assert all(len(page) <= limit for page in found)
    assert {item["delivery_label"] for page in found for item in page} <= set(DELIVERIES.values())
    # And each page reads a bounded number of logs: the page and one more when nothing is filtered out
    unfiltered = traffic == "all" and not kind
    assert all(n <= (limit + 1 if unfiltered else reports.MAX_LOGS_READ_PER_PAGE) for n in read)


def test_a_delivery_filter_reads_only_the_page_and_one_more(
    deliveries: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a recipient with three logs in d2 at the same second and one in d1 (hypothesis found it)
    keys = [log("d2", "rsame", 0, f"same{n}", "open", False) for n in range(3)]
    log("d1", "rsame", 0, "same-d1", "open", False)
    read = keys_read_per_load(monkeypatch)
    # When the tab is paged one log at a time for d2 only
    found = pages("rsame", {"limit": "1", "order": "asc", "delivery_id": "d2"})
    # Then it lists d2's three logs, and each page reads its log and one more: the delivery filter
    # chooses whose keys are read, it discards nothing read
    assert [item["event_id"] for page in found for item in page] == [
        key.split("#", 1)[1] for key in sorted(keys)
    ]
    assert read and all(n <= 2 for n in read)


def test_a_recipient_with_more_logs_than_their_state_lists_is_still_listed_whole(deliveries: None) -> None:
    # Given a recipient with more logs in d1 than the state lists (it spilled to pages), and one in d2
    keys = [log("d1", "rbusy", n, f"busy{n:04d}", "open", True) for n in range(2 * MAX_RECIPIENT_LOGS + 7)]
    keys.append(log("d2", "rbusy", 30, "other", "click", False))
    state = DynamoWorkflowStore().load_indicators([recipient_key("d1", "rbusy")])[
        recipient_key("d1", "rbusy")
    ]
    assert isinstance(state, RecipientStateModel) and state.log_pages == 2 and not state.logs_overflow
    # When the tab is paged through, oldest first and newest first
    ascending = pages("rbusy", {"limit": "40", "order": "asc"})
    descending = pages("rbusy", {"limit": "33"})
    # Then every log is there, in time order
    expected = [sk.split("#", 1)[1] for sk in sorted(keys)]
    assert [item["event_id"] for page in ascending for item in page] == expected
    assert [item["event_id"] for page in descending for item in page] == expected[::-1]
    # And an erasure finds every one of them, and the pages
    store = DynamoWorkflowStore()
    assert len(store.recipient_log_keys("rbusy")) == len(keys)
    spilled = [key for key in store.recipient_state_keys("rbusy") if key[1].startswith("l#")]
    assert len(spilled) == 2 and all(key[0] == "#r#rbusy" for key in spilled)


def test_a_deleted_delivery_disappears_from_the_tab(deliveries: None) -> None:
    # Given a recipient's logs in two deliveries
    log("d1", "rgone", 1, "kept", "open", False)
    log("d2", "rgone", 2, "dropped", "click", False)
    assert {item["delivery_id"] for page in pages("rgone", {}) for item in page} == {"d1", "d2"}
    # When d2 is deleted
    assert call("DELETE", "/api/deliveries/d2")["statusCode"] == 204
    # Then the tab no longer lists it
    assert [item["event_id"] for page in pages("rgone", {}) for item in page] == ["kept"]


def test_the_erasure_store_finds_every_log_and_state_of_the_recipient(deliveries: None) -> None:
    # Given a recipient's logs in three deliveries and another recipient's
    mine = {
        ("d1", log("d1", "rerase", 1, "a", "open", False)),
        ("d2", log("d2", "rerase", 2, "b", "click", False)),
    }
    mine.add(("d3", log("d3", "rerase", 3, "c", "open", True)))
    log("d1", "rother", 1, "z", "open", False)
    store = DynamoWorkflowStore()
    # When the erasure looks the recipient up
    logs = set(store.recipient_log_keys("rerase"))
    states = set(store.recipient_state_keys("rerase"))
    # Then it finds exactly their logs and their states, and deleting them leaves the tab empty
    assert logs == {(chain_of(d, "rerase"), sk) for d, sk in mine}
    assert states == {(d, "r#rerase") for d in DELIVERIES}
    store.delete_logs(logs)
    store.delete_indicators(states)
    assert [item for page in pages("rerase", {}) for item in page] == []
    assert [item for page in pages("rother", {}) for item in page] != []
