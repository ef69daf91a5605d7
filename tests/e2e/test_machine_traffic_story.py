"""Human and machine traffic over HTTP, on a stack started with ``--trust-forwarded-for`` (as behind a
CDN): a script is a bot, an MPP prefetch from Apple's network is apple_mpp, a Chrome click is a person;
the operator's range marks later hits; bad settings are 422s; the change is audited; and every report
(statistics, URL rows, hot clicks, click streams, logs) gives the people's figures beside all traffic's,
to the hit."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.apigw import API_TOKEN
from tests.e2e.conftest import local_stack

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
HTML = '<html><body><p><a href="https://shop.example.com/sale">Sale</a></p></body></html>'
LINK = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"(?! aria-hidden)')
HONEYPOT = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)" aria-hidden="true" tabindex="-1"')
PIXEL = re.compile(r'src="(http://127\.0\.0\.1:\d+/o/[^"]+)"')
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
SETTINGS = "/api/settings/machine-detection"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, requests.Session]]:
    with local_stack(("--trust-forwarded-for",)) as base_url, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield base_url, api


def message(base_url: str, api: requests.Session, recipient: str) -> tuple[str, str, str, str]:
    delivery = api.post(
        f"{base_url}/api/deliveries", json={"label": f"Machines {RUN}", "html": HTML}, timeout=30
    )
    assert delivery.status_code == 201, delivery.text
    delivery_id = delivery.json()["id"]
    answer = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": recipient}]},
        timeout=30,
    )
    html = answer.json()["messages"][0]["html"]
    return delivery_id, LINK.findall(html)[0], PIXEL.findall(html)[0], HONEYPOT.findall(html)[0]


def get(url: str, address: str, user_agent: str) -> requests.Response:
    headers = {"User-Agent": user_agent, "X-Forwarded-For": address}
    return requests.get(url, headers=headers, allow_redirects=False, timeout=30)


def logs_after_a_run(base_url: str, api: requests.Session, delivery_id: str) -> list[dict[str, Any]]:
    started = api.post(f"{base_url}/api/workflows/tracking/runs", timeout=30)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = api.get(f"{base_url}/api/workflows/tracking", timeout=30).json()["runs"]
        if any(r["id"] == run_id and r["status"] in ("succeeded", "failed") for r in runs):
            break
        time.sleep(0.3)
    answer = api.get(
        f"{base_url}/api/deliveries/{delivery_id}/tracking/logs", params={"order": "asc"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def test_each_hit_is_logged_as_a_person_or_as_the_machine_that_made_it(stack: Any) -> None:
    base_url, api = stack
    # Given a rendered message
    delivery_id, link, pixel, honeypot = message(base_url, api, f"m-{RUN}")
    # When MPP prefetches the pixel from Apple's network (X-Forwarded-For, trusted), a person clicks in
    # Chrome, a script fetches the link, and a scanner follows the honeypot
    assert get(pixel, "17.58.1.2", "Mozilla/5.0").status_code == 200
    assert get(link, "198.51.100.23", CHROME).status_code == 302
    assert get(link, "198.51.100.24", "python-requests/2.31").status_code == 302
    trap = get(honeypot, "40.92.17.33", CHROME)
    assert (trap.status_code, trap.headers.get("Location"), trap.headers.get("Set-Cookie")) == (
        200,
        None,
        None,
    )
    # Then the LOGs say who made each hit and why
    logs = logs_after_a_run(base_url, api, delivery_id)
    verdicts = sorted(
        (log["type"], log["url_id"] is None, log["machine"] or "", log["machine_reason"] or "")
        for log in logs
    )
    assert (
        "open",
        True,
        "apple_mpp",
        "open with User-Agent Mozilla/5.0 from 17.0.0.0/8 (Apple, AS714)",
    ) in verdicts
    assert ("click", False, "bot", "User-Agent python-requests") in verdicts
    assert ("click", False, "", "") in verdicts  # the person: machine null
    assert all("machine" in log and "machine_reason" in log for log in logs)


def test_an_operator_range_marks_later_hits_and_bad_settings_are_422s(stack: Any, reliability: Any) -> None:
    base_url, api = stack
    # Given the built-in lists shown read-only
    shown = api.get(f"{base_url}{SETTINGS}", timeout=30).json()
    assert shown["builtin"]["ranges"] and shown["ranges"] == []
    # When bad settings are sent
    for body in (
        {"ranges": [{"cidr": "203.0.113.0/33", "kind": "scanner"}]},
        {"ranges": [{"cidr": "203.0.113.0/24", "kind": "robot"}]},
        {"burst_seconds": 100000},
        {"user_agents": [{"pattern": f"agent-{n}", "kind": "bot"} for n in range(201)]},
    ):
        answer = api.put(f"{base_url}{SETTINGS}", json=body, timeout=30)
        reliability.record(
            "Bad input",
            "PUT machine-detection settings over HTTP (bad CIDR, kind, window, too many)",
            1,
            "422",
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "validation_error"
    # And then the operator's own range
    body = {"ranges": [{"cidr": "203.0.113.0/24", "kind": "scanner"}], "burst_seconds": 45}
    answer = api.put(f"{base_url}{SETTINGS}", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["ranges"], answer.json()["burst_seconds"]) == (body["ranges"], 45)
    # Then a hit from that range, once the redirect's minute-long cache has passed, is a scanner's
    delivery_id, link, _, _ = message(base_url, api, f"r-{RUN}")
    deadline = time.monotonic() + 75
    get(link, "203.0.113.50", CHROME)
    while time.monotonic() < deadline:
        time.sleep(5)
        get(link, "203.0.113.50", CHROME)
        logs = logs_after_a_run(base_url, api, delivery_id)
        if any(log["machine"] == "scanner" for log in logs):
            break
    assert ("scanner", "network 203.0.113.0/24") in {(log["machine"], log["machine_reason"]) for log in logs}
    # And the change is in the audit trail
    audit = api.get(f"{base_url}/api/audit", timeout=30).json()["items"]
    change = next(e for e in audit if e["target"] == "settings/machine-detection")
    assert change["action"] == "settings_changed"
    assert change["after"]["ranges"] == body["ranges"] and change["before"]["ranges"] == []


# --- people's figures beside all traffic's --------------------------------------------------------

NEWSLETTER = (
    "<html><body><p>"
    '<a href="https://shop.example.com/sale">Sale</a> '
    '<a href="https://shop.example.com/news">News</a> '
    '<a href="https://shop.example.com/unsubscribe" data-track="optout">Unsubscribe</a>'
    "</p></body></html>"
)
ANCHOR = re.compile(r'<a href="(http://127\.0\.0\.1:\d+/r/[^"]+)">([^<]+)</a>')
BURST = "honeypot burst: same address as a honeypot hit on this message"
MPP = "open with User-Agent Mozilla/5.0 from 17.0.0.0/8 (Apple, AS714)"


def test_people_and_machines_are_counted_apart_in_every_report(stack: Any) -> None:
    """Given a person, Apple's MPP, a script and a gateway's burst reading one newsletter, when the
    workflow runs, then every report gives the people's figures beside all traffic's, exactly."""
    base_url, api = stack
    # Given a newsletter with two click links and an opt-out link, sent to four recipients
    answer = api.post(
        f"{base_url}/api/deliveries", json={"label": f"People {RUN}", "html": NEWSLETTER}, timeout=30
    )
    assert answer.status_code == 201, answer.text
    delivery_id = answer.json()["id"]
    url_ids = {url["label"]: url["id"] for url in answer.json()["urls"]}
    who = {name: f"{name}-{RUN}" for name in ("person", "apple", "script", "gateway")}
    rendered = api.post(
        f"{base_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": recipient} for recipient in who.values()]},
        timeout=30,
    ).json()["messages"]
    messages = {m["recipient_id"]: m["html"] for m in rendered}
    links = {name: {label: url for url, label in ANCHOR.findall(messages[rid])} for name, rid in who.items()}
    pixels = {name: PIXEL.findall(messages[rid])[0] for name, rid in who.items()}
    trap = HONEYPOT.findall(messages[who["gateway"]])[0]

    # When Apple's MPP prefetches the person's and another recipient's pixel (User-Agent exactly
    # Mozilla/5.0, from Apple's network), the person opens in Chrome and clicks Sale in the same browser,
    with requests.Session() as browser:
        assert get(pixels["person"], "17.58.1.2", "Mozilla/5.0").status_code == 200
        assert get(pixels["apple"], "17.58.1.3", "Mozilla/5.0").status_code == 200
        browser.headers.update({"User-Agent": CHROME, "X-Forwarded-For": "198.51.100.23"})
        assert browser.get(pixels["person"], timeout=30).status_code == 200
        assert browser.get(links["person"]["Sale"], allow_redirects=False, timeout=30).status_code == 302
    # a script fetches Sale, and a gateway with a browser's User-Agent follows Sale, News, the opt-out
    # link and the honeypot link from one address within seconds
    assert get(links["script"]["Sale"], "198.51.100.24", "python-requests/2.31").status_code == 302
    for label in ("Sale", "News", "Unsubscribe"):
        assert get(links["gateway"][label], "198.51.100.77", CHROME).status_code == 302
    assert get(trap, "198.51.100.77", CHROME).status_code == 200
    logs = logs_after_a_run(base_url, api, delivery_id)
    tab = f"{base_url}/api/deliveries/{delivery_id}/tracking"

    # Then the statistics count all 4 recipients as openers and 3 as clickers, the people 1 and 1
    stats = api.get(f"{tab}/statistics", timeout=30).json()
    figures = ("opens", "total_opens", "clicks", "person_clicks", "total_clicks", "opt_outs")
    rates = ("estimated_forwards", "open_rate", "click_rate", "reactivity")
    assert {name: stats[name] for name in figures + rates} == {
        "opens": 4,  # the gateway's clicks and the script's count as opens in all traffic
        "total_opens": 3,  # two prefetches and the person's own load
        "clicks": 3,
        "person_clicks": 4,  # the gateway kept no cookie: two browsers
        "total_clicks": 4,
        "opt_outs": 1,  # the gateway's false unsubscribe
        "estimated_forwards": 1,
        "open_rate": 100.0,
        "click_rate": 75.0,
        "reactivity": 75.0,
    }
    assert stats["human"] == {
        "opens": 1,
        "total_opens": 1,
        "clicks": 1,
        "person_clicks": 1,
        "total_clicks": 1,
        "opt_outs": 0,
        "mirror_page_views": 0,
        "estimated_forwards": 0,
        "open_rate": 25.0,
        "click_rate": 25.0,
        "reactivity": 100.0,
    }
    assert stats["machine"] == {
        "total_opens": 2,
        "total_clicks": 3,  # the script's Sale, the gateway's Sale and News (its opt-out is no click)
        "by_kind": {"apple_mpp": 2, "bot": 1, "scanner": 4},  # the honeypot hit counts here only
    }

    # And each URL row its people's clicks beside all of them
    rows = api.get(f"{tab}/urls", timeout=30).json()["urls"]
    shown = {
        r["label"]: (r["clicks"], r["distinct_clicks"], r["human_clicks"], r["human_distinct_clicks"])
        for r in rows
    }
    assert shown == {"Sale": (3, 3, 1, 1), "News": (1, 1, 0, 0), "Unsubscribe": (1, 1, 0, 0)}
    assert {r["label"]: (r["share"], r["human_share"]) for r in rows} == {
        "Sale": (60.0, 100.0),
        "News": (20.0, 0.0),
        "Unsubscribe": (20.0, 0.0),
    }

    # And hot clicks give Sale all the people's clicks, and 3 of the 5 URL events of all traffic
    for traffic, expected in (
        ("all", [("Sale", 3, 60.0), ("News", 1, 20.0)]),
        ("human", [("Sale", 1, 100.0), ("News", 0, 0.0)]),
    ):
        hot = api.get(f"{tab}/hot-clicks", params={"traffic": traffic}, timeout=30).json()["links"]
        assert [(link["label"], link["clicks"], link["percent"]) for link in hot] == expected, traffic

    # And the click streams follow the person alone, or everyone who clicked
    sale, news = url_ids["Sale"], url_ids["News"]
    people = api.get(f"{tab}/click-streams", params={"traffic": "human"}, timeout=30).json()
    everyone = api.get(f"{tab}/click-streams", timeout=30).json()
    assert (people["recipients"], [(p["url_ids"], p["recipients"]) for p in people["paths"]]) == (
        1,
        [([sale], 1)],
    )
    assert (everyone["recipients"], [(p["url_ids"], p["recipients"]) for p in everyone["paths"]]) == (
        3,
        [([sale], 2), ([sale, news], 1)],
    )

    # And the logs name the machine and its signal on every machine hit, the person's as null
    labels = {url_id: label for label, url_id in url_ids.items()}
    recipient = {rid: name for name, rid in who.items()}
    verdicts = sorted(
        (
            recipient[log["recipient_id"]],
            log["type"],
            labels.get(log["url_id"], "-"),
            log["machine"] or "",
            log["machine_reason"] or "",
        )
        for log in logs
    )
    assert verdicts == [
        ("apple", "open", "-", "apple_mpp", MPP),
        ("gateway", "click", "-", "scanner", "honeypot link"),
        ("gateway", "click", "News", "scanner", BURST),
        ("gateway", "click", "Sale", "scanner", BURST),
        ("gateway", "opt_out", "Unsubscribe", "scanner", BURST),
        ("person", "click", "Sale", "", ""),
        ("person", "open", "-", "", ""),
        ("person", "open", "-", "apple_mpp", MPP),
        ("script", "click", "Sale", "bot", "User-Agent python-requests"),
    ]
    # And traffic=human lists the person's open and click only
    human_logs = api.get(f"{tab}/logs", params={"traffic": "human", "order": "asc"}, timeout=30).json()[
        "items"
    ]
    assert [(recipient[log["recipient_id"]], log["type"], log["machine"]) for log in human_logs] == [
        ("person", "open", None),
        ("person", "click", None),
    ]
