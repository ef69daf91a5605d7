"""An in-memory SiteRepository with the same promises as the DynamoDB one."""

from __future__ import annotations

from dataclasses import dataclass, field

from functions.api.sites import Site


@dataclass
class FakeSiteRepository:
    sites: dict[str, Site] = field(default_factory=dict)

    def add(self, site: Site) -> None:
        self.sites[site.id] = site

    def all(self) -> list[Site]:
        return list(self.sites.values())

    def get(self, site_id: str) -> Site | None:
        return self.sites.get(site_id)

    def delete(self, site_id: str) -> None:
        self.sites.pop(site_id, None)
