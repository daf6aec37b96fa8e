"""``/docs``: Swagger UI from the ``swagger-ui-bundle`` package (no CDN)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_ASSETS = "/docs-assets"
DOCS_SPEC = "/docs/openapi.json"


def swagger_ui(app: FastAPI) -> None:
    """``/docs`` with Swagger UI's files served from the ``swagger-ui-bundle`` package, not
    a CDN, so it works offline. Public like ``/openapi.json``: no key needed.

    swagger-ui-bundle 1.1 (the latest) ships Swagger UI 4, which refuses ``openapi:
    3.1.0`` ("Unable to render this definition"); FastAPI writes 3.1. For a Swagger UI
    before 5 the page reads ``DOCS_SPEC``, the same description labelled 3.0.3 (which
    Swagger UI 4 renders); ``/openapi.json`` itself is unchanged."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
    bundled = re.search(r"(\d+)\.\d+", Path(swagger_ui_path).name)
    relabel = bundled is not None and int(bundled.group(1)) < 5

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy, as FastAPI's
        assets = f"{root}{DOCS_ASSETS}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{DOCS_SPEC if relabel else app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png")

    if relabel:
        @app.get(DOCS_SPEC, include_in_schema=False)
        async def docs_spec() -> dict[str, Any]:
            return {**app.openapi(), "openapi": "3.0.3"}
