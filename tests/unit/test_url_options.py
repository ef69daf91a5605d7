"""URL tracking options with the in-memory repository: turning URLs on/off, relabelling, account-wide
never/always rules, web-analytics parameters, and deleting a delivery."""

from __future__ import annotations

import re
from typing import Any

import pytest

from functions.api import deliveries, delivery_repository, url_options
from functions.api.delivery_repository import UrlTrackingRules
from functions.api.handler import lambda_handler
from functions.api.rendering import Recipient
from functions.redirect import handler as redirect_handler
from functions.redirect import tracking
from functions.shared.errors import DeliveryNotFound, InvalidRequest, TrackedUrlNotFound
from functions.shared.raw_events import RawEvent
from functions.shared.tokens import LinkClaims, signer
from tests.apigw import FakeContext, http_event, json_body
from tests.fakes_audit import FakeAuditTrail
from tests.fakes_deliveries import FakeDeliveryRepository

BASE_URL = "https://t.example.net"
HTML = (
    '<a href="https://shop.example.com/p?sku={{ sku }}#top">Offer</a>'
    '<a href="https://blog.example.com/post">Blog</a>'
    '<a href="https://partner.example.org/x" data-track="none">Partner</a>'
    '<a href="https://shop.example.com/bye" data-track="optout">Unsubscribe</a>'
)
CLICK = re.compile(re.escape(BASE_URL) + r"/r/([A-Za-z0-9_\-.]+)")


@pytest.fixture
def repo() -> FakeDeliveryRepository:
    return FakeDeliveryRepository()


@pytest.fixture
def api(repo: FakeDeliveryRepository) -> Any:
    delivery_repository.use(repo)
    yield repo
    delivery_repository.use(None)


def call(method: str, path: str, body: Any = None, **options: Any) -> dict[str, Any]:
    return lambda_handler(http_event(method, path, body=body, **options), FakeContext())


def urls_of(details: deliveries.DeliveryDetails) -> list[tuple[str, str, bool]]:
    return [(u.url_id, u.url, u.tracked) for u in details.urls]


# --- web-analytics parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example/p", "https://a.example/p?utm_source=news&utm_medium=email"),
        ("https://a.example/p?x=1", "https://a.example/p?x=1&utm_source=news&utm_medium=email"),
        ("https://a.example/p?utm_source=site", "https://a.example/p?utm_source=site&utm_medium=email"),
        ("https://a.example/p?x=1#frag", "https://a.example/p?x=1&utm_source=news&utm_medium=email#frag"),
        (
            "https://a.example/{{ path }}?sku={{ sku }}",
            "https://a.example/{{ path }}?sku={{ sku }}&utm_source=news&utm_medium=email",
        ),
        (
            "https://a.example/p?utm_source=a&utm_medium=b",
            "https://a.example/p?utm_source=a&utm_medium=b",
        ),
    ],
)
def test_parameters_are_appended_without_overriding_the_links_own(url: str, expected: str) -> None:
    assert url_options.with_parameters(url, {"utm_source": "news", "utm_medium": "email"}) == expected


def test_a_parameter_value_cannot_add_a_placeholder() -> None:
    assert url_options.with_parameters("https://a.example/", {"c": "{{ x }} & y"}) == (
        "https://a.example/?c=%7B%7B+x+%7D%7D+%26+y"
    )


def test_registration_appends_parameters_to_tracked_targets_only(repo: FakeDeliveryRepository) -> None:
    # When a delivery is registered with web-analytics parameters
    details = deliveries.register(
        label="N", html=HTML, url_parameters={"utm_source": "newsletter"}, repo=repo
    )

    # Then each tracked target carries them (before its fragment); the untracked link is left as is
    assert urls_of(details) == [
        ("1", "https://shop.example.com/p?sku={{ sku }}&utm_source=newsletter#top", True),
        ("2", "https://blog.example.com/post?utm_source=newsletter", True),
        ("3", "https://partner.example.org/x", False),
        ("4", "https://shop.example.com/bye?utm_source=newsletter", True),
    ]
    assert details.urls[0].fields == ("sku",)
    assert repo.get(details.delivery.id).url_parameters == {"utm_source": "newsletter"}  # type: ignore[union-attr]


def test_more_than_twenty_parameters_are_refused(repo: FakeDeliveryRepository) -> None:
    with pytest.raises(InvalidRequest, match="at most 20"):
        deliveries.register(label="N", html=HTML, url_parameters={f"p{n}": "v" for n in range(21)}, repo=repo)


# --- account-wide rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "exclude", "never", "always", "tracked"),
    [
        (True, (), (), (), True),
        (True, (), ("*blog*",), (), False),
        (True, ("*blog*",), (), (), False),
        (True, ("*blog*",), ("*blog*",), ("https://blog.*",), True),
        (False, (), (), ("*",), False),  # data-track="none" is never overridden
    ],
)
def test_always_track_wins_over_never_and_exclude_but_not_over_data_track_none(
    asked: bool, exclude: tuple[str, ...], never: tuple[str, ...], always: tuple[str, ...], tracked: bool
) -> None:
    rules = UrlTrackingRules(never_track=never, always_track=always)
    assert (
        url_options.is_tracked("https://blog.example.com/post", asked=asked, exclude=exclude, rules=rules)
        is tracked
    )


def test_rules_are_applied_when_a_delivery_is_registered(
    repo: FakeDeliveryRepository, audit_trail: FakeAuditTrail
) -> None:
    # Given rules: never the shop, but always its opt-out link
    url_options.replace_rules(
        UrlTrackingRules(never_track=("https://shop.*",), always_track=("*/bye", "*partner*")),
        actor="ops",
        repo=repo,
    )

    # When a delivery is registered
    details = deliveries.register(label="N", html=HTML, repo=repo)

    # Then the shop link is not tracked, the opt-out is, and data-track="none" still wins
    assert [u.tracked for u in details.urls] == [False, True, False, True]
    # And the change of rules was audited with who made it
    assert audit_trail.entries[0].action == "settings_changed"
    assert audit_trail.entries[0].actor == "ops"
    assert audit_trail.entries[0].before == {"never_track": [], "always_track": []}


def test_more_than_200_patterns_are_refused(repo: FakeDeliveryRepository) -> None:
    with pytest.raises(InvalidRequest):
        url_options.replace_rules(UrlTrackingRules(never_track=("*",) * 201), actor="a", repo=repo)


# --- turning a URL on or off, relabelling it ---------------------------------------------------


def test_a_url_is_relabelled_and_turned_off_and_the_change_audited(
    repo: FakeDeliveryRepository, audit_trail: FakeAuditTrail
) -> None:
    delivery_id = deliveries.register(label="N", html=HTML, repo=repo).delivery.id

    changed = url_options.change_url(
        delivery_id, "2", actor="ann", tracked=False, label="The blog", category="mirror", repo=repo
    )

    assert (changed.tracked, changed.label, changed.category) == (False, "The blog", "mirror")
    assert repo.tracked_urls(delivery_id)[1] == changed
    entry = audit_trail.entries[-1]
    assert (entry.action, entry.actor, entry.target) == (
        "url_changed",
        "ann",
        f"delivery/{delivery_id}/urls/2",
    )
    assert entry.before == {"tracked": True, "label": "Blog", "category": "click"}
    assert entry.after == {"tracked": False, "label": "The blog", "category": "mirror"}


def test_a_change_that_changes_nothing_is_not_audited(
    repo: FakeDeliveryRepository, audit_trail: FakeAuditTrail
) -> None:
    delivery_id = deliveries.register(label="N", html=HTML, repo=repo).delivery.id
    url_options.change_url(delivery_id, "2", actor="ann", label="Blog", repo=repo)
    assert audit_trail.actions() == ["delivery_created"]


def test_changing_nothing_an_unknown_url_or_delivery_is_refused(repo: FakeDeliveryRepository) -> None:
    delivery_id = deliveries.register(label="N", html=HTML, repo=repo).delivery.id
    with pytest.raises(InvalidRequest):
        url_options.change_url(delivery_id, "1", actor="a", repo=repo)
    with pytest.raises(TrackedUrlNotFound):
        url_options.change_url(delivery_id, "99", actor="a", label="x", repo=repo)
    with pytest.raises(DeliveryNotFound):
        url_options.change_url("dnope", "1", actor="a", label="x", repo=repo)


def test_a_relabelled_url_is_still_rewritten_when_messages_are_rendered(repo: FakeDeliveryRepository) -> None:
    # Given a delivery whose first URL was relabelled and its second turned off before sending
    delivery_id = deliveries.register(label="N", html=HTML, repo=repo).delivery.id
    url_options.change_url(delivery_id, "1", actor="a", label="Renamed", category="mirror", repo=repo)
    url_options.change_url(delivery_id, "2", actor="a", tracked=False, repo=repo)

    # When a message is rendered
    [message] = deliveries.render_messages(
        delivery_id, [Recipient("r1", None, {"sku": "9"})], base_url=BASE_URL, repo=repo
    )

    # Then the relabelled link still points at its tracked URL, the one turned off is left as written
    claims = [signer().verify(token) for token in CLICK.findall(message.html)]
    assert [c.url_id for c in claims if c.kind == "c"] == ["1", "4"]
    assert 'href="https://blog.example.com/post"' in message.html


# --- deleting a delivery ----------------------------------------------------------------------


def test_a_deleted_delivery_is_gone_from_reads_listings_and_rendering(
    repo: FakeDeliveryRepository, audit_trail: FakeAuditTrail
) -> None:
    kept = deliveries.register(label="Kept", html=HTML, repo=repo).delivery.id
    gone = deliveries.register(label="Gone", html=HTML, repo=repo).delivery.id

    deliveries.delete(gone, actor="ann", repo=repo)

    with pytest.raises(DeliveryNotFound):
        deliveries.get(gone, repo=repo)
    with pytest.raises(DeliveryNotFound):
        deliveries.render_messages(gone, [Recipient("r1", None, {})], base_url=BASE_URL, repo=repo)
    with pytest.raises(DeliveryNotFound):
        deliveries.delete(gone, actor="ann", repo=repo)
    assert [d.id for d in deliveries.newest(repo=repo).items] == [kept]
    assert repo.gone_urls == {(gone, str(n)) for n in range(1, 5)}
    entry = audit_trail.entries[-1]
    assert (entry.action, entry.actor, entry.target) == ("delivery_deleted", "ann", f"delivery/{gone}")
    assert entry.before is not None and entry.before["label"] == "Gone"


class _Targets:
    def __init__(self, target: tracking.Target | None) -> None:
        self._target = target

    def target(self, delivery_id: str, url_id: str) -> tracking.Target | None:
        return self._target


class _Sink:
    def __init__(self) -> None:
        self.events: list[RawEvent] = []

    def record(self, event: RawEvent) -> None:
        self.events.append(event)


def _hit(kind: str, token: str) -> tracking.Hit:
    from functions.shared import timeutil

    return tracking.Hit(token, kind, timeutil.now(), "UA", "203.0.113.9", None)


def test_a_link_of_a_deleted_delivery_answers_a_neutral_page_and_records_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a valid click token whose tracked URL is marked gone
    token = signer().sign(LinkClaims("c", "d1", "r1", "1"))
    sink = _Sink()

    # When it is clicked
    answer = tracking.track(
        _hit("click", token), signer(), _Targets(tracking.Target("https://x/", gone=True)), sink
    )

    # Then the answer is the neutral page, without a redirect, and nothing is recorded
    assert answer.status == 410 and answer.location is None
    assert sink.events == []
    monkeypatch.setattr(redirect_handler, "_targets", _Targets(tracking.Target("https://x/", gone=True)))
    monkeypatch.setattr(redirect_handler, "_sink", sink)
    response = redirect_handler.lambda_handler(http_event("GET", f"/r/{token}", token=None), FakeContext())
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"].startswith("text/html")
    assert "Location" not in response["headers"]
    assert "This message is no longer available" in response["body"]
    # And a forged token still answers 404
    forged = redirect_handler.lambda_handler(http_event("GET", "/r/nope", token=None), FakeContext())
    assert forged["statusCode"] == 404


# --- through the API --------------------------------------------------------------------------


def test_patch_answers_the_url_and_validates_its_body(api: FakeDeliveryRepository) -> None:
    created = json_body(call("POST", "/api/deliveries", {"label": "N", "html": HTML}))
    path = f"/api/deliveries/{created['id']}/urls/2"

    answer = call("PATCH", path, {"tracked": False, "label": "Blog post"})

    assert answer["statusCode"] == 200
    assert json_body(answer) == {
        "id": "2",
        "url": "https://blog.example.com/post",
        "label": "Blog post",
        "category": "click",
        "tracked": False,
    }
    assert json_body(call("GET", f"/api/deliveries/{created['id']}"))["urls"][1]["label"] == "Blog post"
    assert call("PATCH", path, {})["statusCode"] == 422
    assert call("PATCH", path, {"colour": "red"})["statusCode"] == 422
    assert call("PATCH", path, {"category": "other"})["statusCode"] == 422
    assert call("PATCH", path, {"tracked": "no"})["statusCode"] == 422
    assert call("PATCH", f"/api/deliveries/{created['id']}/urls/9", {"label": "x"})["statusCode"] == 404
    assert call("PATCH", "/api/deliveries/dnope/urls/1", {"label": "x"})["statusCode"] == 404
    assert call("PATCH", path, {"label": "x"}, token=None)["statusCode"] == 401


def test_post_returns_url_parameters_and_delete_makes_the_delivery_404(api: FakeDeliveryRepository) -> None:
    created = call(
        "POST", "/api/deliveries", {"label": "N", "html": HTML, "url_parameters": {"utm_source": "nl"}}
    )
    body = json_body(created)
    assert body["url_parameters"] == {"utm_source": "nl"}
    assert body["urls"][1]["url"] == "https://blog.example.com/post?utm_source=nl"
    assert (
        call("POST", "/api/deliveries", {"label": "N", "html": HTML, "url_parameters": {"a": 1}})[
            "statusCode"
        ]
        == 422
    )

    deleted = call("DELETE", f"/api/deliveries/{body['id']}")

    assert deleted["statusCode"] == 204
    assert call("GET", f"/api/deliveries/{body['id']}")["statusCode"] == 404
    assert call("DELETE", f"/api/deliveries/{body['id']}")["statusCode"] == 404
    assert json_body(call("GET", "/api/deliveries"))["items"] == []


def test_settings_are_read_and_replaced_through_the_api(api: FakeDeliveryRepository) -> None:
    assert json_body(call("GET", "/api/settings/url-tracking")) == {"never_track": [], "always_track": []}
    rules = {"never_track": ["*://tracker.example/*"], "always_track": ["*/unsubscribe*"]}

    assert json_body(call("PUT", "/api/settings/url-tracking", rules)) == rules
    assert json_body(call("GET", "/api/settings/url-tracking")) == rules
    assert call("PUT", "/api/settings/url-tracking", {"never_track": ["*"] * 201})["statusCode"] == 422
    assert call("PUT", "/api/settings/url-tracking", {"sometimes": []})["statusCode"] == 422
