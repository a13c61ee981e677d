"""The dashboard: ``GET /`` serves its page, ``/static/...`` its script and style (all in the package).

The page and its assets hold no data and are served without the token (a
browser cannot send a header when it opens a URL); everything the page shows
comes from the API, which the page calls with ``Authorization: Bearer
<token>``.  The token reaches the page in the URL's fragment (``/#token=...``,
which a browser never sends to a server, so it is in no access log nor
``Referer``); the page moves it into ``sessionStorage`` (this tab, this
origin, until the tab closes) and removes it from the address bar.  No
cookie is set, so no other site or local port can make the browser act with
it (no CSRF).  The page is sent with a Content-Security-Policy that allows
only this origin's own script, style and connections.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS", "PUBLIC_PATHS", "STATIC_PREFIX", "router", "static_files"]

#: the folder of the page, its script and its style (package data)
ASSETS = Path(__file__).resolve().parent / "dashboard"
STATIC_PREFIX = "/static"
#: paths served without the token: the page and its assets, which hold no data
PUBLIC_PATHS = ("/", "/index.html")

#: what the page may load and call: only this origin, no inline script, no frames
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get("/index.html")
def page() -> FileResponse:
    """The dashboard's one page (it draws every view itself, from the API's JSON)."""
    return FileResponse(ASSETS / "index.html", media_type="text/html", headers=PAGE_HEADERS)


def static_files() -> StaticFiles:
    """The dashboard's script and style, served from the package folder."""
    return StaticFiles(directory=ASSETS, check_dir=True)


def is_public(path: str) -> bool:
    """True for the page and its assets (served without the token)."""
    return path in PUBLIC_PATHS or path.startswith(STATIC_PREFIX + "/")
