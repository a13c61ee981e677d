"""The web layer: plait's REST API as an ASGI application (FastAPI), served by ``plait web``.

``create_app(profile=...)`` gives the application to serve with uvicorn or to
mount in another ASGI app; every request needs the profile's token
(:mod:`plait.web.auth`).  See docs/web.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["create_app"]


def create_app(profile: Any = None, *, token: str | None = None) -> FastAPI:
    """The REST API application of ``profile`` (a name, a Profile, or None for the default one)."""
    from plait.web.app import create_app as _create_app

    return _create_app(profile, token=token)
