"""``flowopt ui``: a read-only web app over the store (Starlette + uvicorn, the ``ui`` extra).

Routes: ``/`` is the single page (``static/index.html``); ``/static/NAME`` serves only
the files listed in `STATIC` from the package (never a path from the request, so no file
outside the package is ever served); ``/api/...`` answers JSON from `flowopt.ui.data`.

Safety policy:

* The store is opened with `ReadOnlyStore`: queries only, every write raises.
* It binds 127.0.0.1 by default. Any other host needs a token (``--token`` or
  ``$FLOWOPT_UI_TOKEN``), checked on every request in constant time: as
  ``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` once, which sets an HttpOnly,
  SameSite=Strict cookie for the pages that follow.
* Pages build the DOM with ``textContent`` (never ``innerHTML`` with data), and a
  Content-Security-Policy allows scripts from this server only, so a pipeline named
  ``<script>…`` is shown as text.
* Store errors become ``{"error", "hint", "field", "position"}`` with status 400/404.
  A filter or ordering the user typed on the Runs page that does not parse is an
  answer, not a failure: ``200 {"invalid": {...}}`` with the column of the mistake.
"""
from __future__ import annotations

import hmac
import json
import os
import threading
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from flowopt.errors import FlowoptError, StoreError

from . import data, static_text

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "plot.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "FLOWOPT_UI_TOKEN"
COOKIE = "flowopt_ui_token"


class _Guard:
    """ASGI middleware: the token check and the security headers on every response."""

    def __init__(self, app: Any, token: str | None = None):
        self.app, self.token = app, token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        set_cookie = False
        if self.token is not None:
            given = request.headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else None
            query = request.query_params.get("token")
            cookie = request.cookies.get(COOKIE)
            ok = any(v is not None and hmac.compare_digest(v.encode(), self.token.encode())
                     for v in (given, query, cookie))
            if not ok:
                await PlainTextResponse("a token is required (?token=… or Authorization: Bearer)",
                                        status_code=401)(scope, receive, send)
                return
            set_cookie = query is not None

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"),
                            (b"cache-control", b"no-store")]
                if set_cookie:
                    headers.append((b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; "
                                    "SameSite=Strict; Path=/".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(exc: Exception) -> JSONResponse:
    body: dict[str, Any] = {"error": str(exc), "hint": getattr(exc, "hint", None)}
    position = getattr(exc, "position", None)
    if position is not None:
        body.update(field="where", position=position)
    text = str(exc)
    if "order-by" in text or "order by" in text:
        body["field"] = "order_by"
    status = 404 if text.startswith("no ") and " with id " in text else 400
    return JSONResponse(body, status_code=status)


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        raise StoreError(f"'{name}' must be a whole number") from None


def build_app(store: Any, *, token: str | None = None) -> Starlette:
    """The ASGI app over an open store (tests pass a store; `serve` opens one read-only)."""
    lock = threading.Lock()  # SQLAlchemy is thread-safe; this keeps a store's caches simple

    def api(work: Callable[[Request], Any]) -> Callable[[Request], Any]:
        def endpoint(request: Request) -> Response:
            try:
                with lock:
                    return JSONResponse(work(request))
            except FlowoptError as exc:
                return _error(exc)
        return endpoint

    files = {name: static_text(name).encode() for name in STATIC}  # read once, served from memory

    async def page(_: Request) -> Response:
        return Response(files["index.html"], media_type=STATIC["index.html"])

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            return PlainTextResponse("not found", status_code=404)
        return Response(files[name], media_type=STATIC[name])

    def runs(request: Request) -> Any:
        q = request.query_params
        try:
            return runs_page(request, q)
        except StoreError as exc:  # the user's filter or ordering: an answer, not a failure
            answer = json.loads(_error(exc).body)
            answer.setdefault("field", "where" if q.get("where") else "order_by")
            return {"invalid": answer}

    def runs_page(request: Request, q: Any) -> Any:
        return data.runs_view(store, where=q.get("where"), order_by=q.get("order_by"),
                              offset=_int(request, "offset", 0), limit=_int(request, "limit", 50),
                              pipeline=q.get("pipeline"), status=q.get("status"),
                              trials=q.get("trials") in ("1", "true"))

    def run(request: Request) -> Any:
        return data.run_view(store, request.path_params["run_id"])

    def compare(request: Request) -> Any:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i.strip()]
        return data.compare_view(store, ids)

    def tuner(request: Request) -> Any:
        return data.tuner_view(store, request.path_params["run_id"], request.path_params["node"],
                               request.query_params.get("curve"))

    def lineage(request: Request) -> Any:
        return data.lineage_view(store, request.path_params["artifact"])

    async def no_icon(_: Request) -> Response:
        return Response(status_code=204)  # browsers ask; an empty answer is no error

    routes = [Route("/", page), Route("/static/{name}", static), Route("/favicon.ico", no_icon),
              Route("/api/runs", api(runs)), Route("/api/runs/{run_id}", api(run)),
              Route("/api/compare", api(compare)),
              Route("/api/runs/{run_id}/tuner/{node}", api(tuner)),
              Route("/api/lineage/{artifact}", api(lineage))]
    return Starlette(routes=routes, middleware=[Middleware(_Guard, token=token)])


def check_host(host: str, token: str | None) -> None:
    """A host other than loopback needs a token: anyone on the network could read the store."""
    if host not in LOCAL_HOSTS and not token:
        raise FlowoptError(f"--host {host} serves the store to the network and needs a token",
                           hint=f"pass --token SECRET or set ${TOKEN_ENV}; or keep --host 127.0.0.1")


def serve(location: str, *, host: str = "127.0.0.1", port: int = 8321, token: str | None = None,
          artifacts: str | None = None, ready: Callable[[str], None] | None = None) -> None:
    """Open the store read-only and serve the app until interrupted."""
    token = token or os.environ.get(TOKEN_ENV) or None
    check_host(host, token)
    try:
        import uvicorn
    except ImportError:
        raise FlowoptError("flowopt ui needs the ui extra",
                           hint="pip install 'flowopt[ui]'") from None
    from flowopt.store.browse import ReadOnlyStore

    store = ReadOnlyStore.open(location, artifacts=artifacts)
    app = build_app(store, token=token)
    if ready is not None:
        ready(f"http://{'[' + host + ']' if ':' in host else host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
