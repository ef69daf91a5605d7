"""One-click unsubscribe over HTTP, as a mailbox provider and a sending system use it: render, the
provider POSTs the List-Unsubscribe URL, the workflow runs, the statistics count the opt-out and the
feed lists it with the address given at rendering; a GET (a scanner) records nothing, a forged token is
a 404. Run against its own `msgtrack serve`, whose feed lists an opt-out as soon as a run started after
it (MSGTRACK_OPT_OUT_FEED_DELAY_SECONDS=0), so the test need not wait out a honeypot burst."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.apigw import API_TOKEN
from tests.e2e.conftest import local_stack
from tests.e2e.test_story import run_workflow

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
HTML = '<p><a href="https://shop.example.com/sale">Sale</a> <a href="https://shop.example.com/bye" data-track="optout">Unsubscribe</a></p>'
HEADER = re.compile(r"^<(http://127\.0\.0\.1:\d+/u/[A-Za-z0-9_\-.]+)>$")
ONE_CLICK = {"List-Unsubscribe": "One-Click"}  # requests form-encodes it: List-Unsubscribe=One-Click


@pytest.fixture(scope="module")
def stack() -> Iterator[str]:
    with local_stack(env={"MSGTRACK_OPT_OUT_FEED_DELAY_SECONDS": "0"}) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def api(stack: str) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield session


def render(
    api: requests.Session, base_url: str, recipients: list[dict[str, Any]]
) -> tuple[str, list[dict[str, Any]]]:
    created = api.post(
        f"{base_url}/api/deliveries", json={"label": f"One-click {RUN}", "html": HTML}, timeout=30
    )
    assert created.status_code == 201, created.text
    delivery_id = created.json()["id"]
    rendered = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages", json={"recipients": recipients}, timeout=30
    )
    assert rendered.status_code == 200, rendered.text
    return delivery_id, rendered.json()["messages"]


def test_a_provider_one_click_reaches_the_statistics_the_logs_and_the_feed(
    api: requests.Session, stack: str
) -> None:
    # Given a delivery rendered for a recipient with an address and one without
    ann, bob = f"ann-{RUN}", f"bob-{RUN}"
    delivery_id, messages = render(api, stack, [{"id": ann, "email": f"{ann}@example.com"}, {"id": bob}])
    urls = {}
    for message in messages:
        assert message["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        match = HEADER.match(message["headers"]["List-Unsubscribe"])
        assert match, message["headers"]
        urls[message["recipient_id"]] = match.group(1)
    # When a link scanner GETs both URLs (the confirmation page), and HEADs them
    for url in urls.values():
        page = requests.get(url, timeout=30, allow_redirects=False)
        assert page.status_code == 200 and '<form method="post">' in page.text
        assert "Set-Cookie" not in page.headers
        assert requests.head(url, timeout=30).status_code == 200
    # And ann's mailbox provider POSTs the one-click body, no cookie, no redirect followed
    answer = requests.post(urls[ann], data=ONE_CLICK, timeout=30, allow_redirects=False)
    assert answer.status_code == 200, answer.text
    assert "Location" not in answer.headers and "Set-Cookie" not in answer.headers
    # And the tracking workflow runs
    run = run_workflow(api, stack)
    assert run["status"] == "succeeded", run
    assert run["events_processed"] == 1  # the POST alone: a GET records nothing
    # Then the statistics count one opt-out, a person's
    base = f"{stack}/api/deliveries/{delivery_id}/tracking"
    statistics = api.get(f"{base}/statistics", timeout=30).json()
    assert statistics["opt_outs"] == 1 and statistics["human"]["opt_outs"] == 1
    # And the logs show it as an opt_out without a URL
    [log] = api.get(f"{base}/logs", params={"type": "opt_out"}, timeout=30).json()["items"]
    assert (log["recipient_id"], log["url_id"], log["machine"]) == (ann, None, None)
    # And the feed lists it with the address given at rendering and its source
    feed = api.get(f"{stack}/api/opt-outs", timeout=30)
    assert feed.status_code == 200, feed.text
    mine = [item for item in feed.json()["items"] if item["delivery_id"] == delivery_id]
    assert [(i["recipient_id"], i["email"], i["source"]) for i in mine] == [
        (ann, f"{ann}@example.com", "one_click")
    ]
    assert mine[0]["at"] == log["at"]


def test_an_opt_out_link_is_in_the_feed_as_a_link(api: requests.Session, stack: str) -> None:
    carl = f"carl-{RUN}"
    delivery_id, [message] = render(api, stack, [{"id": carl, "email": f"{carl}@example.org"}])
    links = re.findall(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"', message["html"])
    bye = links[1]  # the second link of the content: the opt-out
    browser = requests.Session()
    browser.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
    assert (
        browser.get(bye, allow_redirects=False, timeout=30).headers["Location"]
        == "https://shop.example.com/bye"
    )
    assert run_workflow(api, stack)["status"] == "succeeded"
    items = api.get(f"{stack}/api/opt-outs", params={"limit": 200}, timeout=30).json()["items"]
    mine = [(i["recipient_id"], i["email"], i["source"]) for i in items if i["delivery_id"] == delivery_id]
    assert mine == [(carl, f"{carl}@example.org", "link")]


def test_a_forged_token_a_wrong_body_and_a_get_unsubscribe_nobody(
    api: requests.Session, stack: str, reliability: Any
) -> None:
    dora = f"dora-{RUN}"
    delivery_id, [message] = render(api, stack, [{"id": dora, "email": f"{dora}@example.org"}])
    url = HEADER.match(message["headers"]["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    forged = url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")
    assert requests.post(forged, data=ONE_CLICK, timeout=30).status_code == 404
    assert requests.get(forged, timeout=30).status_code == 404
    wrong = requests.post(url, data={"List-Unsubscribe": "Yes"}, timeout=30)
    assert wrong.status_code == 400 and "List-Unsubscribe=One-Click" in wrong.text
    assert requests.post(url, json={"List-Unsubscribe": "One-Click"}, timeout=30).status_code == 400
    assert requests.get(url, timeout=30).status_code == 200
    assert run_workflow(api, stack)["status"] == "succeeded"
    statistics = api.get(f"{stack}/api/deliveries/{delivery_id}/tracking/statistics", timeout=30).json()
    assert statistics["opt_outs"] == 0
    items = api.get(f"{stack}/api/opt-outs", params={"limit": 200}, timeout=30).json()["items"]
    assert [i for i in items if i["delivery_id"] == delivery_id] == []
    reliability.record(
        "Bad input", "forged token, wrong body and GET on /u over HTTP", 5, "404/400/200, nobody unsubscribed"
    )


def test_bad_feed_parameters_over_http(api: requests.Session, stack: str) -> None:
    assert api.get(f"{stack}/api/opt-outs", params={"limit": 0}, timeout=30).status_code == 422
    assert api.get(f"{stack}/api/opt-outs", params={"since": "soon"}, timeout=30).status_code == 422
    assert api.get(f"{stack}/api/opt-outs", params={"cursor": "x.y"}, timeout=30).status_code == 400
    assert requests.get(f"{stack}/api/opt-outs", timeout=30).status_code == 401
