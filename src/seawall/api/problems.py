"""Errors as problem+json (RFC 9457): the one place an exception becomes an HTTP answer.

The status is the ``http_status`` of the :class:`~seawall.errors.SeawallError` class (the
error tree maps to HTTP here, at the edge, and nowhere else); the title is the class name
(``NotFound``, ``PreflightFailed``, ...), so clients branch on the title, not the text.
FastAPI's own validation errors and Starlette's HTTP errors (unknown path, wrong method)
answer in the same shape, so every error a client sees parses the same way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from seawall.api.schemas import Problem
from seawall.errors import SeawallError

PROBLEM = "application/problem+json"

#: The error answers every ``/v1`` route may give, as documented in the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": why}
    for code, why in (
        (400, "a token in the URL (send it in a header)"),
        (401, "no or invalid token"),
        (403, "not allowed"),
        (404, "not found (or not visible to the caller's project)"),
        (409, "conflict or failed preflight"),
        (422, "invalid input"),
        (503, "a dependency is unavailable; retry"),
    )
}


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


async def seawall_error(_req: Request, exc: SeawallError) -> JSONResponse:
    return problem(
        exc.http_status,
        type(exc).__name__,
        str(exc),
        field=getattr(exc, "field", None),
        problems=getattr(exc, "problems", None),
    )


async def invalid_request(_req: Request, exc: RequestValidationError) -> JSONResponse:
    parts = [
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
    ]
    return problem(422, "InvalidInput", "; ".join(parts) or "invalid request")


async def http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem(exc.status_code, "HTTPError", str(exc.detail))


def add_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json (see the module docstring)."""
    app.exception_handler(SeawallError)(seawall_error)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(StarletteHTTPException)(http_error)
