"""The playground at /, the dashboard at /dashboard and their assets under /web/, from the package's files.

The pages are the same for everyone; what they show comes from the API, with the key the person types in.
Every page and asset carries a Content-Security-Policy that allows only this origin's scripts (none
inline), so a model's reply rendered on the page can never run as code.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from starlette.responses import Response

from quasar.errors import NotFound

router = APIRouter(include_in_schema=False)

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def asset(name: str) -> bytes | None:
    """A file of quasar/web/static by its plain name (no folders), or None."""
    if "/" in name or "\\" in name or name.startswith(".") or not any(name.endswith(ext) for ext in TYPES):
        return None
    path = resources.files("quasar.web").joinpath("static", name)
    return path.read_bytes() if path.is_file() else None


def _serve(name: str) -> Response:
    body = asset(name)
    if body is None:
        raise NotFound(f"No such file: {name}", code="not_found")
    return Response(body, media_type=TYPES["." + name.rsplit(".", 1)[1]], headers=HEADERS)


@router.get("/")
async def playground() -> Response:
    return _serve("playground.html")


@router.get("/dashboard")
async def dashboard() -> Response:
    return _serve("dashboard.html")


@router.get("/web/{name}")
async def static(name: str) -> Response:
    return _serve(name)
