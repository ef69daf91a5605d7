"""Web-tracking sites: registered, listed and deleted through the report API.

Through the real Lambda handler with API Gateway v2 events and the in-memory site repository and
audit trail; no socket is opened.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.api import sites
from functions.api.errors import InvalidSite, SiteNotFound
from functions.api.handler import lambda_handler
from functions.shared.errors import InvalidToken
from functions.shared.tokens import Signer, signer
from tests.apigw import API_TOKEN, FakeContext, http_event, json_body
from tests.fakes_audit import FakeAuditTrail
from tests.fakes_sites import FakeSiteRepository

SHOP = {"name": "Harbour shop", "domains": ["Shop.Example.com", "harbour.example"]}


@pytest.fixture(autouse=True)
def repo() -> Iterator[FakeSiteRepository]:
    fake = FakeSiteRepository()
    sites.use(fake)
    yield fake
    sites.use(None)


def call(method: str, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
    return lambda_handler(http_event(method, path, body=body, **kwargs), FakeContext())


def create(body: Any = SHOP, **kwargs: Any) -> dict[str, Any]:
    return call("POST", "/api/web-tracking/sites", body, **kwargs)


# --- create -----------------------------------------------------------------------------------


def test_a_site_is_registered_with_its_signed_token_and_tag_urls(repo: FakeSiteRepository) -> None:
    # Given a name and two domains, one in mixed case
    # When the site is registered
    response = create()

    # Then 201 with the site, its domains lower-cased, and tag URLs under the tracking host
    assert response["statusCode"] == 201, response["body"]
    site = json_body(response)
    assert set(site) == {
        "id",
        "name",
        "domains",
        "site_token",
        "created_at",
        "created_by",
        "pixel_url",
        "script_url",
    }
    assert (site["name"], site["domains"]) == ("Harbour shop", ["shop.example.com", "harbour.example"])
    assert site["pixel_url"] == f"https://tracking.example.com/w/{site['site_token']}"
    assert site["script_url"] == f"https://tracking.example.com/w/{site['site_token']}/tag.js"
    assert list(repo.sites) == [site["id"]]
    assert repo.sites[site["id"]].created_by == "default"


def test_the_site_token_verifies_with_the_signer_as_a_site() -> None:
    site = json_body(create())

    claims = signer().verify(site["site_token"])

    assert (claims.kind, claims.delivery_id, claims.recipient_id, claims.url_id) == (
        "w",
        site["id"],
        "",
        None,
    )
    with pytest.raises(InvalidToken):
        Signer("another-key-0123456789abcdefghij").verify(site["site_token"])


def test_the_tag_urls_use_the_configured_tracking_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.shared import settings

    monkeypatch.setenv("MSGTRACK_TRACKING_BASE_URL", "https://t.example.net/")
    settings.reset_caches()

    site = json_body(create())

    assert site["pixel_url"] == f"https://t.example.net/w/{site['site_token']}"


def test_creating_a_site_is_audited(audit_trail: FakeAuditTrail) -> None:
    site = json_body(create())

    [entry] = audit_trail.entries
    assert (entry.action, entry.target, entry.actor) == (
        "site_created",
        f"web-tracking/sites/{site['id']}",
        "default",
    )
    assert entry.before is None
    assert entry.after == {"name": "Harbour shop", "domains": ["shop.example.com", "harbour.example"]}


INVALID_SITES: dict[str, tuple[Any, str]] = {
    "empty name": ({"name": " ", "domains": ["shop.example"]}, "name: give 1 to 200 characters"),
    "long name": ({"name": "x" * 201, "domains": ["shop.example"]}, "name: give 1 to 200 characters"),
    "no domain": ({"name": "Shop", "domains": []}, "domains: give 1 to 50 host names"),
    "51 domains": (
        {"name": "Shop", "domains": [f"d{n}.example" for n in range(51)]},
        "domains: give 1 to 50 host names",
    ),
    "scheme": ({"name": "Shop", "domains": ["https://shop.example"]}, "without scheme, path or port"),
    "path": ({"name": "Shop", "domains": ["shop.example/cart"]}, "without scheme, path or port"),
    "port": ({"name": "Shop", "domains": ["shop.example:8080"]}, "without scheme, path or port"),
    "wildcard": ({"name": "Shop", "domains": ["*.shop.example"]}, "subdomains of a domain match already"),
    "leading dot": ({"name": "Shop", "domains": [".shop.example"]}, "subdomains of a domain match already"),
    "underscore": ({"name": "Shop", "domains": ["my_shop.example"]}, "is not a host name"),
    "empty label": ({"name": "Shop", "domains": ["shop..example"]}, "is not a host name"),
    "hyphen edge": ({"name": "Shop", "domains": ["-shop.example"]}, "is not a host name"),
    "unicode": ({"name": "Shop", "domains": ["bücher.example"]}, "xn-- form"),
    "blank domain": ({"name": "Shop", "domains": [""]}, "domains.0: '' is empty"),
    "number domain": ({"name": "Shop", "domains": [42]}, "domains.0"),
    "missing domains": ({"name": "Shop"}, "domains"),
    "unknown field": ({"name": "Shop", "domains": ["shop.example"], "colour": "red"}, "colour"),
}


@pytest.mark.parametrize(("body", "says"), INVALID_SITES.values(), ids=INVALID_SITES.keys())
def test_an_invalid_site_is_a_422_saying_what_is_wrong(
    body: Any, says: str, repo: FakeSiteRepository, audit_trail: FakeAuditTrail
) -> None:
    response = create(body)

    assert response["statusCode"] == 422, response["body"]
    answer = json_body(response)
    assert answer["error"] == "validation_error"
    assert says in answer["message"]
    assert repo.sites == {} and audit_trail.entries == []


def test_a_body_that_is_not_json_is_a_400() -> None:
    response = create("{not json")
    assert response["statusCode"] == 400
    assert json_body(response)["error"] == "validation_error"


def test_the_same_domain_twice_is_kept_once() -> None:
    site = json_body(create({"name": "Shop", "domains": ["shop.example", " SHOP.example ", "a.example"]}))
    assert site["domains"] == ["shop.example", "a.example"]


# --- list and delete --------------------------------------------------------------------------


def test_sites_are_listed_newest_first_with_their_tags(repo: FakeSiteRepository) -> None:
    # Given three sites created one after the other
    for n, name in enumerate(("first", "second", "third")):
        sites.create(
            name, ["shop.example"], actor="ops", repo=repo, now=datetime(2026, 11, 23, 8, n, tzinfo=UTC)
        )

    # When
    response = call("GET", "/api/web-tracking/sites")

    # Then
    assert response["statusCode"] == 200
    items = json_body(response)["items"]
    assert [item["name"] for item in items] == ["third", "second", "first"]
    assert all(signer().verify(item["site_token"]).delivery_id == item["id"] for item in items)
    assert all(item["pixel_url"].endswith("/w/" + item["site_token"]) for item in items)


def test_no_site_lists_nothing() -> None:
    assert json_body(call("GET", "/api/web-tracking/sites")) == {"items": []}


def test_a_site_is_deleted_and_the_deletion_audited(
    repo: FakeSiteRepository, audit_trail: FakeAuditTrail
) -> None:
    # Given a site
    site = json_body(create())

    # When it is deleted
    response = call("DELETE", f"/api/web-tracking/sites/{site['id']}")

    # Then 204, it is gone from the listing, and the audit trail names what was deleted
    assert response["statusCode"] == 204
    assert repo.sites == {}
    assert json_body(call("GET", "/api/web-tracking/sites")) == {"items": []}
    assert audit_trail.actions() == ["site_created", "site_deleted"]
    assert audit_trail.entries[1].before == {
        "name": "Harbour shop",
        "domains": ["shop.example.com", "harbour.example"],
    }
    assert audit_trail.entries[1].after is None


def test_deleting_an_unknown_site_is_a_404(audit_trail: FakeAuditTrail) -> None:
    response = call("DELETE", "/api/web-tracking/sites/nope")

    assert response["statusCode"] == 404
    assert json_body(response) == {"error": "not_found", "message": "there is no web-tracking site 'nope'"}
    assert audit_trail.entries == []


# --- authentication ---------------------------------------------------------------------------

SITE_ROUTES = [
    ("POST", "/api/web-tracking/sites", SHOP),
    ("GET", "/api/web-tracking/sites", None),
    ("DELETE", "/api/web-tracking/sites/s1", None),
]


@pytest.mark.parametrize("token", [None, "not-the-token"])
@pytest.mark.parametrize(("method", "path", "body"), SITE_ROUTES, ids=[f"{m} {p}" for m, p, _ in SITE_ROUTES])
def test_every_sites_route_needs_the_api_token(
    method: str, path: str, body: Any, token: str | None, repo: FakeSiteRepository
) -> None:
    repo.add(sites.Site("s1", "Shop", ("shop.example",), "2026-11-23T08:00:00.000Z"))

    response = call(method, path, body, token=token)

    assert response["statusCode"] == 401
    assert json_body(response)["error"] == "unauthorized"
    assert list(repo.sites) == ["s1"]


def test_the_sites_routes_are_in_the_openapi_document() -> None:
    document = json_body(call("GET", "/api/openapi.json", token=API_TOKEN))
    assert {"post", "get"} <= set(document["paths"]["/api/web-tracking/sites"])
    assert "delete" in document["paths"]["/api/web-tracking/sites/{site_id}"]
    schema = document["components"]["schemas"]["SiteOut"]
    assert set(schema["required"]) >= {"id", "site_token", "pixel_url", "script_url"}


# --- the logic without HTTP -------------------------------------------------------------------


def test_the_logic_refuses_what_the_schema_lets_through(repo: FakeSiteRepository) -> None:
    with pytest.raises(InvalidSite, match=re.escape("domains.1: 'shop.example:443'")):
        sites.create("Shop", ["a.example", "shop.example:443"], actor="ops", repo=repo)
    with pytest.raises(SiteNotFound):
        sites.delete("s-unknown", actor="ops", repo=repo)
    assert repo.sites == {}


def test_an_id_that_cannot_be_a_site_is_not_looked_up(repo: FakeSiteRepository) -> None:
    looked_up: list[str] = []
    repo.get = lambda site_id: looked_up.append(site_id)  # type: ignore[method-assign,assignment,func-returns-value]
    response = call("DELETE", "/api/web-tracking/sites/" + "x" * 2000)
    assert response["statusCode"] == 404 and looked_up == []


def test_a_name_that_is_not_valid_unicode_is_refused(repo: FakeSiteRepository) -> None:
    response = create(
        '{"name": "Shop \\ud800", "domains": ["shop.example"]}', headers={"content-type": "application/json"}
    )
    assert response["statusCode"] == 422, response["body"]
    assert "valid Unicode" in json_body(response)["message"]


def test_a_host_name_of_63_character_labels_is_accepted_and_one_of_64_refused() -> None:
    assert sites.checked_domains(["a" * 63 + ".example"]) == ("a" * 63 + ".example",)
    with pytest.raises(InvalidSite):
        sites.checked_domains(["a" * 64 + ".example"])
