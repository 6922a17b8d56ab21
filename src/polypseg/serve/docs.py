"""FastAPI's API reference page at ``/docs``, with Swagger UI served from the package ``swagger-ui-bundle``
(extra ``serve``) instead of a CDN, so it works on a hospital network without internet access."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from polypseg.serve.limits import ServeError

#: The Swagger UI files the page loads, with their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def _assets_dir() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


def add_docs(app: FastAPI) -> None:
    """``GET /docs`` (the Swagger UI page) and ``GET /docs-assets/{name}`` on ``app`` (built with
    ``docs_url=None``); without ``swagger-ui-bundle`` installed ``/docs`` says how to install it."""
    folder = _assets_dir()

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if folder is None:
            raise ServeError(404, "the API reference needs swagger-ui-bundle: pip install -e '.[serve]'; "
                             "the schema itself is at /openapi.json")  # fmt: skip
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @app.get("/docs-assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if folder is None or name not in ASSETS:
            raise ServeError(404, "not found")
        return Response((folder / name).read_bytes(), media_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400"})  # fmt: skip
