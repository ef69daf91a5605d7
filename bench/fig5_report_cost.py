"""Figure 5, report cost stays flat: the Tracking tab's reads and handler time at 1k, 10k and 100k events.

Three deliveries of the same newsletter (``bench/corpus``) are registered through the API's own
repository under fixed ids (a delivery's id chooses which of its log partitions holds each recipient,
so a random one made the logs pages read a different number of items each run), and a campaign of
1,000, 10,000 and 100,000 events is consolidated by the tracking workflow (in memory, the same code)
and loaded into moto: tracking logs, indicator items, send counts. Then the report API handler
(``functions.api.handler.lambda_handler``) answers each route for each delivery: its DynamoDB reads are
counted through botocore hooks and their read units computed from the items, its time is the median of
repeated calls (moto's CPU shown apart).

A URL item exists once its link has a click: a 1k campaign leaves the least popular links unclicked,
so 1k reads fewer items (coverage, not growth). The flat routes are compared where every link and hour
has traffic, 10k and 100k: the same items read, and at 100k read units within what those items may
cost whatever the events (``bound_read_units``: every count at DynamoDB's largest number, every item
holding a map at ``limits.ITEM_BUDGET``, the size limits.py's caps keep it under).

A delivery's tracking logs lie in 64 chains (``log_chains.LOG_CHAINS``) of items holding about 14 logs
each, which a logs page merges (``functions/api/log_pages.py``): each page's items read are every item
its Query requests evaluated, over all chains, for the first page and for the page its cursor leads to.
The consolidated logs are packed into their chains here as the tracking workflow's store packs them
(``log_chains.merged``, a campaign's logs appended to empty chains).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from bench import capacity
from bench.capacity import Item
from bench.common import Figure, Table, command_for, configure_environment, count, median, ms, standalone
from bench.ledger import _PROJECTIONS, RequestLedger, _frozen
from functions.shared.limits import ITEM_BUDGET

# 1k: informative (its least popular links have no click yet); 10k and 100k: every link and hour covered
SMALL, MEDIUM, LARGE = 1_000, 10_000, 100_000
SIZES = (SMALL, MEDIUM, LARGE)
BIGGEST_NUMBER = str(10**37 + 1)  # 38 significant digits: the largest number DynamoDB stores (20 bytes)
REPEATS = 15
NEWSLETTER = Path(__file__).resolve().parent / "corpus" / "harbour-outfitters-weekly.html"
FLAT_ROUTES = ("statistics", "urls", "hot-clicks")
PAGE_SIZES = (50, 200)
# O(page / logs per item + chains): what a page of ``size`` logs may read, in items, whatever the
# delivery's size. A merged page reads an item or two of every chain beyond those it returns from (to
# know which log comes next; oldest first, a chain's owner item too), and items hold ~14 logs.
PAGE_READ_BOUND_PER_LOG, PAGE_READ_BOUND_PER_CHAIN, LOGS_PER_ITEM = 2, 3, 14


def _page_read_bound(size: int) -> int:
    from functions.shared.log_chains import LOG_CHAINS

    return PAGE_READ_BOUND_PER_LOG * size // LOGS_PER_ITEM + PAGE_READ_BOUND_PER_CHAIN * LOG_CHAINS


def worst_case_size(item: Item) -> int:
    """The most ``item`` may weigh whatever the events: an item holding a map (names from outside,
    capped in number and bytes by limits.py) at ``ITEM_BUDGET``; otherwise every number at its largest."""
    if any("M" in value for value in item.values()):
        return max(ITEM_BUDGET, capacity.item_size(item))
    return capacity.item_size(
        {name: {"N": BIGGEST_NUMBER} if "N" in value else value for name, value in item.items()}
    )


@dataclass(frozen=True)
class ItemsRead:
    """The items one read request returned (or evaluated), and whether it read them consistently."""

    items: Sequence[Item]
    consistent: bool


def bound_read_units(reads: Iterable[ItemsRead]) -> float:
    """The read units these requests would take with every item at its worst case (4 KB per request)."""
    return sum(
        capacity.read_units(sum(worst_case_size(item) for item in read.items), consistent=read.consistent)
        for read in reads
    )


class _ItemLedger(RequestLedger):
    """The request ledger, also keeping the items each GetItem or Query read (``ItemsRead``)."""

    def __init__(self) -> None:
        super().__init__()
        self.items_read: dict[int, ItemsRead] = {}  # index of the request in ``requests`` -> its items

    def _after_call(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **rest: Any) -> None:
        super()._after_call(model, parsed, context, **rest)
        parameters = context.get("bench_parameters", {})
        if model.service_model.service_name != "dynamodb" or model.name not in ("GetItem", "Query"):
            return
        projected = any(name in parameters for name in _PROJECTIONS)  # billed on the whole items
        if model.name == "GetItem":
            found = parsed.get("Item")
            if projected:
                found = self._fetch(parameters["TableName"], [parameters["Key"]]).get(
                    _frozen(parameters["Key"])
                )
            items = [found] if found else []
        else:
            items = self._evaluated("Query", parameters) if projected else parsed.get("Items", [])
        consistent = bool(parameters.get("ConsistentRead")) and "IndexName" not in parameters
        self.items_read[context["bench_request"]] = ItemsRead(list(items), consistent)


def _consolidated_delivery(events: int, *, logs: bool) -> str:
    """Register a delivery, consolidate a campaign of ``events`` for it, load the result into moto (its
    tracking logs too if ``logs``)."""
    from bench.campaign import Campaign, Link
    from bench.memory_store import ScalableWorkflowStore
    from bench.moto_backend import put_models
    from functions.api import deliveries
    from functions.api.delivery_repository import repository
    from functions.consolidate.workflow import TrackingWorkflow, WorkflowConfig
    from functions.shared import ids
    from functions.shared.models import SendCountsModel

    # a fixed id: it places each recipient's logs in one of the delivery's partitions (crc32 of both)
    with mock.patch.object(ids, "delivery_id", lambda: f"dbench{events:06d}"):
        details = deliveries.register(
            label=f"Bench {events:,} events", html=NEWSLETTER.read_text(), repo=repository()
        )
    delivery_id = details.delivery.id
    links = tuple(Link(url.url_id, url.url, url.label, url.category) for url in details.urls)
    campaign = Campaign(delivery_id, events, links=links)

    store = ScalableWorkflowStore(keep_logs=logs)
    store.seed_campaign(campaign)
    run = TrackingWorkflow(store, WorkflowConfig(), clock=lambda: campaign.end + timedelta(hours=1)).run(
        f"bench-{events}", "bench"
    )
    assert int(run.events_processed) == events
    put_models(_chained(store.consolidated()))
    put_models(
        [
            SendCountsModel(
                delivery_id=delivery_id, sent=campaign.recipients, failed=0, domains=campaign.domains_sent()
            )
        ]
    )
    return delivery_id


def _chained(models: Iterable[Any]) -> list[Any]:
    """The workflow's items with its tracking logs put into their chains (the chain items are put
    here); the other items returned to be put as they are."""
    from functions.shared import log_chain_store, log_chains
    from functions.shared.models import TrackingLogModel

    others: list[Any] = []
    chains: dict[str, list[Any]] = {}
    for model in models:
        if isinstance(model, TrackingLogModel):
            chain = log_chains.chain_of(str(model.delivery_id), str(model.recipient_id))
            chains.setdefault(chain, []).append(model)
        else:
            others.append(model)
    for chain, logs in chains.items():
        logs.sort(key=lambda log: str(log.sk))
        log_chain_store.put(log_chains.merged(chain, [], None, logs))
    return others


def _requests(delivery_id: str, *, logs: bool) -> dict[str, tuple[str, dict[str, str] | None]]:
    base = f"/api/deliveries/{delivery_id}/tracking"
    routes: dict[str, tuple[str, dict[str, str] | None]] = {
        route: (f"{base}/{route}", None) for route in FLAT_ROUTES
    }
    for size in PAGE_SIZES if logs else ():
        first = (f"{base}/logs", {"limit": str(size)})
        cursor = json.loads(_call(first)["body"])["next_cursor"]
        routes[f"logs, page of {size}"] = first
        routes[f"logs, next page of {size}"] = (f"{base}/logs", {"limit": str(size), "cursor": cursor})
    return routes


def _call(route: tuple[str, dict[str, str] | None]) -> dict[str, Any]:
    from bench.events import LambdaContext, api_event
    from functions.api.handler import lambda_handler

    response = lambda_handler(api_event(*route), LambdaContext(function_name="msgtrack-api"))
    assert response["statusCode"] == 200, response
    return response


def _counted(ledger: Any, route: tuple[str, dict[str, str] | None]) -> dict[str, float]:
    from bench.ledger import Totals
    from functions.shared import models

    models.refresh_table_names()  # new connections: their clients get the ledger's hooks
    with ledger.recording():
        mark = ledger.mark()
        _call(route)
        totals = Totals.of(ledger.since(mark))
    models.refresh_table_names()  # and the timed calls go without them
    requests = ledger.since(mark)
    reads = [ledger.items_read[index] for index in range(mark, ledger.mark()) if index in ledger.items_read]
    return {
        "bound_read_units": bound_read_units(reads),
        "reads": totals.reads,
        "read_units": totals.read_units,
        "items": sum(request.items_read for request in requests),
        "queried": sum(request.items_read for request in requests if request.operation == "Query"),
        "operations": totals.operations(),
    }


def _timed(route: tuple[str, dict[str, str] | None], moto: Any) -> dict[str, float]:
    walls, outside = [], []
    for _ in range(REPEATS):
        moto_before = moto.seconds
        wall, cpu = time.perf_counter(), time.process_time()
        _call(route)
        walls.append(time.perf_counter() - wall)
        outside.append(time.process_time() - cpu - (moto.seconds - moto_before))
    return {"wall": median(walls), "cpu_outside_moto": median(outside)}


def flat_between(smaller: dict[str, Any], larger: dict[str, Any]) -> bool:
    """A route reads flat from ``smaller`` to ``larger`` events: the same requests and items, and read
    units within what those items may cost whatever the events."""
    return (smaller["reads"], smaller["items"]) == (larger["reads"], larger["items"]) and larger[
        "read_units"
    ] <= larger["bound_read_units"]


def measure(inputs: dict[str, Figure]) -> Figure:
    configure_environment()
    from bench.moto_backend import MotoClock, local_dynamodb

    measured: dict[int, dict[str, dict[str, Any]]] = {}
    with local_dynamodb():
        # the logs pages at 1k and 100k as before; 10k, for the flat routes, without its logs
        logs = {events: events != MEDIUM for events in SIZES}
        deliveries = {events: _consolidated_delivery(events, logs=logs[events]) for events in SIZES}
        ledger, moto = _ItemLedger(), MotoClock()
        with moto.measuring():
            for events, delivery_id in deliveries.items():
                requests = _requests(delivery_id, logs=logs[events])
                _call(requests["statistics"])  # warm: imports, clients, settings
                measured[events] = {
                    name: {**_counted(ledger, route), **_timed(route, moto)}
                    for name, route in requests.items()
                }

    small, medium, large = measured[SMALL], measured[MEDIUM], measured[LARGE]
    flat = all(flat_between(medium[route], large[route]) for route in FLAT_ROUTES)
    pages = all(
        measured[events][f"logs, {page}page of {size}"]["queried"] <= _page_read_bound(size)
        for events in (SMALL, LARGE)
        for size in PAGE_SIZES
        for page in ("", "next ")
    )
    met = flat and pages

    def cells(name: str, key: str, shown: Any) -> str:
        return " / ".join(
            shown(measured[events][name][key]) if name in measured[events] else "-" for events in SIZES
        )

    rows = [
        [
            f"`{name}`",
            cells(name, "reads", count),
            cells(name, "read_units", count),
            f"{count(large[name]['bound_read_units'])}" if name in FLAT_ROUTES else "-",
            cells(name, "items", count),
            cells(name, "cpu_outside_moto", ms),
            cells(name, "wall", ms),
        ]
        for name in small
    ]
    uncovered = {route: large[route]["items"] - small[route]["items"] for route in FLAT_ROUTES}
    notes = [
        f"The three deliveries register `{NEWSLETTER.name}` under fixed ids; the campaigns (seeded) differ "
        "only in size: same links, same 24 hours, so the same number of hourly items, and from 10k events on "
        "the same URL items. Reads are counted on one call per route, times are "
        f"medians of {REPEATS} calls through the handler (Powertools resolver, validation, auth) against moto "
        "in-process. *Handler CPU outside moto* is the API function's own work "
        "(msgtrack, Powertools, PynamoDB, botocore); the wall time adds moto's emulation, which grows with the "
        "partition it holds (it filters a partition's keys in Python where DynamoDB seeks), so it is not a "
        "figure for AWS.",
        "What each route reads: " + "; ".join(f"{name}: {small[name]['operations']}" for name in small) + ".",
        "1k events leave the least popular links without a click, so without a URL item: "
        + ", ".join(f"{route} reads {count(uncovered[route])} items fewer" for route in FLAT_ROUTES)
        + " than at 10k and 100k (coverage, not growth). Between 10k and 100k the items are the same and "
        "only their counts grow a digit or two: the read-unit bound is what the items read at 100k would take "
        "with every count at DynamoDB's largest number (38 digits, 20 bytes) and every item holding a map at "
        f"`limits.ITEM_BUDGET` ({count(ITEM_BUDGET)} bytes, the most limits.py's caps on entries and bytes "
        "let it weigh), whatever the events.",
        "Hot clicks also parse the delivery's HTML to annotate it, so its time follows the newsletter's size, "
        "not the events.",
        "Logs pages (the first, and the next one through its cursor): a delivery's logs lie in 64 chains "
        "of items of about 14 logs, which each page merges in order (measured at 1k and 100k events). "
        "Items read per page, 1k / 100k events: "
        + "; ".join(
            f"{page}page of {size}: {count(small[f'logs, {page}page of {size}']['queried'])} / "
            f"{count(large[f'logs, {page}page of {size}']['queried'])} "
            f"(bound {PAGE_READ_BOUND_PER_LOG} x {size} / {LOGS_PER_ITEM} + {PAGE_READ_BOUND_PER_CHAIN} "
            f"x 64 = {_page_read_bound(size)})"
            for size in PAGE_SIZES
            for page in ("", "next ")
        )
        + ". The read requests are one Query per chain and a few more for the chains that hold more of "
        "the page, at 1k as at 100k events (oldest first, a chain's owner item comes first: one Query more "
        "a chain).",
    ]
    if not flat:
        grew = [route for route in FLAT_ROUTES if not flat_between(medium[route], large[route])]
        notes.append(
            f"**Reads grow between 10k and 100k events for {', '.join(grew)}:** see the table (requests, items "
            "read, or read units beyond the bound of the items read)."
        )
    return Figure(
        number=5,
        title="Report cost stays flat",
        target=(
            "statistics, URLs and hot clicks: identical requests and items read at 10k and 100k events, and "
            "read units at 100k within the bound limits.py's caps give those items, whatever the events; a "
            "logs page reads "
            f"O(page size): at most {PAGE_READ_BOUND_PER_LOG} x page / {LOGS_PER_ITEM} (logs an item holds) + "
            f"{PAGE_READ_BOUND_PER_CHAIN} x chains (64) items, whatever the events"
        ),
        status=Figure.verdict(met),
        headline=(
            "identical requests and items read at 10k and 100k for statistics, URLs and hot clicks, read "
            "units "
            + ", ".join(
                f"{count(large[route]['read_units'])} (bound {count(large[route]['bound_read_units'])})"
                for route in FLAT_ROUTES
            )
            if flat
            else "reads grow between 10k and 100k events"
        )
        + "; at 100k events a logs page reads "
        + ", ".join(
            f"{count(large[f'logs, page of {size}']['queried'])} items for {size} logs" for size in PAGE_SIZES
        )
        + " (64 chains merged)",
        command=command_for("fig5_report_cost"),
        tables=[
            Table(
                [
                    "route (1k / 10k / 100k events)",
                    "read requests",
                    "read units",
                    "read-unit bound at 100k",
                    "items read",
                    "handler CPU outside moto",
                    "wall time, moto included",
                ],
                rows,
            )
        ],
        notes=notes,
        data={"measured": {str(events): routes for events, routes in measured.items()}},
    )


if __name__ == "__main__":
    standalone(measure)
