"""Every refusal as JSON ``{"error": ..., "field": ...}`` with a 4xx status, never a traceback.

The handlers turn the project's own errors into HTTP answers:

* a request whose parameters or body do not fit the spec: 422, ``field`` names
  where (``query.limit``, ``body.inputs.x``);
* :class:`~plait.orm.errors.NotExistentError` (no such node): 404;
* :class:`~plait.engine.ports.InputValidationError` (bad inputs for a
  submit, nothing stored), :class:`~plait.orm.errors.InvalidQueryError`
  and other ``ValueError``/``TypeError``/``LookupError``/``ImportError``
  raised on the request's values: 400 or 422 with the message;
* anything else: 500 with ``{"error": "internal error"}`` and the
  traceback in the server's log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from plait.orm.errors import NotExistentError

__all__ = ["ApiError", "install_error_handlers"]

LOGGER = logging.getLogger("plait.web")


class ApiError(Exception):
    """A refusal with an HTTP status, a message and the request field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": message, "field": field}


def _field_of(location: Any) -> str:
    return ".".join(str(part) for part in location)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.field), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        field = _field_of(first.get("loc", ()))
        message = f"{field}: {first.get('msg', 'invalid value')}" if field else str(first.get("msg"))
        details = [{"field": _field_of(p.get("loc", ())), "error": str(p.get("msg", ""))} for p in problems]
        return JSONResponse({**error_body(message, field), "details": details}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(NotExistentError)
    async def not_found(request: Request, exc: NotExistentError) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=404)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        LOGGER.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(error_body("internal error (see the server's log)"), status_code=500)
