"""URL tracking options: a tracked URL turned on or off and relabelled, the account-wide never/always
tracked patterns, and the web-analytics parameters appended to a delivery's tracked targets.

Turning a URL off never breaks a link already sent: the redirect does not look at ``tracked``; the
tracking workflow reads it when it consolidates a hit, so later hits are logged but not counted.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from urllib.parse import quote_plus, unquote_plus

from functions.api import audit
from functions.api.delivery_repository import (
    DeliveryRepository,
    TrackedUrl,
    UrlTrackingRules,
    repository,
)
from functions.shared import timeutil
from functions.shared.errors import DeliveryNotFound, InvalidRequest, TrackedUrlNotFound

CATEGORIES = ("click", "opt_out", "mirror")
MAX_PATTERNS = 200
MAX_URL_PARAMETERS = 20


def matches(url: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(url, pattern) for pattern in patterns)


def is_tracked(url: str, *, asked: bool, exclude: Sequence[str], rules: UrlTrackingRules) -> bool:
    """Whether a link found at registration is tracked.

    ``asked`` is False only for an explicit ``data-track="none"``, which nothing overrides. Otherwise
    an ``always_track`` pattern wins; else a ``never_track`` or ``exclude_url_patterns`` match turns
    tracking off.
    """
    if not asked:
        return False
    if matches(url, rules.always_track):
        return True
    return not matches(url, (*exclude, *rules.never_track))


def with_parameters(url: str, parameters: Mapping[str, str]) -> str:
    """``url`` with ``parameters`` appended to its query; a parameter the link already has wins.

    The fragment stays last; ``{{ field }}`` placeholders are left as written (values are encoded, so
    a parameter cannot add one).
    """
    if not parameters:
        return url
    base, hash_sign, fragment = url.partition("#")
    path, _, query = base.partition("?")
    present = {unquote_plus(pair.partition("=")[0]) for pair in query.split("&") if pair}
    added = [
        f"{quote_plus(name)}={quote_plus(value)}" for name, value in parameters.items() if name not in present
    ]
    if not added:
        return url
    joined = "&".join([part for part in query.split("&") if part] + added)
    return f"{path}?{joined}{hash_sign}{fragment}"


def change_url(
    delivery_id: str,
    url_id: str,
    *,
    actor: str,
    tracked: bool | None = None,
    label: str | None = None,
    category: str | None = None,
    repo: DeliveryRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> TrackedUrl:
    """Turn a tracked URL on or off, relabel it or change its category; returns the URL as it is now."""
    if tracked is None and label is None and category is None:
        raise InvalidRequest("give at least one of tracked, label, category")
    if category is not None and category not in CATEGORIES:
        raise InvalidRequest(f"category must be one of {', '.join(CATEGORIES)}")
    repo = repo if repo is not None else repository()
    if repo.get(delivery_id) is None:
        raise DeliveryNotFound(f"no delivery {delivery_id}")
    before = next((url for url in repo.tracked_urls(delivery_id) if url.url_id == url_id), None)
    if before is None:
        raise TrackedUrlNotFound(f"delivery {delivery_id} has no tracked URL {url_id}")
    after = replace(
        before,
        tracked=before.tracked if tracked is None else tracked,
        label=before.label if label is None else label,
        category=before.category if category is None else category,
    )
    if after != before:
        repo.update_url(delivery_id, after)
        audit.record(
            "url_changed",
            f"delivery/{delivery_id}/urls/{url_id}",
            actor=actor,
            before=_options(before),
            after=_options(after),
            trail=trail,
            now=now,
        )
    return after


def rules(repo: DeliveryRepository | None = None) -> UrlTrackingRules:
    return (repo if repo is not None else repository()).url_tracking_rules()


def replace_rules(
    new: UrlTrackingRules,
    *,
    actor: str,
    repo: DeliveryRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> UrlTrackingRules:
    """Store the account-wide patterns; deliveries registered from now on follow them."""
    for name, patterns in (("never_track", new.never_track), ("always_track", new.always_track)):
        if len(patterns) > MAX_PATTERNS:
            raise InvalidRequest(f"{name} holds at most {MAX_PATTERNS} patterns")
    repo = repo if repo is not None else repository()
    moment = now or timeutil.now()
    before = repo.url_tracking_rules()
    repo.save_url_tracking_rules(new, timeutil.iso(moment))
    audit.record(
        "settings_changed",
        "settings/url-tracking",
        actor=actor,
        before=_rules(before),
        after=_rules(new),
        trail=trail,
        now=moment,
    )
    return new


def _options(url: TrackedUrl) -> dict[str, object]:
    return {"tracked": url.tracked, "label": url.label, "category": url.category}


def _rules(value: UrlTrackingRules) -> dict[str, object]:
    return {"never_track": list(value.never_track), "always_track": list(value.always_track)}
