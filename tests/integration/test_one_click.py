"""One-click unsubscribe and the opt-out feed on moto: the API renders (headers, addresses kept), the
redirect function takes the POST, the workflow counts it, the feed lists it, an erasure removes it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from functions.api import handler as api_handler
from functions.api import launcher
from functions.consolidate import handler as consolidate_handler
from functions.redirect import handler as redirect_handler
from functions.shared import raw_events
from functions.shared.models import (
    EMAIL_PREFIX,
    DeliveryStatsModel,
    RawEventModel,
    RecipientEmailModel,
    TrackingLogModel,
)
from functions.shared.opt_out_feed import FEED_KEY
from functions.shared.tables import opt_out_feed_partition
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext, http_event, json_body

PROVIDER = "Mozilla/5.0 (compatible; mailbox provider unsubscribe)"
HTML = '<p>Hi</p><a href="https://shop.example/sale">Sale</a><a href="https://shop.example/bye" data-track="optout">Bye</a>'


@pytest.fixture
def stack(aws_tables: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(redirect_handler, "_targets", None)
    monkeypatch.setattr(redirect_handler, "_sink", None)
    # The feed waits for the honeypot burst and the late-event grace (10 minutes); here, not at all.
    monkeypatch.setenv("MSGTRACK_OPT_OUT_FEED_DELAY_SECONDS", "0")
    yield


def api(method: str, path: str, body: Any = None, **query: str) -> dict[str, Any]:
    return api_handler.lambda_handler(http_event(method, path, body=body, query=query or None), FakeContext())


def redirect(method: str, url: str, body: str | None = None) -> dict[str, Any]:
    path = "/" + url.split("/", 3)[3]
    headers = {"content-type": "application/x-www-form-urlencoded"} if body is not None else {}
    event = http_event(method, path, token=None, body=body, headers=headers, user_agent=PROVIDER)
    return redirect_handler.lambda_handler(event, FakeContext())


def unsubscribe_url(message: dict[str, Any]) -> str:
    [url] = re.findall(r"<(https://[^>]+)>", message["headers"]["List-Unsubscribe"])
    return str(url)


def run_workflow(run_id: str) -> None:
    consolidate_handler.lambda_handler({"run_id": run_id, "trigger": "api"}, FakeContext())


def raw_count() -> int:
    return sum(RawEventModel.count(shard) for shard in raw_events.shards())


def render(recipients: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    created = json_body(api("POST", "/api/deliveries", {"label": "News", "html": HTML}))
    answer = api("POST", f"/api/deliveries/{created['id']}/messages", {"recipients": recipients})
    assert answer["statusCode"] == 200
    return str(created["id"]), json_body(answer)["messages"]


def test_one_click_from_rendering_to_the_feed(stack: None) -> None:
    # Given two rendered messages, one recipient with an address, one without
    delivery_id, messages = render([{"id": "r1", "email": "ann@example.com"}, {"id": "r2"}])
    assert RecipientEmailModel.get(EMAIL_PREFIX + "r1", delivery_id).email == "ann@example.com"
    first, second = (unsubscribe_url(m) for m in messages)
    # When a scanner GETs both unsubscribe URLs, then both providers POST the one-click body
    assert redirect("GET", first)["statusCode"] == 200
    assert redirect("GET", second)["statusCode"] == 200
    assert raw_count() == 0  # a GET records nothing
    assert redirect("POST", first, "List-Unsubscribe=One-Click")["statusCode"] == 200
    assert redirect("POST", second, "List-Unsubscribe=One-Click")["statusCode"] == 200
    assert redirect("POST", first, "List-Unsubscribe=One-Click")["statusCode"] == 200  # a retry
    assert raw_count() == 3
    # And the workflow runs
    run_workflow("run-1")
    # Then both are opt-outs, each counted once
    stats = json_body(api("GET", f"/api/deliveries/{delivery_id}/tracking/statistics"))
    assert stats["opt_outs"] == 2 and stats["human"]["opt_outs"] == 2
    logs = json_body(api("GET", f"/api/deliveries/{delivery_id}/tracking/logs", type="opt_out"))["items"]
    assert len(logs) == 3 and all(log["url_id"] is None for log in logs)
    # And the feed lists them oldest first, with the address given at rendering and source one_click
    feed = json_body(api("GET", "/api/opt-outs"))
    assert [(i["recipient_id"], i["email"], i["delivery_id"], i["source"]) for i in feed["items"]] == [
        ("r1", "ann@example.com", delivery_id, "one_click"),
        ("r2", None, delivery_id, "one_click"),
        ("r1", "ann@example.com", delivery_id, "one_click"),
    ]
    assert feed["next_cursor"] is None
    # And it pages with signed cursors
    page = json_body(api("GET", "/api/opt-outs", limit="2"))
    rest = json_body(api("GET", "/api/opt-outs", cursor=page["next_cursor"]))
    assert [i["event_id"] for i in page["items"] + rest["items"]] == [i["event_id"] for i in feed["items"]]


def test_an_erasure_erases_the_address_and_the_feed_entries(stack: None, reliability: Any) -> None:
    # Given r1's one-click opt-out, consolidated and in the feed
    delivery_id, messages = render(
        [{"id": "r1", "email": "ann@example.com"}, {"id": "r2", "email": "b@x.org"}]
    )
    redirect("POST", unsubscribe_url(messages[0]), "List-Unsubscribe=One-Click")
    run_workflow("run-1")
    assert [i["recipient_id"] for i in json_body(api("GET", "/api/opt-outs"))["items"]] == ["r1"]

    class RunNow:
        def launch(self, run_id: str) -> None:
            run_workflow(run_id)

    # When the recipient's erasure is requested
    launcher.configure(RunNow())
    try:
        assert api("DELETE", "/api/recipients/r1/tracking")["statusCode"] == 202
    finally:
        launcher.configure(None)
    # Then the address kept for the feed is gone, and so is the feed entry (its log was erased)
    assert list(RecipientEmailModel.query(EMAIL_PREFIX + "r1")) == []
    assert RecipientEmailModel.get(EMAIL_PREFIX + "r2", delivery_id).email == "b@x.org"
    assert json_body(api("GET", "/api/opt-outs"))["items"] == []
    # And the count stays: indicators hold counts, not people
    assert int(DeliveryStatsModel.get(delivery_id, "stats").opt_outs) == 1
    reliability.record(
        "Security", "erasure of a recipient who unsubscribed (moto)", 1, "address and feed entry gone"
    )


def test_the_feed_waits_for_a_run_that_settles_the_burst(
    stack: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the default delay (the longest burst plus the late-event grace)
    monkeypatch.delenv("MSGTRACK_OPT_OUT_FEED_DELAY_SECONDS")
    _, messages = render([{"id": "r1", "email": "ann@example.com"}])
    redirect("POST", unsubscribe_url(messages[0]), "List-Unsubscribe=One-Click")
    # When a run consolidates it right away
    run_workflow("run-1")
    # Then it is not listed yet: a honeypot hit within its burst could still make it a scanner's
    assert json_body(api("GET", "/api/opt-outs"))["items"] == []


def test_bad_feed_parameters_are_4xx(stack: None) -> None:
    assert api("GET", "/api/opt-outs", limit="500")["statusCode"] == 422
    assert api("GET", "/api/opt-outs", since="not a time")["statusCode"] == 422
    assert api("GET", "/api/opt-outs", cursor="x.y")["statusCode"] == 400


def test_a_scanners_one_click_found_out_by_a_later_honeypot_hit_leaves_the_index(stack: None) -> None:
    # Given a scanner's POST from the confirmation page, consolidated (and, with no settle delay, listed)
    delivery_id, [message] = render([{"id": "r1", "email": "ann@example.com"}])
    scanner = {"source_ip": "40.107.1.9", "token": None}
    unsubscribe_path = "/" + unsubscribe_url(message).split("/", 3)[3]
    posted = http_event(
        "POST",
        unsubscribe_path,
        body="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
        **scanner,  # type: ignore[arg-type]
    )
    assert redirect_handler.lambda_handler(posted, FakeContext())["statusCode"] == 200
    run_workflow("run-1")
    assert [i["recipient_id"] for i in json_body(api("GET", "/api/opt-outs"))["items"]] == ["r1"]
    # When the same address follows the message's honeypot link within the burst, and a run consolidates it
    [honeypot] = re.findall(r'href="https://[^"]+(/r/[^"]+)" aria-hidden', message["html"])
    event = http_event("GET", honeypot, **scanner)  # type: ignore[arg-type]
    assert redirect_handler.lambda_handler(event, FakeContext())["statusCode"] == 200
    run_workflow("run-2")
    # Then the opt-out is a scanner's: its rewritten log left the feed's index, the human count fell
    assert json_body(api("GET", "/api/opt-outs"))["items"] == []
    [log] = json_body(api("GET", f"/api/deliveries/{delivery_id}/tracking/logs", type="opt_out"))["items"]
    assert log["machine"] == "scanner"
    statistics = json_body(api("GET", f"/api/deliveries/{delivery_id}/tracking/statistics"))
    assert (statistics["opt_outs"], statistics["human"]["opt_outs"]) == (1, 0)


def test_the_feed_lists_exactly_the_peoples_opt_outs_each_once_from_their_feed_copies(stack: None) -> None:
    # Given r1's one-click unsubscribe, r2's click on the opt-out link, a proof's click on it, and r3's
    # click on an ordinary link, consolidated by two runs (the second has nothing new)
    delivery_id, messages = render([{"id": f"r{n}", "email": f"r{n}@example.com"} for n in (1, 2, 3)])
    urls = {
        url["category"]: url["id"] for url in json_body(api("GET", f"/api/deliveries/{delivery_id}"))["urls"]
    }
    redirect("POST", unsubscribe_url(messages[0]), "List-Unsubscribe=One-Click")

    def follow(recipient: str, url_id: str, proof: bool = False) -> None:
        token = signer().sign(LinkClaims("c", delivery_id, recipient, url_id, proof=proof))
        assert (
            redirect_handler.lambda_handler(http_event("GET", f"/r/{token}"), FakeContext())["statusCode"]
            == 302
        )

    follow("r2", urls["opt_out"])
    follow("r9", urls["opt_out"], proof=True)
    follow("r3", urls["click"])
    run_workflow("run-1")
    run_workflow("run-2")
    # Then the feed lists r1's and r2's opt-outs, once each, and nothing else
    feed = json_body(api("GET", "/api/opt-outs"))["items"]
    assert sorted((i["recipient_id"], i["source"], i["email"]) for i in feed) == [
        ("r1", "one_click", "r1@example.com"),
        ("r2", "link", "r2@example.com"),
    ]
    # And what the feed's index holds are their two feed copies, not the chain items beside them
    copies = list(TrackingLogModel.opt_out_feed_index.query(FEED_KEY))
    assert sorted((str(log.partition), str(log.recipient_id)) for log in copies) == [
        (opt_out_feed_partition(delivery_id), "r1"),
        (opt_out_feed_partition(delivery_id), "r2"),
    ]
