"""The viewer page's files (plain HTML, JS and CSS shipped as package data) and the headers they are
served with: a Content-Security-Policy that lets the page load nothing but its own files."""

from __future__ import annotations

from importlib import resources

PAGE_FILES = ("index.html", "pixels.js", "app.js", "style.css")
#: The page may talk to its own server only; images and videos the user picks are blob: URLs.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page_files() -> dict[str, bytes]:
    """``{file name: bytes}`` of the page, read once from the package."""
    folder = resources.files("polypseg.serve") / "static"
    return {name: (folder / name).read_bytes() for name in PAGE_FILES}
