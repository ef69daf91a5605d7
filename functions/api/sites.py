"""Web-tracking sites: the pages tracked links lead to, and the signed token their tag carries.

A site is a name and the domains its tag may report from (a subdomain of one matches too). Its token
is ``LinkClaims("w", site_id, "")`` signed like every link, so the redirect function, which answers
the tag, knows the site without a read it is not allowed; it reads the site item only to check the
domain. Each function takes its repository as an argument (default: the container's DynamoDB one),
so the unit tests hand it an in-memory fake.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from functions.api import audit, audited_registry
from functions.api.errors import InvalidSite, SiteNotFound
from functions.shared import ids, timeutil
from functions.shared.models import SITES_PK, SiteModel
from functions.shared.tokens import LinkClaims, Signer, signer

MAX_NAME = 200
MAX_DOMAINS = 50
MAX_DOMAIN = 253  # the longest DNS name
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_SITE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what ``create`` hands out, with room to spare


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    domains: tuple[str, ...]
    created_at: str
    created_by: str | None = None


@dataclass(frozen=True)
class IssuedSite:
    """A site as the API answers it: with its tag's token and the URLs to put on its pages."""

    site: Site
    site_token: str
    pixel_url: str
    script_url: str


class SiteRepository(Protocol):
    def add(self, site: Site) -> None: ...

    def all(self) -> list[Site]:
        """Every site, in no particular order (an account has a handful)."""
        ...

    def get(self, site_id: str) -> Site | None: ...

    def delete(self, site_id: str) -> None: ...


# --- logic ------------------------------------------------------------------------------------


def create(
    name: str,
    domains: Sequence[str],
    *,
    actor: str,
    repo: SiteRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> Site:
    """Register a site; its domains are lower-cased and listed once each, in the order given."""
    site = Site(
        id="s" + ids.random_id(11),
        name=_checked_name(name),
        domains=checked_domains(domains),
        created_at=timeutil.iso(now or timeutil.now()),
        created_by=actor,
    )
    audited_registry.add(site, _AUDITED, _or_default(repo), audited_registry.Change(actor, trail, now))
    return site


def newest(repo: SiteRepository | None = None) -> list[Site]:
    """Every site, newest first."""
    return audited_registry.newest(_or_default(repo))


def delete(
    site_id: str,
    *,
    actor: str,
    repo: SiteRepository | None = None,
    trail: audit.AuditTrail | None = None,
    now: datetime | None = None,
) -> None:
    """Remove a site: its tag answers 404 from now on and records nothing."""
    audited_registry.delete(site_id, _AUDITED, _or_default(repo), audited_registry.Change(actor, trail, now))


def issue(site: Site, base_url: str, link_signer: Signer | None = None) -> IssuedSite:
    """The site with its signed token and tag URLs under ``base_url`` (where /r and /o live too)."""
    token = (link_signer or signer()).sign(LinkClaims("w", site.id, ""))
    base = base_url.rstrip("/")
    return IssuedSite(site, token, f"{base}/w/{token}", f"{base}/w/{token}/tag.js")


def checked_domains(domains: Sequence[str]) -> tuple[str, ...]:
    """The host names a site's tag may report from, lower-cased; InvalidSite says what is wrong."""
    if not 1 <= len(domains) <= MAX_DOMAINS:
        raise InvalidSite(f"domains: give 1 to {MAX_DOMAINS} host names, such as shop.example.com")
    checked: list[str] = []
    for position, given in enumerate(domains):
        domain = given.strip().lower() if isinstance(given, str) else ""
        problem = _domain_problem(domain)
        if problem:
            raise InvalidSite(f"domains.{position}: {given!r} {problem}")
        if domain not in checked:
            checked.append(domain)
    return tuple(checked)


def _domain_problem(domain: str) -> str | None:
    if not domain:
        return "is empty; give a host name such as shop.example.com"
    if "://" in domain or "/" in domain or ":" in domain or "?" in domain or "#" in domain:
        return "must be a host name only, without scheme, path or port (e.g. shop.example.com)"
    if domain.startswith(("*", ".")):
        return "must not start with '*' or '.': subdomains of a domain match already"
    if not domain.isascii():
        return "must be written in ASCII; give an international domain name in its xn-- form"
    if len(domain) > MAX_DOMAIN or not _DOMAIN.match(domain):
        return "is not a host name: letters, digits and hyphens in dot-separated labels of 1 to 63"
    return None


def _checked_name(name: str) -> str:
    stripped = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(stripped) <= MAX_NAME:
        raise InvalidSite(f"name: give 1 to {MAX_NAME} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in stripped):
        raise InvalidSite("name: must not contain control characters")
    try:
        stripped.encode()
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry but DynamoDB cannot store
        raise InvalidSite("name: must be valid Unicode text") from None
    return stripped


def _described(site: Site) -> dict[str, object]:
    return {"name": site.name, "domains": list(site.domains)}


def _not_found(site_id: str) -> SiteNotFound:
    return SiteNotFound(f"there is no web-tracking site {site_id!r}")


_AUDITED = audited_registry.RegistryAudit[Site](
    "site_created", "site_deleted", "web-tracking/sites", _SITE_ID, _not_found, _described
)


# --- DynamoDB ---------------------------------------------------------------------------------


class DynamoSiteRepository:
    """Site items in the tracked-urls table, under their own partition (``SITES_PK``)."""

    def add(self, site: Site) -> None:
        SiteModel(
            url_id=site.id,
            name=site.name,
            domains=list(site.domains),
            created_at=site.created_at,
            created_by=site.created_by,
        ).save()

    def all(self) -> list[Site]:
        return [_site(item) for item in SiteModel.query(SITES_PK)]

    def get(self, site_id: str) -> Site | None:
        try:
            return _site(SiteModel.get(SITES_PK, site_id))
        except SiteModel.DoesNotExist:
            return None

    def delete(self, site_id: str) -> None:
        # A batch write, as the workflow's erasures delete: no function is granted DeleteItem itself.
        with SiteModel.batch_write() as batch:
            batch.delete(SiteModel(delivery_id=SITES_PK, url_id=site_id))


def _site(item: SiteModel) -> Site:
    return Site(
        id=item.url_id,
        name=item.name,
        domains=tuple(str(domain) for domain in item.domains or ()),
        created_at=item.created_at,
        created_by=item.created_by,
    )


_repository: SiteRepository | None = None


def repository() -> SiteRepository:
    """The container's repository: DynamoDB unless ``use`` installed another (tests)."""
    global _repository  # one per container
    if _repository is None:
        _repository = DynamoSiteRepository()
    return _repository


def use(replacement: SiteRepository | None) -> None:
    """Install a repository (an in-memory fake in tests); None restores the DynamoDB one."""
    global _repository
    _repository = replacement


def _or_default(repo: SiteRepository | None) -> SiteRepository:
    return repo if repo is not None else repository()
