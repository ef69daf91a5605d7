"""`MSGTRACK_WORKFLOW_WORKERS=4 msgtrack serve` over HTTP: a run consolidates with four workers in
parallel, names them in RUN.workers, and every report is exactly what the hits make (README
"Scale-out")."""

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

WORKERS = 4
RUN = uuid.uuid4().hex[:6]
HTML = '<p><a href="https://shop.example.com/a">A</a> <a href="https://shop.example.com/b">B</a></p>'
PIXEL = re.compile(r'src="(http://127\.0\.0\.1:\d+/o/[^"]+)"')
LINK = re.compile(r'href="(http://127\.0\.0\.1:\d+/r/[^"]+)"(?! aria-hidden)')  # not the honeypot
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
RECIPIENTS = 24


@pytest.fixture(scope="module")
def stack_url() -> Iterator[str]:
    with local_stack(env={"MSGTRACK_WORKFLOW_WORKERS": str(WORKERS)}) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def api(stack_url: str) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield session


def _browser(agent: str = CHROME) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = agent
    return session


def test_four_workers_consolidate_every_hit_once_and_name_themselves_in_the_run(
    api: requests.Session, stack_url: str
) -> None:
    # Given a delivery of two links rendered for 24 recipients
    created = api.post(
        f"{stack_url}/api/deliveries", json={"label": f"Workers {RUN}", "html": HTML}, timeout=30
    )
    assert created.status_code == 201, created.text
    delivery_id = created.json()["id"]
    names = [f"w{n}-{RUN}" for n in range(RECIPIENTS)]
    rendered = api.post(
        f"{stack_url}/api/deliveries/{delivery_id}/messages",
        json={"recipients": [{"id": name, "email": f"{name}@example.org"} for name in names]},
        timeout=30,
    )
    assert rendered.status_code == 200, rendered.text
    messages = {m["recipient_id"]: m["html"].replace("&amp;", "&") for m in rendered.json()["messages"]}
    # When people open and click, one browser clicks the messages of six recipients (forwarded to it),
    # and a script (an HTTP library: a bot) clicks three
    opened: set[str] = set()
    clicked: set[str] = set()
    persons: set[str] = set()
    hits = {"opens": 0, "clicks": 0, "bot_clicks": 0}
    forwarded, bot = _browser(), _browser("python-requests/2.31")
    for n, name in enumerate(names):
        [pixel], [link_a, link_b] = PIXEL.findall(messages[name]), LINK.findall(messages[name])
        person = _browser()
        for _ in range(1 + n % 2):
            assert person.get(pixel, timeout=30).status_code == 200
            hits["opens"] += 1
            opened.add(name)
        for link, wanted in ((link_a, n % 2 == 0), (link_b, n % 3 == 0)):
            if wanted:
                assert person.get(link, allow_redirects=False, timeout=30).status_code == 302
                hits["clicks"] += 1
                clicked.add(name)
                persons.add(f"person-{name}")
        if n < 6:
            assert forwarded.get(link_a, allow_redirects=False, timeout=30).status_code == 302
            hits["clicks"] += 1
            clicked.add(name)
            persons.add("forwarded")
        if n % 8 == 1:
            assert bot.get(link_b, allow_redirects=False, timeout=30).status_code == 302
            hits["bot_clicks"] += 1
            clicked.add(name)
            persons.add("bot")
    # and the tracking workflow runs, then again
    run = run_workflow(api, stack_url, timeout=120)
    again = run_workflow(api, stack_url, timeout=120)

    # Then the run consolidated every hit with four workers, whose events add up to the run's
    total = hits["opens"] + hits["clicks"] + hits["bot_clicks"]
    assert run["status"] == "succeeded", run["errors"]
    assert len(run["workers"]) == WORKERS
    assert {worker["status"] for worker in run["workers"]} == {"succeeded"}
    assert sum(worker["events_processed"] for worker in run["workers"]) == run["events_processed"] == total
    assert len({shard for worker in run["workers"] for shard in worker["shards"]}) == sum(
        len(worker["shards"]) for worker in run["workers"]
    )
    assert again["status"] == "succeeded" and again["events_processed"] == 0
    # And every figure is exact: the forwarded browser and the bot are one person each
    statistics: dict[str, Any] = api.get(
        f"{stack_url}/api/deliveries/{delivery_id}/tracking/statistics", timeout=30
    ).json()
    assert {
        name: statistics[name] for name in ("opens", "total_opens", "clicks", "person_clicks", "total_clicks")
    } == {
        "opens": len(opened | clicked),
        "total_opens": hits["opens"],
        "clicks": len(clicked),
        "person_clicks": len(persons),
        "total_clicks": hits["clicks"] + hits["bot_clicks"],
    }
    assert statistics["human"]["person_clicks"] == len(persons - {"bot"})
    assert statistics["human"]["total_clicks"] == hits["clicks"]
    assert statistics["machine"]["by_kind"] == {"bot": hits["bot_clicks"]}
    urls = api.get(f"{stack_url}/api/deliveries/{delivery_id}/tracking/urls", timeout=30).json()["urls"]
    assert sum(url["clicks"] for url in urls) == hits["clicks"] + hits["bot_clicks"]
    logs = api.get(
        f"{stack_url}/api/deliveries/{delivery_id}/tracking/logs", params={"limit": 200}, timeout=30
    ).json()
    assert len(logs["items"]) == total and logs["next_cursor"] is None
