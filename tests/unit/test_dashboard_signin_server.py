"""Sign-in mode's server, listening for real on 127.0.0.1, over a fake API and a
provider whose sign-in is given: who is let in, the cookies' flags, the PKCE and
state of the redirect, a session's end and sign-out. (The real Keycloak login page
and the API server's impersonation: tests/e2e/test_web_dashboard_signin.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import socket
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import aiohttp

from promotion_operator.kubectl_plugin.dashboard import oidc, serve, signin
from promotion_operator.kubectl_plugin.kube import Kube
from tests.unit.test_dashboard_server import FakeKube

ANA = oidc.Identity("oidc:ana@example.com", ("oidc:release-managers",))
PROVIDER = oidc.Provider(
    "https://idp.example/realms/r",
    "https://idp.example/realms/r/auth",
    "https://idp.example/realms/r/token",
    "https://idp.example/realms/r/certs",
    ("RS256",),
)


class GivenSignIn(oidc.Client):
    """A client whose code exchange answers ``ANA`` for the code ``good``."""

    def sign_in(self, code: str, attempt: oidc.Attempt) -> oidc.Identity:
        if code != "good":
            raise oidc.SignInError("the identity provider refused the sign-in: invalid_grant")
        return ANA


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _running(ttl: float = 600) -> AsyncIterator[tuple[signin.SignIn, str, list[str]]]:
    port = _free_port()
    config = signin.settings(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", ttl)
    client = GivenSignIn(PROVIDER, "dashboard", "client-secret", config.redirect_uri)
    said: list[str] = []
    made = signin.SignIn(
        client,
        lambda _: cast(Kube, FakeKube()),
        serve.Options(open_browser=False),
        config,
        said.append,
    )
    async with signin.started(made):
        yield made, f"http://127.0.0.1:{port}", said


def _browser() -> aiohttp.ClientSession:
    """A client that keeps cookies of 127.0.0.1, as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def _signed_in(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(f"{url}/signin?next=/promotions/ml/iris", allow_redirects=False) as r:
        state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    callback = f"{url}/signin/callback?state={state}&code=good"
    async with session.get(callback, allow_redirects=False) as r:
        assert r.status == 303, await r.text()


def test_a_page_without_a_session_asks_to_sign_in() -> None:
    async def check() -> tuple[int, str]:
        async with (
            _running() as (_, url, _),
            _browser() as session,
            session.get(f"{url}/promotions/ml/iris") as response,
        ):
            return response.status, await response.text()

    status, page = run(check())
    assert status == 401
    assert 'href="/signin?next=%2Fpromotions%2Fml%2Firis"' in page
    assert "iris</h1>" not in page


def test_signing_in_redirects_with_pkce_state_nonce_and_a_fresh_password_prompt() -> None:
    async def check() -> tuple[int, str, str]:
        async with (
            _running() as (_, url, _),
            _browser() as session,
            session.get(f"{url}/signin", allow_redirects=False) as response,
        ):
            return response.status, response.headers["Location"], response.headers["Set-Cookie"]

    status, location, cookie = run(check())
    query = parse_qs(urlsplit(location).query)
    assert status == 303 and location.startswith(PROVIDER.authorization_endpoint + "?")
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["state"] and query["nonce"] and query["prompt"] == ["login"]
    assert query["redirect_uri"][0].endswith("/signin/callback")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_callback_with_another_state_is_refused() -> None:
    async def check() -> tuple[int, str, bool]:
        async with _running() as (made, url, _), _browser() as session:
            await session.get(f"{url}/signin", allow_redirects=False)
            callback = f"{url}/signin/callback?state=forged&code=good"
            async with session.get(callback, allow_redirects=False) as response:
                assert len(made.sessions) == 0
                return (
                    response.status,
                    await response.text(),
                    signin.SESSION_COOKIE in response.cookies,
                )

    status, page, session_set = run(check())
    assert status == 403 and "not the one this browser began" in page
    assert not session_set


def test_a_signed_in_session_is_a_random_httponly_lax_cookie_and_pages_show_the_user() -> None:
    async def check() -> tuple[str, str, list[str]]:
        async with _running() as (_, url, said), _browser() as session:
            async with session.get(f"{url}/signin", allow_redirects=False) as r:
                state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
            callback = f"{url}/signin/callback?state={state}&code=good"
            async with session.get(callback, allow_redirects=False) as r:
                cookie = r.headers.getall("Set-Cookie")
                session_cookie = next(c for c in cookie if signin.SESSION_COOKIE in c)
            async with session.get(f"{url}/promotions/ml/iris") as page:
                return session_cookie, await page.text(), said

    cookie, page, said = run(check())
    assert re.search(rf"{signin.SESSION_COOKIE}=[\w-]{{40,}};", cookie), cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age" not in cookie
    assert "Secure" not in cookie  # served over http on loopback
    assert '<span id="signed-in-user">oidc:ana@example.com</span>' in page
    assert 'action="/signout"' in page
    assert any("signed in: oidc:ana@example.com" in line for line in said)


def test_a_refused_code_exchange_shows_why_and_begins_no_session() -> None:
    async def check() -> tuple[int, str, int]:
        async with _running() as (made, url, _), _browser() as session:
            async with session.get(f"{url}/signin", allow_redirects=False) as r:
                state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
            callback = f"{url}/signin/callback?state={state}&code=stolen"
            async with session.get(callback, allow_redirects=False) as r:
                return r.status, await r.text(), len(made.sessions)

    status, page, sessions = run(check())
    assert (status, sessions) == (403, 0)
    assert "invalid_grant" in page


def test_after_its_ttl_a_session_asks_to_sign_in_again() -> None:
    async def check() -> tuple[int, str]:
        async with _running(ttl=1) as (_, url, _), _browser() as session:
            await _signed_in(session, url)
            await asyncio.sleep(1.2)
            async with session.get(f"{url}/") as response:
                return response.status, await response.text()

    status, page = run(check())
    assert status == 401 and "Your session has ended" in page


def test_sign_out_needs_the_sessions_csrf_token_and_then_ends_it() -> None:
    async def check() -> tuple[int, int, int, int]:
        async with _running() as (made, url, _), _browser() as session:
            await _signed_in(session, url)
            async with session.get(f"{url}/") as page:
                token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
            assert token is not None
            async with session.post(f"{url}/signout", data={}) as forged:
                forged_status = forged.status
            async with session.post(f"{url}/signout", data={"csrf": token.group(1)}) as out:
                out_status = out.status
            async with session.get(f"{url}/") as after:
                return forged_status, out_status, after.status, len(made.sessions)

    assert run(check()) == (403, 200, 401, 0)


def test_a_foreign_host_is_refused_but_the_probe_answers_any() -> None:
    async def check() -> tuple[int, int]:
        async with _running() as (_, url, _), _browser() as session:
            headers = {"Host": "rebound.example"}
            async with (
                session.get(f"{url}/", headers=headers) as page,
                session.get(f"{url}/healthz", headers=headers) as probe,
            ):
                return page.status, probe.status

    assert run(check()) == (421, 200)


def test_a_session_lasts_its_ttl_from_sign_in() -> None:
    async def check() -> datetime.timedelta:
        async with _running(ttl=600) as (made, url, _), _browser() as session:
            before = datetime.datetime.now(datetime.UTC)
            await _signed_in(session, url)
            (key,) = [c.value for c in session.cookie_jar if c.key == signin.SESSION_COOKIE]
            entry = made.sessions.find(key, before)
            assert entry is not None
            return entry.ends - before

    lasts = run(check())
    assert datetime.timedelta(seconds=599) < lasts < datetime.timedelta(seconds=602)


def test_signing_in_again_ends_the_browsers_earlier_session() -> None:
    async def check() -> tuple[bool, int]:
        async with _running() as (made, url, _), _browser() as session:
            await _signed_in(session, url)
            (first,) = [c.value for c in session.cookie_jar if c.key == signin.SESSION_COOKIE]
            await _signed_in(session, url)
            now = datetime.datetime.now(datetime.UTC)
            return made.sessions.find(first, now) is None, len(made.sessions)

    assert run(check()) == (True, 1)
