"""The REST API application: :func:`create_app` builds it for one profile.

Serve it with ``plait web`` (uvicorn on 127.0.0.1), or mount it in your own
ASGI application::

    from plait.web import create_app
    outer_app.mount("/plait", create_app(profile="default"))

Every request, the OpenAPI spec (``/openapi.json``) and the interactive docs
(``/docs?token=...``) included, needs the profile's token (:mod:`plait.web.auth`):
without it the answer is 401.  The dashboard's page (``/``) and its assets
(``/static/...``) are the exception: they hold no data, and the page calls the
API with the token (:mod:`plait.web.dashboard`).  No CORS headers are sent, so a page of
another origin cannot call the API from a browser.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from plait.web import dashboard, routes_daemon, routes_events, routes_nodes, routes_processes
from plait.web.auth import bearer, check_token, load_or_create_token
from plait.web.errors import error_body, install_error_handlers

__all__ = ["TokenMiddleware", "create_app"]


class TokenMiddleware:
    """Refuse (401, JSON) every HTTP request that lacks the token; pure ASGI, so streams pass through."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            from starlette.requests import Request
            from starlette.responses import JSONResponse

            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if not dashboard.is_public(path) and not check_token(Request(scope), self.token):
                response = JSONResponse(
                    error_body("a valid token is needed: Authorization: Bearer <token> (see `plait web`)"),
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(profile: Any = None, *, token: str | None = None) -> FastAPI:
    """The API of ``profile`` (a name, a Profile, or None: the default one), made current here.

    Args:
        profile: which profile the API serves (it becomes this interpreter's current profile).
        token: the token to require; by default the profile's own (made on first use).

    Raises:
        plait.web.auth.TokenError: the profile's token file is readable by others, or empty.
    """
    from plait.storage import load_profile

    name = getattr(profile, "name", profile)
    current = load_profile(name)
    expected = token if token is not None else load_or_create_token(current)
    app = FastAPI(
        title="plait",
        summary=f"the REST API of plait profile '{current.name}'",
        version=_version(),
        dependencies=[Depends(bearer)],  # shows the bearer scheme in the spec; TokenMiddleware checks it
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        """Swagger UI; it fetches the spec with the token this page was opened with."""
        root = request.scope.get("root_path", "")
        spec = f"{root}/openapi.json?" + urlencode({"token": request.query_params.get("token", "")})
        return get_swagger_ui_html(openapi_url=spec, title="plait API")

    install_error_handlers(app)
    for module in (routes_events, routes_processes, routes_nodes, routes_daemon, dashboard):
        app.include_router(module.router)
    app.mount(dashboard.STATIC_PREFIX, dashboard.static_files(), name="static")
    app.add_middleware(TokenMiddleware, token=expected)
    app.state.profile = current
    return app


def _version() -> str:
    from plait import __version__

    return str(__version__)
