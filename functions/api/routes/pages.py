"""Routes without authentication: the health check and the web dashboard.

The dashboard is static: ``index.html``, a stylesheet and ES modules in ``functions/api/dashboard/``,
read once per container. Its assets are addressed under the content hash of the whole folder
(``/dashboard/<version>/<name>``), so a browser may keep them for a year and a new deployment is
fetched at once; the page itself is revalidated on every visit. The page holds no data: its scripts
ask the report API with the bearer token the user enters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

router = Router()

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
VERSION_MARK = "__VERSION__"  # in index.html, replaced by the assets' version
ASSET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.(?:js|css)")
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

# Scripts only from the dashboard's own files. Inline styles and remote images are allowed because the
# hot-clicks preview (a sandboxed srcdoc frame, which inherits this policy) is an email: its layout is
# inline CSS and its pictures live on the sender's servers. Nothing the dashboard shows is parsed as
# HTML outside that frame, and the frame runs no script (sandbox="", scripts stripped by the API).
PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: https:",
        "style-src 'self' 'unsafe-inline'",
        "script-src 'self'",
        "frame-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "object-src 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": REVALIDATE,
}


@dataclass(frozen=True)
class Dashboard:
    version: str
    page: str
    assets: dict[str, str]  # file name -> content


@cache
def dashboard() -> Dashboard:
    """The dashboard's files, versioned by their content."""
    assets = {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(DASHBOARD_DIR.iterdir())
        if ASSET_NAME.fullmatch(path.name)
    }
    page = (DASHBOARD_DIR / "index.html").read_text(encoding="utf-8")
    digest = hashlib.sha256(page.encode())
    for name, content in assets.items():
        digest.update(b"\0" + name.encode() + b"\0" + content.encode())
    version = digest.hexdigest()[:12]
    return Dashboard(version=version, page=page.replace(VERSION_MARK, version), assets=assets)


def _asset(name: str, cache_control: str) -> Response[str]:
    content = dashboard().assets.get(name)
    if content is None:
        raise NotFoundError(f"the dashboard has no file {name!r}")
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": cache_control}
    return Response(200, CONTENT_TYPES[Path(name).suffix], content, headers=headers)


@router.get("/health", summary="Ready to serve")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/", summary="The dashboard", include_in_schema=False)
def page() -> Response[str]:
    return Response(200, "text/html; charset=utf-8", dashboard().page, headers=dict(PAGE_HEADERS))


@router.get("/dashboard/<version>/<name>", include_in_schema=False)
def versioned_asset(version: str, name: str) -> Response[str]:
    """A file of this version may be kept for good; an older page's request gets today's file, briefly."""
    return _asset(name, IMMUTABLE if version == dashboard().version else REVALIDATE)


@router.get("/dashboard/<name>", include_in_schema=False)
def asset(name: str) -> Response[str]:
    return _asset(name, REVALIDATE)
