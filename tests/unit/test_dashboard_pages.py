"""The dashboard as the API function serves it: the page, its assets, their headers and caching."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from functions.api.routes import pages
from tests.apigw import FakeContext, http_event

DASHBOARD = Path(pages.__file__).resolve().parents[1] / "dashboard"


def get(path: str) -> dict[str, Any]:
    from functions.api.handler import lambda_handler

    return lambda_handler(http_event("GET", path, token=None), FakeContext())


def test_the_page_needs_no_token_and_names_its_assets_by_version() -> None:
    # When the dashboard is opened without any token
    response = get("/")

    # Then it is the page, revalidated on every visit, with its assets under the current version
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert response["headers"]["Cache-Control"] == "no-cache"
    version = pages.dashboard().version
    assert re.fullmatch(r"[0-9a-f]{12}", version)
    assert f'src="/dashboard/{version}/app.js"' in response["body"]
    assert f'href="/dashboard/{version}/app.css"' in response["body"]
    assert pages.VERSION_MARK not in response["body"]


def test_the_page_is_locked_down() -> None:
    headers = get("/")["headers"]
    policy = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"  # no inline script, no eval, no CDN
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")],
)
def test_a_versioned_asset_is_kept_for_a_year(name: str, content_type: str) -> None:
    response = get(f"/dashboard/{pages.dashboard().version}/{name}")
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == content_type
    assert response["headers"]["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["headers"]["X-Content-Type-Options"] == "nosniff"
    assert response["body"] == (DASHBOARD / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ["/dashboard/0123456789ab/app.js", "/dashboard/app.js"])
def test_an_asset_of_another_version_or_none_is_served_but_revalidated(path: str) -> None:
    response = get(path)
    assert response["statusCode"] == 200
    assert response["headers"]["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/secret.py",
        "/dashboard/__init__.py",
        "/dashboard/index.html",
        "/dashboard/v1/..%2Fhandler.py",
        "/dashboard/v1/../../handler.py",
        "/dashboard/nothing.js",
    ],
)
def test_only_the_dashboards_own_scripts_and_styles_are_served(path: str) -> None:
    response = get(path)
    assert response["statusCode"] == 404
    assert "def " not in response["body"]


def test_the_version_changes_with_any_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given a copy of the dashboard
    for file in DASHBOARD.iterdir():
        if file.is_file():
            (tmp_path / file.name).write_bytes(file.read_bytes())
    monkeypatch.setattr(pages, "DASHBOARD_DIR", tmp_path)
    pages.dashboard.cache_clear()
    try:
        before = pages.dashboard().version
        # When one script changes
        (tmp_path / "chart.js").write_text("// changed\n", encoding="utf-8")
        pages.dashboard.cache_clear()
        # Then the version, and so every asset's address, changes
        assert pages.dashboard().version != before
    finally:
        pages.dashboard.cache_clear()


# --- how the scripts are written ----------------------------------------------------------------

SCRIPTS = sorted(DASHBOARD.glob("*.js"))


def test_the_page_has_no_inline_script_or_handler() -> None:
    html = (DASHBOARD / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert not re.search(r"\son[a-z]+\s*=", html)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_no_script_parses_data_as_html_or_code(script: Path) -> None:
    # Everything is built with DOM calls and textContent (dom.js): no HTML sink, no eval, no CDN.
    source = script.read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, f"{script.name} uses {sink}"
    assert not re.search(r"""(?:from|import)\s*\(?\s*["']https?:""", source), (
        f"{script.name} imports from the web"
    )


def test_every_module_the_scripts_import_is_served() -> None:
    served = set(pages.dashboard().assets)
    for script in SCRIPTS:
        for imported in re.findall(r"""from\s+["']\./([^"']+)["']""", script.read_text(encoding="utf-8")):
            assert imported in served, f"{script.name} imports {imported}, which is not served"


def test_the_hot_clicks_preview_is_a_sandboxed_frame() -> None:
    source = (DASHBOARD / "delivery.js").read_text(encoding="utf-8")
    assert re.search(r'h\("iframe", \{[^}]*sandbox: ""', source)
    assert "srcdoc" in source


def _quoted_after(source: str, start: str, end: str) -> list[str]:
    """The first quoted string of each ``[...]`` entry between ``start`` and ``end`` in a script."""
    block = source[source.index(start) : source.index(end, source.index(start))]
    return re.findall(r"""\[\s*["']([a-z_]*)["']""", block)


def test_every_section_of_the_navigation_has_a_page() -> None:
    # Given the sections the top bar links to
    html = (DASHBOARD / "index.html").read_text(encoding="utf-8")
    linked = dict(re.findall(r'<a href="#/([a-z-]+)" data-section="([a-z-]+)">', html))
    assert {"web-tracking", "url-rules"} <= set(linked)
    # Then the router has a page for each, marked as that section
    routes = (DASHBOARD / "app.js").read_text(encoding="utf-8")
    for path, section in linked.items():
        assert re.search(rf'\[/\^#\\/{re.escape(path)}\\/\?\$/, "{section}"', routes), path


def test_the_audit_page_offers_every_action_the_api_records() -> None:
    from functions.api.audit import ACTIONS

    source = (DASHBOARD / "audit.js").read_text(encoding="utf-8")
    offered = _quoted_after(source, "const ACTIONS", "];")
    assert offered[0] == ""  # every action
    assert sorted(offered[1:]) == sorted(ACTIONS)


def test_the_log_tables_offer_every_log_type_the_api_filters_on() -> None:
    from typing import get_args

    from functions.api.report_schemas import LogType

    source = (DASHBOARD / "logtable.js").read_text(encoding="utf-8")
    offered = _quoted_after(source, "export const LOG_TYPES", "];")
    assert offered[0] == ""  # any type
    assert sorted(offered[1:]) == sorted(get_args(LogType))
