"""The finisher's merge of a run's partial indicator items (README "Scale-out").

With several workers, each worker owns the recipients of its shards (their state, their tracking logs)
but not the items every recipient of a delivery adds to: the delivery's statistics, its URL rows, its
hours, its click streams and the state of each person (browser), which two recipients may share. A
worker counts into its own copy of those, started from the stored item, and saves its copy as a
*partial item* of the run. Nobody writes the stored items while the workers run, so every worker
started from the same one, and the finisher merges:

    merged = stored + sum over workers of (worker's copy - stored)

field by field: numbers and the numbers of maps add up (a key a worker dropped at zero counts as
zero), decimal amounts too, the first click is the earliest and the last the latest. A worker's
changes to these items come only from its own recipients' hits, so the sum is what one worker
counting every hit would have written, with one exception: whether a person is new (``person_clicks``)
or has any human click left (the human ``person_clicks``) depends on every worker's hits of that
person. The merge recounts those two from the merged person items and corrects the statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from pynamodb.models import Model

from functions.consolidate.batch import StateKey, stats_key
from functions.shared.models import ClickStreamsModel, DeliveryStatsModel, PersonStateModel

_EARLIEST = frozenset({"first_click"})
_LATEST = frozenset({"last_click", "updated_at"})
_DECIMAL_MAPS = frozenset({"transaction_amount"})  # maps of exact decimal strings
# Count maps whose keys at zero one worker drops (batch._StreamCounts) while nobody is in "other".
_SETTLED = {"paths": "other_paths", "transitions": "other_transitions", "pages": "other_pages"}


def key_of(item: Model) -> StateKey:
    return (str(item.delivery_id), str(item.sk))  # type: ignore[attr-defined]


Corrections = dict[str, list[int]]  # delivery id -> [person_clicks, human person_clicks] off by


def merge_run(
    partials: Iterable[Iterable[Model]], load: Callable[[list[StateKey]], Mapping[StateKey, Model]]
) -> list[Model]:
    """The stored items as one worker would have left them, from each worker's partial items."""
    items, views, corrections = merge_slice(partials, load)
    return sorted([*items, *merge_stats(views, corrections, load)], key=key_of)


def merge_slice(
    partials: Iterable[Iterable[Model]], load: Callable[[list[StateKey]], Mapping[StateKey, Model]]
) -> tuple[list[Model], list[Model], Corrections]:
    """Some of the run's partial items merged, each key alone, all but the statistics: the merged
    items, the workers' copies of the statistics (for ``merge_stats``) and the person corrections.

    The merge of a key needs only that key's copies, so the finisher's work splits into slices that
    run in parallel (``workflow.merge_slice``); the statistics, which every person corrects, are
    merged last from every slice's copies and corrections."""
    views: dict[StateKey, list[Model]] = {}
    for worker_items in partials:
        for item in worker_items:
            views.setdefault(key_of(item), []).append(item)
    stats: list[Model] = [
        item for key, items in sorted(views.items()) for item in items if isinstance(item, DeliveryStatsModel)
    ]
    shared = {key: items for key, items in views.items() if not isinstance(items[0], DeliveryStatsModel)}
    if not shared:
        return [], stats, {}
    stored = dict(load(sorted(shared)))
    merged = [merge_item(stored.get(key), items) for key, items in sorted(shared.items())]
    corrections: Corrections = {}
    for key, items in shared.items():
        if isinstance(items[0], PersonStateModel):
            correction = corrections.setdefault(key[0], [0, 0])
            found, human = person_correction(stored.get(key), items)  # type: ignore[arg-type]
            correction[0] += found
            correction[1] += human
    return merged, stats, {d: c for d, c in sorted(corrections.items()) if c != [0, 0]}


def merge_stats(
    views: Iterable[Model],
    corrections: Mapping[str, list[int]],
    load: Callable[[list[StateKey]], Mapping[StateKey, Model]],
) -> list[Model]:
    """The deliveries' statistics merged from the workers' copies, corrected for the persons."""
    by_key: dict[StateKey, list[Model]] = {}
    for view in views:
        by_key.setdefault(key_of(view), []).append(view)
    wanted = sorted({*by_key, *(stats_key(d) for d, c in corrections.items() if c[0] or c[1])})
    if not wanted:
        return []
    stored = dict(load(wanted))
    merged: dict[StateKey, Model] = {key: merge_item(stored.get(key), items) for key, items in by_key.items()}
    for delivery_id, (found, human) in sorted(corrections.items()):
        if not (found or human):
            continue
        key = stats_key(delivery_id)
        if key not in merged:
            merged[key] = stored[key]
        stats = merged[key]
        assert isinstance(stats, DeliveryStatsModel)
        stats.person_clicks = int(stats.person_clicks) + found
        if human:
            counts = _plain(stats.human)
            counts["person_clicks"] = max(0, int(counts.get("person_clicks", 0)) + human)
            stats.human = counts
    return [merged[key] for key in sorted(merged)]


def person_correction(stored: PersonStateModel | None, views: list[PersonStateModel]) -> tuple[int, int]:
    """What the workers' counts of a person are off by: (``person_clicks``, human ``person_clicks``).

    Each worker counted the person as new when the stored item did not exist, and counted a human
    person when its own copy's human clicks left zero (or took one off when they reached it); the
    truth is once, and whether the merged human clicks are above zero.
    """
    before = int(stored.human_clicks or 0) if stored is not None else 0
    after = before + sum(int(view.human_clicks or 0) - before for view in views)
    found = 0 if stored is not None else 1 - len(views)
    counted = sum(int(int(view.human_clicks or 0) > 0) - int(before > 0) for view in views)
    return found, (int(after > 0) - int(before > 0)) - counted


def merge_item(stored: Model | None, views: list[Model]) -> Model:
    model = type(views[0])
    base = stored.serialize() if stored is not None else {}
    copies = [view.serialize() for view in views]
    names = sorted({*base, *(name for copy in copies for name in copy)})
    data: dict[str, Any] = {}
    for name in names:
        value = _merge(name, (name,), base.get(name), [copy.get(name) for copy in copies])
        if value is not None:
            data[name] = value
    if model is ClickStreamsModel:
        _settle_streams(data)
    if model is DeliveryStatsModel:
        _drop_zero_kinds(data)
    return model.from_raw_data(data)


def _merge(name: str, path: tuple[str, ...], base: Any, views: list[Any]) -> Any:
    """One attribute value (DynamoDB's form) merged; ``None`` in a view: the worker dropped it."""
    present = [view for view in views if view is not None]
    sample = present[0] if present else base
    if sample is None or "NULL" in sample:
        return sample
    if "N" in sample:
        return {"N": _number(_add(_decimal(base, "N"), [_decimal(view, "N") for view in views]))}
    if "M" in sample:
        base_map = base.get("M", {}) if base else {}
        view_maps = [view.get("M", {}) if view else {} for view in views]
        keys = sorted({*base_map, *(key for view in view_maps for key in view)})
        merged = {
            key: _merge(key, (*path, key), base_map.get(key), [view.get(key) for view in view_maps])
            for key in keys
        }
        return {"M": {key: value for key, value in merged.items() if value is not None}}
    if "S" in sample:
        if path[0] in _DECIMAL_MAPS and len(path) == 2:
            return {"S": _number(_add(_decimal(base, "S"), [_decimal(view, "S") for view in views]))}
        values = [str(value["S"]) for value in (base, *views) if value is not None and "S" in value]
        if name in _EARLIEST:
            return {"S": min(values)}
        if name in _LATEST:
            return {"S": max(values)}
    return present[-1] if present else base


def _decimal(value: Any, kind: str) -> Decimal:
    return Decimal(value[kind]) if value is not None and kind in value else Decimal(0)


def _add(base: Decimal, views: list[Decimal]) -> Decimal:
    return base + sum((view - base for view in views), Decimal(0))


def _number(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() and "." not in str(value) else str(value)


def _settle_streams(data: dict[str, Any]) -> None:
    for counts, other in _SETTLED.items():
        if counts in data and int(data.get(other, {}).get("N", "0")) == 0:
            kept = {k: v for k, v in data[counts]["M"].items() if int(v["N"]) > 0}
            data[counts] = {"M": kept}


def _drop_zero_kinds(data: dict[str, Any]) -> None:
    machine = data.get("machine", {}).get("M")
    if machine and "by_kind" in machine:
        kinds = machine["by_kind"]["M"]
        machine["by_kind"] = {"M": {k: v for k, v in kinds.items() if int(v["N"]) > 0}}


def _plain(value: Any) -> dict[str, Any]:
    return value.as_dict() if hasattr(value, "as_dict") else dict(value or {})
