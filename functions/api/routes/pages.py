"""Routes without authentication: the health check and the dashboard page."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

router = Router()

# A placeholder until the dashboard lands; it already carries the headers the real page will need.
DASHBOARD_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>msgtrack</title>
</head>
<body>
<h1>msgtrack</h1>
<p>The dashboard is coming; the report API is at /api</p>
</body>
</html>
"""

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/health", summary="Ready to serve")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/", summary="The dashboard", include_in_schema=False)
def dashboard() -> Response[str]:
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=DASHBOARD_HTML,
        headers=dict(PAGE_HEADERS),
    )
