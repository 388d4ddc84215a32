"""``flowopt ui``: a read-only web app over the store (the ``ui`` extra: Starlette, uvicorn).

`data` turns store queries into the JSON each view shows, `figures` describes plots as
data (drawn by ``static/plot.js``, shared with ``flowopt report``), `server` routes.
Importing this package imports nothing heavy; `server` needs the extra.
"""
from __future__ import annotations

from importlib import resources

STATIC_FILES = ("index.html", "app.js", "plot.js", "style.css")


def static_text(name: str) -> str:
    """One of the page files shipped in the package (`STATIC_FILES`), as text."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return resources.files(__name__).joinpath("static", name).read_text(encoding="utf-8")
