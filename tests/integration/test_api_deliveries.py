"""Deliveries end to end through the real API handler, against DynamoDB as moto mocks it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

from functions.api import delivery_repository
from functions.api.delivery_repository import Delivery, DynamoDeliveryRepository, SentMessage
from functions.api.handler import lambda_handler
from functions.shared import models
from functions.shared.tokens import signer
from tests.apigw import FakeContext, http_event, json_body

HTML = """<html><body>
<p>Hello {{ first_name }},</p>
<p><a href="https://shop.example.com/offers?plan={{ plan }}">See the offers</a></p>
<p><a href="https://shop.example.com/news" data-label="News">Read the news</a></p>
<p><a href="https://shop.example.com/optout" data-track="optout">Unsubscribe</a></p>
<p><a href="mailto:help@example.com">Write to us</a></p>
</body></html>"""
TEXT = "Hello {{ first_name }}, see https://shop.example.com/news"

TRACKING = "https://tracking.example.com"
LINK = re.compile(re.escape(TRACKING) + r"/([ro])/([A-Za-z0-9_\-.]+)")


@pytest.fixture(autouse=True)
def dynamodb(aws_tables: None) -> Iterator[None]:
    delivery_repository.use(None)  # the DynamoDB-backed repository, inside moto
    yield


def call(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    return lambda_handler(http_event(method, path, **kwargs), FakeContext())


def create(label: str = "November news") -> dict[str, Any]:
    response = call("POST", "/api/deliveries", body={"label": label, "html": HTML, "text": TEXT})
    assert response["statusCode"] == 201, response["body"]
    body: dict[str, Any] = json_body(response)
    return body


def render(delivery_id: str, recipients: list[dict[str, Any]], proof: bool = False) -> list[dict[str, Any]]:
    response = call(
        "POST", f"/api/deliveries/{delivery_id}/messages", body={"recipients": recipients, "proof": proof}
    )
    assert response["statusCode"] == 200, response["body"]
    messages: list[dict[str, Any]] = json_body(response)["messages"]
    return messages


def recipients(first: int, last: int) -> list[dict[str, Any]]:
    """Recipients r<first>..r<last-1>: even numbers at example.com, odd ones at Mail.Example.ORG."""
    return [
        {
            "id": f"r{n}",
            "email": f"person{n}@example.com" if n % 2 == 0 else f"Person{n}@Mail.Example.ORG",
            "fields": {"first_name": f"Ann{n}", "plan": "gold" if n < 10 else "basic"},
        }
        for n in range(first, last)
    ]


def counts(delivery_id: str) -> models.SendCountsModel:
    return models.SendCountsModel.get(delivery_id, models.SENDS_SK, consistent_read=True)


def test_a_delivery_is_registered_with_numbered_urls_and_read_back() -> None:
    # Given a delivery's content with two click links, an opt-out link and a mailto link in the HTML
    # and a link in the text part
    # When it is registered
    created = create()

    # Then its http(s) links are numbered in order with their labels and categories; the text part's
    # link, labelled with its own address, is a URL of its own
    assert created["label"] == "November news"
    assert created["track_opens"] is True and created["track_clicks"] is True
    assert created["created_at"].endswith("Z")
    assert [(u["id"], u["url"], u["label"], u["category"], u["tracked"]) for u in created["urls"]] == [
        ("1", "https://shop.example.com/offers?plan={{ plan }}", "See the offers", "click", True),
        ("2", "https://shop.example.com/news", "News", "click", True),
        ("3", "https://shop.example.com/optout", "Unsubscribe", "opt_out", True),
        ("4", "https://shop.example.com/news", "https://shop.example.com/news", "click", True),
    ]

    # And reading it back gives the same answer plus the content
    response = call("GET", f"/api/deliveries/{created['id']}")
    assert response["statusCode"] == 200
    assert json_body(response) == {**created, "html": HTML, "text": TEXT}

    # And the send counters start at zero
    assert (counts(created["id"]).sent, counts(created["id"]).failed) == (0, 0)


def test_deliveries_are_listed_newest_first_one_page_at_a_time() -> None:
    # Given two deliveries
    older = create("older")
    newer = create("newer")

    # When they are listed one per page
    first = call("GET", "/api/deliveries", query={"limit": "1"})
    first_page = json_body(first)
    second_page = json_body(
        call("GET", "/api/deliveries", query={"limit": "1", "cursor": first_page["next_cursor"]})
    )

    # Then the newest comes first, each page carries one summary, and the last page has no cursor
    assert first["statusCode"] == 200
    assert [item["id"] for item in first_page["items"]] == [newer["id"]]
    assert [item["id"] for item in second_page["items"]] == [older["id"]]
    assert second_page["next_cursor"] is None
    assert first_page["items"][0] == {
        "id": newer["id"],
        "label": "newer",
        "track_opens": True,
        "track_clicks": True,
        "created_at": newer["created_at"],
        "url_count": 4,
    }

    # And a cursor that was tampered with is refused
    tampered = first_page["next_cursor"][:-2] + (
        "AA" if not first_page["next_cursor"].endswith("AA") else "BB"
    )
    response = call("GET", "/api/deliveries", query={"limit": "1", "cursor": tampered})
    assert response["statusCode"] == 400
    assert json_body(response)["error"] == "validation_error"


def test_sent_counts_each_recipient_once_however_often_it_is_rendered() -> None:
    # Given a delivery, fifty of whose recipients were already rendered once
    delivery_id = create()["id"]
    render(delivery_id, recipients(0, 50))

    # When 150 recipients (two transactions each) are rendered, twice
    render(delivery_id, recipients(0, 150))
    messages = render(delivery_id, recipients(0, 150))

    # Then every recipient has a message and each is counted once, per email domain too
    assert [m["recipient_id"] for m in messages] == [f"r{n}" for n in range(150)]
    sends = counts(delivery_id)
    assert sends.sent == 150
    assert sends.domains.as_dict() == {"example.com": 75, "mail.example.org": 75}
    stored = list(
        models.MessageModel.query(delivery_id, models.MessageModel.sk.startswith(models.MESSAGE_PREFIX))
    )
    assert len(stored) == 150
    assert {m.email_domain for m in stored} == {"example.com", "mail.example.org"}


def test_rendered_links_carry_tokens_that_verify_with_the_right_claims() -> None:
    # Given a delivery
    created = create()
    delivery_id = created["id"]

    # When a recipient's message is rendered
    [message] = render(delivery_id, [{"id": "r7", "email": "r7@example.com", "fields": {"plan": "gold"}}])

    # Then each tracked link and the pixel point at the tracking host with a verifiable token
    found = LINK.findall(message["html"])
    claims = [(kind, signer().verify(token)) for kind, token in found]
    clicks = sorted((c.url_id or "", c.fields) for kind, c in claims if kind == "r" and c.kind == "c")
    opens = [c for kind, c in claims if kind == "o"]
    assert clicks == [("1", {"plan": "gold"}), ("2", {}), ("3", {})]  # the text's URL is in the text
    # And one more /r/ link, the hidden honeypot: its own kind, no URL
    assert [(c.kind, c.url_id) for kind, c in claims if kind == "r" and c.kind != "c"] == [("h", None)]
    assert len(opens) == 1 and opens[0].kind == "o"
    assert all(c.delivery_id == delivery_id and c.recipient_id == "r7" and not c.proof for _, c in claims)
    assert "mailto:help@example.com" in message["html"]
    assert "https://shop.example.com" not in message["html"]

    # And the text part's link is tracked as well
    assert message["text"] is not None
    assert [signer().verify(token).url_id for _, token in LINK.findall(message["text"])] == ["4"]


def test_proofs_are_tracked_but_never_counted() -> None:
    # Given a delivery
    delivery_id = create()["id"]

    # When a proof is rendered
    [proof] = render(delivery_id, [{"id": "reviewer", "email": "boss@example.com"}], proof=True)

    # Then its tokens carry the proof flag, and nothing is sent or recorded
    tokens = [signer().verify(token) for _, token in LINK.findall(proof["html"])]
    assert tokens and all(t.proof for t in tokens)
    assert counts(delivery_id).sent == 0
    assert (
        models.MessageModel.count(delivery_id, models.MessageModel.sk.startswith(models.MESSAGE_PREFIX)) == 0
    )


def test_failures_are_counted_once_and_unknown_recipients_reported() -> None:
    # Given a delivery sent to 120 recipients, one of them also as a proof only
    delivery_id = create()["id"]
    render(delivery_id, recipients(0, 120))
    render(delivery_id, [{"id": "reviewer"}], proof=True)

    # When failures are reported for some of them, a proof recipient and a stranger, twice
    reported = [f"r{n}" for n in range(0, 110)] + ["reviewer", "stranger"]
    path = f"/api/deliveries/{delivery_id}/failures"
    first = call("POST", path, body={"recipient_ids": reported})
    second = call("POST", path, body={"recipient_ids": ["r0", "r110"]})

    # Then each message is counted as failed once
    assert first["statusCode"] == 200
    assert json_body(first) == {"failed": 110, "already_failed": [], "unknown": ["reviewer", "stranger"]}
    assert json_body(second) == {"failed": 1, "already_failed": ["r0"], "unknown": []}
    sends = counts(delivery_id)
    assert (sends.sent, sends.failed) == (120, 111)
    assert models.MessageModel.get(delivery_id, models.MESSAGE_PREFIX + "r110").failed is True


def test_an_unknown_delivery_is_not_found_everywhere() -> None:
    for method, path, body in [
        ("GET", "/api/deliveries/dmissing", None),
        ("POST", "/api/deliveries/dmissing/messages", {"recipients": [{"id": "r1"}]}),
        ("POST", "/api/deliveries/dmissing/failures", {"recipient_ids": ["r1"]}),
    ]:
        response = call(method, path, body=body)
        assert response["statusCode"] == 404, path
        assert json_body(response)["error"] == "not_found"


# --- the repository under concurrent writers ------------------------------------------------------


class ConflictOnce:
    """The models' connection, whose first transaction DynamoDB cancels for a concurrent writer."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.conflicts = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        if self.conflicts == 0:
            self.conflicts += 1
            cause = VerboseClientError(
                {"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}},
                "TransactWriteItems",
                cancellation_reasons=[None, CancellationReason("TransactionConflict")],
            )
            raise TransactWriteError("Failed to commit transaction", cause=cause)
        return self.connection.transact_write_items(**kwargs)


class StaleFirstRead(DynamoDeliveryRepository):
    """Reads messages as they were before another call marked them failed, once."""

    def __init__(self) -> None:
        self.reads = 0

    def _messages(self, delivery_id: str, recipient_ids: Any) -> dict[str, bool]:
        self.reads += 1
        known = super()._messages(delivery_id, recipient_ids)
        return dict.fromkeys(known, False) if self.reads == 1 else known


def stored_delivery(repo: DynamoDeliveryRepository) -> str:
    repo.add(Delivery("dconcurrent", "x", "<p>x</p>", None, True, True, (), "2026-11-23T08:00:00.000Z"), [])
    return "dconcurrent"


def test_a_transaction_cancelled_by_a_concurrent_writer_is_retried_and_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a delivery, and DynamoDB cancelling the first transaction for a conflict
    repo = DynamoDeliveryRepository()
    delivery_id = stored_delivery(repo)
    connection = ConflictOnce(delivery_repository._connection())
    pauses: list[int] = []
    monkeypatch.setattr(delivery_repository, "_connection", lambda: connection)
    monkeypatch.setattr(delivery_repository, "_back_off", pauses.append)

    # When messages are recorded and one of them reported failed, each meeting one conflict
    recorded = repo.record_messages(delivery_id, [SentMessage(f"r{n}", "example.com", "t") for n in range(3)])
    connection.conflicts = 0
    report = repo.mark_failed(delivery_id, ["r1"])

    # Then both were retried after a pause and counted exactly once
    assert pauses == [0, 0]
    assert (recorded, report.failed) == (3, 1)
    sends = repo.send_counts(delivery_id)
    assert (sends.sent, sends.failed, dict(sends.domains)) == (3, 1, {"example.com": 3})


def test_a_failure_marked_meanwhile_by_another_call_is_not_counted_twice() -> None:
    # Given two messages, the first already marked failed, and a reader that has not seen it yet
    plain = DynamoDeliveryRepository()
    delivery_id = stored_delivery(plain)
    plain.record_messages(delivery_id, [SentMessage("r1", None, "t"), SentMessage("r2", None, "t")])
    plain.mark_failed(delivery_id, ["r1"])
    stale = StaleFirstRead()

    # When both are reported failed through the stale reader
    report = stale.mark_failed(delivery_id, ["r1", "r2"])

    # Then DynamoDB's condition catches the stale read: only the second is newly counted
    assert (report.failed, report.already_failed, report.unknown) == (1, ("r1",), ())
    assert stale.reads == 2
    assert plain.send_counts(delivery_id).failed == 2
