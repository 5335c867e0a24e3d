"""The HTML pages (server-rendered with Jinja2): filled in by the next step."""

from __future__ import annotations

from starlette.routing import Route

from lib.web.app import Site


def routes(site: Site) -> list[Route]:
    return []
