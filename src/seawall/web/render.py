"""Rendering the dashboard's Jinja2 templates: the environment, its filters and the
context every page shares (the caller, the session's CSRF token, the current path)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from seawall.errors import SeawallError
from seawall.units import format_bytes
from seawall.web.session import Caller

TEMPLATES = Path(__file__).parent / "templates"

# When a span of seconds reads better in a larger unit: (unit, its seconds, used below).
_UNITS = (("s", 1, 120.0), ("m", 60, 7200.0), ("h", 3600, 172800.0), ("d", 86400, math.inf))


def _unit(seconds: float, units: tuple[tuple[str, int, float], ...]) -> tuple[str, int]:
    """The unit ``seconds`` is shown in; the last of ``units`` takes everything above."""
    for name, size, below in units[:-1]:
        if seconds < below:
            return name, size
    return units[-1][0], units[-1][1]


def ago(ts: float | None) -> str:
    """How long ago ``ts`` was, in whole units up to days (``"5m ago"``)."""
    if not ts:
        return "—"
    s = max(0, int(time.time() - ts))
    name, size = _unit(s, _UNITS)
    return f"{s // size}{name} ago"


def duration(s: float | None) -> str:
    """A run's length: whole seconds, then minutes and hours to a tenth (no days)."""
    if s is None:
        return "—"
    s = float(s)
    name, size = _unit(s, _UNITS[:3])
    return f"{s:.0f}s" if name == "s" else f"{s / size:.1f}{name}"


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z" if ts else "—"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
    )
    env.filters.update(ago=ago, duration=duration, bytes=format_bytes, when=when)
    env.globals["quote"] = quote
    return env


class Renderer:
    """Renders a template with the shared context into a response."""

    def __init__(self, csrf_of: Callable[[Request], str]) -> None:
        self.env = environment()
        self.csrf_of = csrf_of  #: the CSRF token of a request's session (``Sessions.csrf``)

    def render(
        self, name: str, request: Request, caller: Caller | None, **ctx: Any
    ) -> HTMLResponse:
        ctx.setdefault("csrf", self.csrf_of(request))
        html = self.env.get_template(name).render(caller=caller, path=request.url.path, **ctx)
        return HTMLResponse(html)

    def error(self, request: Request, caller: Caller | None, exc: SeawallError) -> HTMLResponse:
        """The error page, with the status the error maps to."""
        resp = self.render("error.html", request, caller, error=exc, kind=type(exc).__name__)
        resp.status_code = exc.http_status
        return resp
