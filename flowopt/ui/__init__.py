"""``flowopt ui``: a read-only web app over the store (the ``ui`` extra: Starlette, uvicorn).

`data` turns store queries into the JSON each view shows, `figures` describes plots as
data (drawn by ``static/plot.js``, shared with ``flowopt report``), `server` routes.
Importing this package imports nothing heavy; `server` needs the extra.
"""
