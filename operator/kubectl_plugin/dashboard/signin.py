"""Sign-in mode: the dashboard as a shared service (in the cluster, as a Deployment),
each person signed in through OIDC and served as themselves.

After the sign-in (:mod:`.oidc`), the session holds a :class:`~.serve.Dashboard` of
its own: a client that impersonates the user and their groups (the dashboard's own
credentials may impersonate and do nothing else), its own watches and its own CSRF
token. So the API server's RBAC and admission see the person, not the dashboard.

The browser holds only the session's random id, in an HttpOnly, SameSite=Lax cookie
(Secure over https); who it is and when it ends stay in this process
(:mod:`.sessions`). After its end a request is asked to sign in again; sign-out
ends it at once. No token is kept: the ID token names the user, and is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from promotion_operator.kubectl_plugin.dashboard import csrf, oidc, pages, serve, signin_pages
from promotion_operator.kubectl_plugin.dashboard.feed import Feed
from promotion_operator.kubectl_plugin.dashboard.sessions import Expiring
from promotion_operator.kubectl_plugin.kube import Kube, PluginError
from promotion_operator.kubectl_plugin.paths import PATH_PLURAL
from promotion_operator.kubectl_plugin.resource import ExitCode

SESSION_COOKIE = "promotion_dashboard_session"
ATTEMPT_COOKIE = "promotion_dashboard_signin"
CALLBACK_PATH = "/signin/callback"
# A sign-in must come back from the provider within this long.
_ATTEMPT_TTL = datetime.timedelta(minutes=10)
_MAX_SESSIONS = 1000
_MAX_ATTEMPTS = 1000
# Ended sessions' watches are stopped this often.
_SWEEP_SECONDS = 5.0
_LONGEST_TTL = datetime.timedelta(hours=24)
# Paths served without a session (the sign-in itself, the static files, the probe).
# The signed-in session's dashboard, for the pages' handlers.
_DASHBOARD = web.RequestKey("dashboard", serve.Dashboard)
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_OPEN_PATHS = frozenset({"/signin", CALLBACK_PATH, "/signout", "/healthz"})


@dataclass(frozen=True)
class Settings:
    """Where the dashboard listens, the URL people open, and how long a session lasts."""

    public_url: str  # e.g. https://promotions.example.com/ (what the browser shows)
    host: str
    port: int
    session_ttl: datetime.timedelta
    # For a person who may not list across namespaces: those to look in.
    user_namespaces: tuple[str, ...] = ()

    @property
    def secure(self) -> bool:
        return urlsplit(self.public_url).scheme == "https"

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({urlsplit(self.public_url).netloc.lower()})

    @property
    def origins(self) -> frozenset[str]:
        return csrf.origins(self.hosts, urlsplit(self.public_url).scheme)

    @property
    def redirect_uri(self) -> str:
        return self.public_url.rstrip("/") + CALLBACK_PATH


def settings(
    public_url: str | None, listen: str, session_ttl: float, user_namespaces: str = ""
) -> Settings:
    """The checked settings; :class:`PluginError` (a usage error) saying what to fix."""

    def refuse(message: str) -> PluginError:
        return PluginError(f"error: {message}", ExitCode.NOT_FOUND)

    if not public_url:
        raise refuse("--public-url is needed with --oidc-issuer (the URL people open)")
    parts = urlsplit(public_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise refuse(f"--public-url must be an https:// URL, not {public_url!r}")
    if parts.scheme == "http" and parts.hostname not in {"127.0.0.1", "localhost"}:
        raise refuse(
            "--public-url must be https:// (http:// only on loopback, e.g. through "
            "kubectl port-forward): the session cookie must not travel in the clear"
        )
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise refuse("--public-url must be the site's root (no path, query or credentials)")
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise refuse(f"--listen must be ADDRESS:PORT (e.g. 0.0.0.0:8080), not {listen!r}")
    ttl = datetime.timedelta(seconds=session_ttl)
    if not datetime.timedelta(seconds=1) <= ttl <= _LONGEST_TTL:
        raise refuse("--session-ttl must be between 1s and 24h")
    namespaces = tuple(n.strip() for n in user_namespaces.split(",") if n.strip())
    if bad := [n for n in namespaces if not _NAMESPACE.match(n)]:
        raise refuse(f"--user-namespaces: not namespace names: {', '.join(bad)}")
    origin = f"{parts.scheme}://{parts.netloc}/"
    return Settings(origin, host.strip("[]"), int(port_text), ttl, namespaces)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def local_path(next_path: str | None) -> str:
    """Only a path of this site (not ``//other.example``): no open redirect."""
    if not next_path or not next_path.startswith("/") or next_path.startswith(("//", "/\\")):
        return "/"
    return next_path


@dataclass(frozen=True)
class Signed:
    """One session: who signed in, and their own dashboard (client, watches, token)."""

    user: str
    dashboard: serve.Dashboard


class SignIn:
    """The sessions, the sign-ins under way, and how to make a user's dashboard."""

    def __init__(
        self,
        client: oidc.Client,
        kube_for: Callable[[oidc.Identity], Kube],
        options: serve.Options,
        config: Settings,
        out: Callable[[str], None],
    ) -> None:
        self.client = client
        self.kube_for = kube_for
        self.options = options
        self.config = config
        self.out = out
        self.sessions: Expiring[Signed] = Expiring(config.session_ttl, _MAX_SESSIONS)
        self.attempts: Expiring[oidc.Attempt] = Expiring(_ATTEMPT_TTL, _MAX_ATTEMPTS)

    def _cookie(
        self, response: web.StreamResponse, name: str, value: str, age: float | None
    ) -> None:
        """An HttpOnly, SameSite=Lax cookie (Secure over https); without ``age`` it
        ends with the browser (the server ends the session itself)."""
        response.set_cookie(
            name,
            value,
            max_age=None if age is None else int(age),
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self.config.secure,
        )

    def _forget(self, response: web.StreamResponse, name: str) -> None:
        response.del_cookie(
            name, path="/", httponly=True, samesite="Lax", secure=self.config.secure
        )

    # --- signing in ----------------------------------------------------------------
    async def start(self, request: web.Request) -> web.StreamResponse:
        attempt = oidc.new_attempt(local_path(request.query.get("next")))
        key, _ = self.attempts.add(attempt, _now())
        response = _see_other(self.client.authorization_url(attempt))
        self._cookie(response, ATTEMPT_COOKIE, key, _ATTEMPT_TTL.total_seconds())
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        entry = self.attempts.pop(request.cookies.get(ATTEMPT_COOKIE))
        state = request.query.get("state", "")
        if entry is None or _now() >= entry.ends or not oidc.same(state, entry.value.state):
            return self._failed("this sign-in is not the one this browser began (or it is "
                                "older than 10 minutes): sign in again")  # fmt: skip
        if error := request.query.get("error"):
            return self._failed(f"the identity provider refused: {error[:100]}")
        code = request.query.get("code")
        if not code:
            return self._failed("the identity provider sent no authorization code")
        attempt = entry.value
        try:
            identity = await _blocking(self.client.sign_in, code, attempt)
            kube = await _blocking(self.kube_for, identity)
        except oidc.SignInError as error:
            self.out(f"sign-in refused: {error}")
            return self._failed(str(error))
        except PluginError as error:
            return self._failed(error.message)
        if (earlier := self.sessions.pop(request.cookies.get(SESSION_COOKIE))) is not None:
            await self._close(earlier.value)  # a new sign-in ends this browser's old session
        dashboard = self._dashboard_for(kube)
        key, session = self.sessions.add(Signed(identity.user, dashboard), _now())
        dashboard.ends = session.ends
        dashboard.feed.start()
        self.out(f"signed in: {identity.user} (groups: {', '.join(identity.groups) or '-'})")
        response = _see_other(attempt.next_path)
        self._forget(response, ATTEMPT_COOKIE)
        # No Max-Age: the end is the server's to enforce (the browser's copy outliving
        # it proves nothing; a request with it is asked to sign in again).
        self._cookie(response, SESSION_COOKIE, key, None)
        return response

    def _dashboard_for(self, kube: Kube) -> serve.Dashboard:
        loop = asyncio.get_running_loop()
        namespace, fallbacks = self.options.namespace, self.config.user_namespaces
        feed = Feed(kube, namespace, loop, fallbacks=fallbacks)
        paths = Feed(kube, namespace, loop, PATH_PLURAL, fallbacks=fallbacks)
        dashboard = serve.Dashboard(kube, feed, paths, self.options)
        dashboard.origins = self.config.origins
        return dashboard

    def _failed(self, message: str) -> web.Response:
        response = serve.html_response(signin_pages.failed_page(message), status=403)
        self._forget(response, ATTEMPT_COOKIE)
        return response

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        key = request.cookies.get(SESSION_COOKIE)
        entry = self.sessions.find(key, _now())
        if entry is not None:
            form = await request.post()
            given = form.get(csrf.FIELD)
            refusal = csrf.post_refusal(
                entry.value.dashboard.token,
                given if isinstance(given, str) else None,
                request.headers.get("Origin"),
                self.config.origins,
            )
            if refusal is not None:
                return serve.html_response(pages.refused_page(refusal), status=403)
            self.sessions.pop(key)
            self.out(f"signed out: {entry.value.user}")
            await self._close(entry.value)
        response = serve.html_response(signin_pages.signed_out_page())
        self._forget(response, SESSION_COOKIE)
        return response

    async def _close(self, signed: Signed) -> None:
        signed.dashboard.ends = _now()  # its open streams end at their next wake-up
        await signed.dashboard.close()

    async def close_all(self) -> None:
        for entry in self.sessions.expired(_now() + _LONGEST_TTL * 2):
            await self._close(entry.value)

    async def sweep(self) -> None:
        """Stop the watches of ended sessions, now and then."""
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            now = _now()
            self.attempts.expired(now)
            for entry in self.sessions.expired(now):
                await self._close(entry.value)

    # --- every other request ---------------------------------------------------------
    def guard(self) -> Any:
        @web.middleware
        async def guard(request: web.Request, handler: serve.Handler) -> web.StreamResponse:
            if request.path == "/healthz":
                return web.Response(text="ok")  # the kubelet's probe: any Host
            refusal = csrf.host_refusal(request.headers.get("Host"), self.config.hosts)
            if refusal is not None:
                return serve.html_response(pages.refused_page(refusal), status=421)
            if request.path in _OPEN_PATHS or request.path.startswith("/static/"):
                response = await handler(request)
            else:
                response = await self._signed_in(request, handler)
            serve.secure_headers(response)
            return response

        return guard

    async def _signed_in(self, request: web.Request, handler: serve.Handler) -> web.StreamResponse:
        key = request.cookies.get(SESSION_COOKIE)
        entry = self.sessions.find(key, _now())
        if entry is None:
            if request.path.startswith("/stream"):
                return web.Response(status=401, text="sign in again")
            message = (
                "Your session has ended: sign in again."
                if key
                else "Sign in to see the ModelPromotions you may see, as yourself."
            )
            next_path = request.path_qs if request.method == "GET" else "/"
            response = serve.html_response(signin_pages.signin_page(message, next_path), status=401)
            if key:
                self._forget(response, SESSION_COOKIE)
            return response
        signed = entry.value
        request[_DASHBOARD] = signed.dashboard
        answer = await handler(request)
        if isinstance(answer, web.Response) and answer.content_type == "text/html":
            page = answer.text or ""
            answer.text = signin_pages.with_account_bar(page, signed.user, signed.dashboard.token)
        return answer


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def _blocking(call: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(call, *args))


def application(signin: SignIn) -> web.Application:
    app = web.Application(middlewares=[signin.guard()])

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/signin", signin.start)
    app.router.add_get(CALLBACK_PATH, signin.callback)
    app.router.add_post("/signout", signin.sign_out)
    serve.add_routes(app, lambda request: request[_DASHBOARD])
    return app


@contextlib.asynccontextmanager
async def started(signin: SignIn) -> AsyncIterator[web.AppRunner]:
    """Listening on the settings' address, ending sessions as they expire."""
    runner = web.AppRunner(application(signin), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, signin.config.host, signin.config.port)
    await site.start()
    sweeper = asyncio.create_task(signin.sweep())
    try:
        yield runner
    finally:
        sweeper.cancel()
        await signin.close_all()
        await runner.cleanup()


def run(signin: SignIn) -> ExitCode:
    """Serve until interrupted."""

    async def serve_forever() -> None:
        async with started(signin):
            signin.out(
                f"Serving the ModelPromotion dashboard with sign-in at "
                f"{signin.config.public_url} (listening on {signin.config.host}:"
                f"{signin.config.port}; sessions last {signin.config.session_ttl})"
            )
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever())
    return ExitCode.SUCCEEDED
