"""The dashboard's HTTP server (aiohttp, which the operator already ships with Kopf),
on 127.0.0.1 only.

Pages are built by :mod:`.pages` and :mod:`.path_pages` from a :class:`~.feed.Feed`
(one of ModelPromotions, one of PromotionPaths, started when a path page is first
opened); each page's live part is pushed again, as Server-Sent Events, whenever
the watch sees a change.
The buttons post forms: the CSRF token and the ``Host`` are checked
(:mod:`.csrf`), then the plugin's own request (:mod:`..operations`) runs as the
user, and the API server's answer, a refusal included, is shown on the page.
The client's credentials never reach a page, a header or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import webbrowser
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from promotion_operator.kubectl_plugin import operations
from promotion_operator.kubectl_plugin.dashboard import (
    assets,
    csrf,
    pages,
    path_pages,
    prometheus,
)
from promotion_operator.kubectl_plugin.dashboard.feed import Feed
from promotion_operator.kubectl_plugin.dashboard.range_queries import Ranged
from promotion_operator.kubectl_plugin.kube import Kube, PluginError
from promotion_operator.kubectl_plugin.paths import PATH_PLURAL
from promotion_operator.kubectl_plugin.resource import ExitCode, Promotion

#: The only address the dashboard listens on: it acts with the user's credentials.
LOOPBACK = "127.0.0.1"
# A comment line this often keeps an idle stream open through proxies and
# notices a closed tab.
_KEEPALIVE_SECONDS = 15.0
# A page opened right after start waits this long at most for the first listing.
_FIRST_LISTING_SECONDS = 10.0
# Pushes at most this often per page: a burst of changes is one update.
_SETTLE_SECONDS = 0.2
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Options:
    namespace: str | None = None
    port: int = 0
    read_only: bool = False
    open_browser: bool = True
    prometheus_url: str | None = None  # each template's query drawn over the run


#: A path stage's requests by the name its buttons post (a hold's reason: the form's).
STAGE_OPERATIONS: dict[str, Callable[[Kube, str, str, str, str], Any]] = {
    "promote": lambda kube, ns, name, stage, _reason: operations.promote_stage(
        kube, ns, name, stage
    ),
    "hold": operations.hold_stage,
    "release": lambda kube, ns, name, stage, _reason: operations.release_stage(
        kube, ns, name, stage
    ),
}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Dashboard:
    """The application's state: the feeds (ModelPromotions, PromotionPaths), the
    user's client, the CSRF token."""

    def __init__(self, kube: Kube, feed: Feed, paths: Feed, options: Options) -> None:
        self.kube = kube
        self.feed = feed
        self.paths = paths
        self.options = options
        url = options.prometheus_url
        self.prometheus = prometheus.RangeReader(url) if url else None
        self.token = csrf.new_token()
        self.port = 0
        self.addresses: list[Any] = []  # where it listens: (host, port)
        self.origins: frozenset[str] = frozenset()  # the Origins of its own pages
        self.ends: datetime.datetime | None = None  # signed in: when the session ends

    async def close(self) -> None:
        """Stop the watches and close the Prometheus client."""
        self.feed.stop()
        self.paths.stop()
        if self.prometheus is not None:
            await self.prometheus.close()

    async def blocking(self, call: Callable[..., Any], *args: Any) -> Any:
        """The plugin's client blocks: run it in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(call, *args)
        )

    async def events_of(self, namespace: str, name: str) -> list[dict[str, Any]]:
        try:
            events: list[dict[str, Any]] = await self.blocking(self.kube.events, namespace, name)
        except PluginError:
            return []  # Events are extra: a user who may not list them sees none.
        return events

    # --- pages ----------------------------------------------------------------------
    async def list_page(self, request: web.Request) -> web.Response:
        filters = _filters(request)
        await self.feed.listed(_FIRST_LISTING_SECONDS)
        html = pages.list_page(
            self.feed.promotions(), _now(), filters, self.feed.scope, self.feed.error
        )
        return html_response(html)

    async def promotion_page(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        promotion = await self._promotion(namespace, name)
        if isinstance(promotion, str):
            return html_response(pages.not_found_page(namespace, name, promotion), status=404)
        events = await self.events_of(namespace, name)
        token = None if self.options.read_only else self.token
        ranges = await self.ranges_of(promotion)
        return html_response(pages.promotion_page(promotion, events, _now(), token, ranges=ranges))

    async def ranges_of(self, promotion: Promotion) -> dict[str, Ranged] | None:
        """Each template's query over the run, with ``--prometheus-url`` (else None)."""
        if self.prometheus is None:
            return None
        return await self.prometheus.read(promotion, _now())

    async def paths_page(self, _: web.Request) -> web.Response:
        self.paths.start()
        await self.paths.listed(_FIRST_LISTING_SECONDS)
        html = path_pages.paths_page(
            self.paths.bodies(), _now(), self.paths.scope, self.paths.error
        )
        return html_response(html)

    async def path_page(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        self.paths.start()
        path = await self._path(namespace, name)
        if isinstance(path, str):
            return html_response(path_pages.path_not_found_page(namespace, name, path), status=404)
        token = None if self.options.read_only else self.token
        return html_response(path_pages.path_page(path, _now(), token))

    async def _path(self, namespace: str, name: str) -> dict[str, Any] | str:
        """The PromotionPath from the feed, else read; the error's message."""
        if (known := self.paths.objects.get((namespace, name))) is not None:
            return known
        try:
            body: dict[str, Any] = await self.blocking(
                functools.partial(self.kube.get, plural=PATH_PLURAL), namespace, name
            )
        except PluginError as error:
            return error.message
        return body

    async def _promotion(self, namespace: str, name: str) -> Promotion | str:
        """From the feed, else read (a namespace outside the watch); the error's message."""
        if (known := self.feed.get(namespace, name)) is not None:
            return known
        try:
            return Promotion(await self.blocking(self.kube.get, namespace, name))
        except PluginError as error:
            return error.message

    async def operate(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        operation = operations.BY_NAME.get(request.match_info["action"])
        _form, refused = await self._checked_post(request, operation is not None)
        if refused is not None:
            return refused
        assert operation is not None
        said, status = await self._answer(operation, self.kube, namespace, name)
        promotion = await self._promotion(namespace, name)
        if isinstance(promotion, str):
            return html_response(pages.refused_page(said.message), status=status)
        events = await self.events_of(namespace, name)
        ranges = await self.ranges_of(promotion)
        html = pages.promotion_page(promotion, events, _now(), self.token, said, ranges)
        return html_response(html, status=status)

    async def operate_stage(self, request: web.Request) -> web.Response:
        """A button on a path's page: promote, hold or release one of its stages."""
        info = request.match_info
        namespace, name, stage = info["namespace"], info["name"], info["stage"]
        operation = STAGE_OPERATIONS.get(info["action"])
        form, refused = await self._checked_post(request, operation is not None)
        if refused is not None:
            return refused
        assert operation is not None
        given = form.get("reason")
        reason = given.strip() if isinstance(given, str) else ""
        said, status = await self._answer(operation, self.kube, namespace, name, stage, reason)
        path = await self._path(namespace, name)
        if isinstance(path, str):
            return html_response(pages.refused_page(said.message), status=status)
        return html_response(path_pages.path_page(path, _now(), self.token, said), status=status)

    async def _checked_post(
        self, request: web.Request, known: bool
    ) -> tuple[Any, web.Response | None]:
        """The form of a button's POST, or the page refusing it: read-only, an unknown
        request, no or a wrong CSRF token, a foreign origin."""
        if self.options.read_only:
            return None, html_response(
                pages.refused_page("this dashboard is read-only"), status=403
            )
        if not known:
            action = request.match_info["action"]
            return None, html_response(pages.refused_page(f"no such request: {action}"), status=404)
        form = await request.post()
        given = form.get(csrf.FIELD)
        refusal = csrf.post_refusal(
            self.token,
            given if isinstance(given, str) else None,
            request.headers.get("Origin"),
            self.origins,
        )
        if refusal is not None:
            return form, html_response(pages.refused_page(refusal), status=403)
        return form, None

    async def _answer(self, operation: Callable[..., Any], *args: Any) -> tuple[pages.Said, int]:
        """What the request said, and the HTTP status that says it: 409 for a refusal
        by the object's state, 403 for the API server's Forbidden."""
        try:
            decision = await self.blocking(operation, *args)
        except PluginError as error:
            return pages.Said(error.message, True), 403 if "(Forbidden)" in error.message else 409
        refused = decision.exit_code != ExitCode.SUCCEEDED
        return pages.Said(decision.message, refused), 409 if refused else 200

    # --- live updates ------------------------------------------------------------
    async def list_stream(self, request: web.Request) -> web.StreamResponse:
        filters = _filters(request)

        await self.feed.listed(_FIRST_LISTING_SECONDS)

        async def render() -> str:
            return pages.list_live(self.feed.promotions(), _now(), filters, self.feed.error)

        return await self._stream(request, render, self.feed)

    async def promotion_stream(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]

        async def render() -> str:
            promotion = await self._promotion(namespace, name)
            if isinstance(promotion, str):
                return pages.error_fragment(promotion)
            events = await self.events_of(namespace, name)
            ranges = await self.ranges_of(promotion)
            return pages.promotion_live(promotion, events, _now(), ranges)

        return await self._stream(request, render, self.feed)

    async def paths_stream(self, request: web.Request) -> web.StreamResponse:
        self.paths.start()
        await self.paths.listed(_FIRST_LISTING_SECONDS)

        async def render() -> str:
            return path_pages.paths_live(self.paths.bodies(), _now(), self.paths.error)

        return await self._stream(request, render, self.paths)

    async def path_stream(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        self.paths.start()

        async def render() -> str:
            path = await self._path(namespace, name)
            if isinstance(path, str):
                return pages.error_fragment(path)
            return path_pages.path_live(path, _now())

        return await self._stream(request, render, self.paths)

    async def _stream(
        self, request: web.Request, render: Callable[[], Awaitable[str]], feed: Feed
    ) -> web.StreamResponse:
        """Server-Sent Events: the live part now, then again after every change of
        ``feed``."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        seen = -1
        try:
            while self.ends is None or _now() < self.ends:
                if seen != feed.version:
                    seen = feed.version
                    await response.write(_event("update", await render()))
                    await asyncio.sleep(_SETTLE_SECONDS)
                    continue
                try:
                    await asyncio.wait_for(feed.changed(seen), _KEEPALIVE_SECONDS)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except ConnectionResetError:
            # The tab was closed or navigated away: nothing to say, nobody to say it to.
            return response
        return response  # the signed-in session ended


def _event(name: str, data: str) -> bytes:
    """One Server-Sent Event; each line of ``data`` is a ``data:`` line of its own."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {name}\n{lines}\n".encode()


def _filters(request: web.Request) -> pages.Filters:
    return pages.Filters(
        request.query.get("namespace", "").strip(), request.query.get("phase", "").strip()
    )


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


Pick = Callable[[web.Request], Dashboard]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def secure_headers(response: web.StreamResponse) -> None:
    """What every answer carries: the content policy and no caching."""
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Not no-referrer: with it, Chromium sends `Origin: null` on a form's POST.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")


def add_routes(app: web.Application, pick: Pick) -> None:
    """The pages, the buttons, the streams and the static files, each served by the
    :class:`Dashboard` that ``pick`` chooses for the request (the one of the local
    user, or of the signed-in session)."""

    def routed(name: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            handler: Handler = getattr(pick(request), name)
            return await handler(request)

        return handle

    promotion = "/promotions/{namespace}/{name}"
    path = "/paths/{namespace}/{name}"
    app.router.add_get("/", routed("list_page"))
    app.router.add_get(promotion, routed("promotion_page"))
    app.router.add_post(promotion + "/{action}", routed("operate"))
    app.router.add_get("/stream", routed("list_stream"))
    app.router.add_get("/stream" + promotion, routed("promotion_stream"))
    app.router.add_get("/paths", routed("paths_page"))
    app.router.add_get(path, routed("path_page"))
    app.router.add_post(path + "/stages/{stage}/{action}", routed("operate_stage"))
    app.router.add_get("/stream/paths", routed("paths_stream"))
    app.router.add_get("/stream" + path, routed("path_stream"))
    app.router.add_get("/static/live.js", script)
    app.router.add_get("/static/dashboard.css", stylesheet)


async def script(_: web.Request) -> web.Response:
    return web.Response(text=assets.LIVE_JS, content_type="text/javascript")


async def stylesheet(_: web.Request) -> web.Response:
    return web.Response(text=assets.DASHBOARD_CSS, content_type="text/css")


def application(dashboard: Dashboard) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        hosts = csrf.allowed_hosts(dashboard.port)
        refusal = csrf.host_refusal(request.headers.get("Host"), hosts)
        if refusal is not None:
            return html_response(pages.refused_page(refusal), status=421)
        response = await handler(request)
        secure_headers(response)
        return response

    app = web.Application(middlewares=[guard])
    add_routes(app, lambda _: dashboard)
    return app


@contextlib.asynccontextmanager
async def started(kube: Kube, options: Options) -> AsyncIterator[Dashboard]:
    """The dashboard listening on 127.0.0.1 (its ``port`` set), its watch running."""
    loop = asyncio.get_running_loop()
    feed = Feed(kube, options.namespace, loop)
    paths = Feed(kube, options.namespace, loop, PATH_PLURAL)
    dashboard = Dashboard(kube, feed, paths, options)
    # No access log: a URL is harmless, but nothing of a request should be logged by default.
    runner = web.AppRunner(application(dashboard), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, options.port)
    await site.start()
    dashboard.addresses = list(runner.addresses)
    dashboard.port = int(runner.addresses[0][1])
    dashboard.origins = csrf.origins(csrf.allowed_hosts(dashboard.port))
    feed.start()  # the paths' watch starts with the first path page opened
    try:
        yield dashboard
    finally:
        await dashboard.close()
        await runner.cleanup()


def run(kube: Kube, options: Options, out: Callable[[str], None]) -> ExitCode:
    """Serve until interrupted; print the URL and open a browser where there is one."""

    async def serve() -> None:
        async with started(kube, options) as dashboard:
            url = f"http://{LOOPBACK}:{dashboard.port}/"
            out(f"Serving the ModelPromotion dashboard at {url} (Ctrl-C stops it)")
            if options.open_browser:
                with contextlib.suppress(webbrowser.Error):
                    webbrowser.open(url)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return ExitCode.SUCCEEDED
