"""Routes: web-tracking sites, whose tag reports page views and transactions (mounted at
``/api/web-tracking``)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from functions.api import deliveries, sites
from functions.api.auth import current_actor
from functions.api.schemas import CreateSite, SiteOut, SitesOut

router = Router()


@router.post("/sites", status_code=201, summary="Register a web-tracking site and get its tag")
def create_site(request: Annotated[CreateSite, Body()]) -> SiteOut:
    site = sites.create(request.name, request.domains, actor=current_actor(), repo=sites.repository())
    return SiteOut.of(sites.issue(site, _tracking_base_url()))


@router.get("/sites", summary="Web-tracking sites, newest first")
def list_sites() -> SitesOut:
    base_url = _tracking_base_url()
    return SitesOut(
        items=[SiteOut.of(sites.issue(site, base_url)) for site in sites.newest(sites.repository())]
    )


@router.delete(
    "/sites/<site_id>",
    summary="Delete a web-tracking site: its tag answers 404 and records nothing from now on",
    responses={204: {"description": "Deleted"}},
)
def delete_site(site_id: str) -> Response[None]:
    sites.delete(site_id, actor=current_actor(), repo=sites.repository())
    return Response(204)


def _tracking_base_url() -> str:
    # The tag lives where /r and /o live: found the way rendered links find theirs.
    return deliveries.tracking_base_url(router.current_event.headers)
