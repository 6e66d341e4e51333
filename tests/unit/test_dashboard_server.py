"""The dashboard's server, listening for real on 127.0.0.1, over a fake API: what it
refuses (a POST without the CSRF token, a foreign Host, a write when read-only),
where it listens, and that a change the watch sees is pushed to an open page."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

import aiohttp
import pytest

from promotion_operator.kubectl_plugin.dashboard import serve
from promotion_operator.kubectl_plugin.kube import Kube, PluginError
from promotion_operator.kubectl_plugin.paths import PATH_PLURAL
from promotion_operator.kubectl_plugin.resource import ABORT_ANNOTATION, PLURAL

SECRET = "the-users-bearer-token"


def promotion(phase: str, weight: int, version: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "generation": 1,
            "resourceVersion": str(version),
            "creationTimestamp": "2026-03-01T11:50:00Z",
        },
        "spec": {"strategy": "Canary", "source": {"namespace": "s", "name": "iris"}},
        "status": {"observedGeneration": 1, "phase": phase, "canary": {"weight": weight}},
    }


def promotion_path(phase: str, version: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "iris", "namespace": "ml", "resourceVersion": str(version)},
        "spec": {
            "source": {"namespace": "build", "name": "iris"},
            "stages": [{"name": "dev", "target": {"namespace": "dev"}}],
        },
        "status": {"stages": [{"name": "dev", "phase": phase, "freight": "1-aaaaaa"}]},
    }


class FakeKube:
    """One ModelPromotion and one PromotionPath; the watch of each kind delivers what
    :meth:`push` is given."""

    default_namespace = "ml"
    server = "https://kube.example"
    token = SECRET  # what a real client holds: it must never reach a page

    def __init__(self) -> None:
        self.objects = {
            PLURAL: promotion("Analyzing", 10, 1),
            PATH_PLURAL: promotion_path("Idle", 1),
        }
        self.patches: list[dict[str, str | None]] = []
        self.pushed: dict[str, list[dict[str, Any]]] = {PLURAL: [], PATH_PLURAL: []}
        self.wake = threading.Event()
        self.listed: list[str] = []

    @property
    def obj(self) -> dict[str, Any]:
        return self.objects[PLURAL]

    def list(self, namespace: str | None, *, plural: str = PLURAL) -> dict[str, Any]:
        self.listed.append(plural)
        return {
            "items": [copy.deepcopy(self.objects[plural])],
            "metadata": {"resourceVersion": "1"},
        }

    def get(self, namespace: str, name: str, *, plural: str = PLURAL) -> dict[str, Any]:
        if (namespace, name) != ("ml", "iris"):
            raise PluginError(f'Error from server (NotFound): "{name}" not found')
        return copy.deepcopy(self.objects[plural])

    def annotate(
        self, namespace: str, name: str, version: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        self.patches.append(dict(annotations))
        return self.obj

    def events(self, namespace: str, name: str) -> Sequence[dict[str, Any]]:
        return []

    def watch_list(
        self, namespace: str | None, version: str, timeout_seconds: int, *, plural: str = PLURAL
    ) -> Iterator[dict[str, Any]]:
        while True:
            self.wake.wait(0.2)
            pushed = self.pushed[plural]
            while pushed:
                yield {"type": "MODIFIED", "object": pushed.pop(0)}

    def push(self, body: dict[str, Any], plural: str = PLURAL) -> None:
        self.objects[plural] = body
        self.pushed[plural].append(copy.deepcopy(body))
        self.wake.set()
        self.wake.clear()


@contextlib.asynccontextmanager
async def _running(
    fake: FakeKube, read_only: bool = False
) -> AsyncIterator[tuple[serve.Dashboard, str]]:
    options = serve.Options(read_only=read_only, open_browser=False)
    async with serve.started(cast(Kube, fake), options) as dashboard:
        yield dashboard, f"http://127.0.0.1:{dashboard.port}"


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_it_listens_on_loopback_only() -> None:
    async def check() -> list[Any]:
        async with _running(FakeKube()) as (dashboard, _):
            return dashboard.addresses

    addresses = run(check())
    assert addresses and {host for host, *_ in addresses} == {"127.0.0.1"}


async def _post(url: str, data: dict[str, str], **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, await response.text()


async def _get(url: str, **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.text()


def test_a_post_without_the_csrf_token_is_refused_and_writes_nothing() -> None:
    fake = FakeKube()

    async def check() -> tuple[int, str]:
        async with _running(fake) as (_, base):
            return await _post(f"{base}/promotions/ml/iris/abort", {})

    status, text = run(check())
    assert status == 403 and "CSRF token" in text
    assert fake.patches == []


def test_a_post_with_the_token_writes_the_request_as_the_plugin_does() -> None:
    fake = FakeKube()

    async def check() -> tuple[int, str]:
        async with _running(fake) as (dashboard, base):
            return await _post(f"{base}/promotions/ml/iris/abort", {"csrf": dashboard.token})

    status, text = run(check())
    assert status == 200, text
    assert [list(p) for p in fake.patches] == [[ABORT_ANNOTATION]]
    assert 'role="status"' in text


def test_read_only_refuses_a_post_even_with_the_token() -> None:
    fake = FakeKube()

    async def check() -> tuple[int, str, str]:
        async with _running(fake, read_only=True) as (dashboard, base):
            _, page = await _get(f"{base}/promotions/ml/iris")
            status, text = await _post(
                f"{base}/promotions/ml/iris/abort", {"csrf": dashboard.token}
            )
            return status, text, page

    status, text, page = run(check())
    assert status == 403 and "read-only" in text
    assert "<button" not in page and 'name="csrf"' not in page
    assert fake.patches == []


def test_a_request_for_another_host_name_is_refused() -> None:
    async def check() -> tuple[int, str]:
        async with _running(FakeKube()) as (_, base):
            return await _get(f"{base}/", Host="attacker.example")

    status, _ = run(check())
    assert status == 421


def test_a_change_seen_by_the_watch_is_pushed_to_an_open_page() -> None:
    fake = FakeKube()

    async def check() -> list[str]:
        updates: list[str] = []
        async with (
            _running(fake) as (_, base),
            aiohttp.ClientSession() as session,
            session.get(f"{base}/stream") as response,
        ):
            assert response.headers["Content-Type"] == "text/event-stream"
            async for line in response.content:
                text = line.decode()
                if 'class="weight"' in text:
                    updates.append(text)
                    if len(updates) == 1:
                        fake.push(promotion("Analyzing", 50, 2))
                    elif "50%" in text:
                        break
        return updates

    updates = run(check())
    assert '<td class="weight">10%</td>' in updates[0]
    assert '<td class="weight">50%</td>' in updates[-1]


def test_no_credential_reaches_a_page() -> None:
    async def check() -> list[str]:
        async with _running(FakeKube()) as (_, base):
            return [
                (await _get(f"{base}{path}"))[1]
                for path in (
                    "/",
                    "/promotions/ml/iris",
                    "/paths",
                    "/paths/ml/iris",
                    "/static/live.js",
                )
            ]

    for text in run(check()):
        assert SECRET not in text


@pytest.mark.parametrize("path", ["/", "/promotions/ml/iris", "/paths", "/paths/ml/iris"])
def test_pages_forbid_scripts_from_elsewhere(path: str) -> None:
    async def check() -> str:
        async with (
            _running(FakeKube()) as (_, base),
            aiohttp.ClientSession() as session,
            session.get(base + path) as response,
        ):
            return response.headers["Content-Security-Policy"]

    policy = run(check())
    assert "script-src 'self'" in policy and "default-src 'none'" in policy


def test_pages_let_the_browser_send_their_origin_on_a_post() -> None:
    """With ``Referrer-Policy: no-referrer`` Chromium sends ``Origin: null`` on a form's
    POST, which the CSRF check refuses: the pages ask for ``same-origin``."""

    async def check() -> str:
        async with (
            _running(FakeKube()) as (_, base),
            aiohttp.ClientSession() as session,
            session.get(base + "/promotions/ml/iris") as response,
        ):
            return response.headers["Referrer-Policy"]

    assert run(check()) == "same-origin"


def test_the_paths_are_watched_only_once_a_path_page_is_opened() -> None:
    fake = FakeKube()

    async def check() -> tuple[list[str], int, str]:
        async with _running(fake) as (_, base):
            await _get(f"{base}/promotions/ml/iris")
            before = list(fake.listed)
            status, page = await _get(f"{base}/paths")
            return before, status, page

    before, status, page = run(check())
    assert PATH_PLURAL not in before
    assert status == 200 and 'href="/paths/ml/iris"' in page
    assert PATH_PLURAL in fake.listed


def test_a_change_of_a_path_is_pushed_to_its_open_page() -> None:
    fake = FakeKube()

    async def check() -> list[str]:
        phases: list[str] = []
        async with (
            _running(fake) as (_, base),
            aiohttp.ClientSession() as session,
            session.get(f"{base}/stream/paths/ml/iris") as response,
        ):
            async for line in response.content:
                found = re.search(r'data-stage="dev" data-phase="(\w+)"', line.decode())
                if found:
                    phases.append(found.group(1))
                    if len(phases) == 1:
                        fake.push(promotion_path("Running", 2), PATH_PLURAL)
                    elif phases[-1] == "Running":
                        break
        return phases

    phases = run(check())
    assert phases[0] == "Idle" and phases[-1] == "Running"


def test_a_path_that_does_not_exist_is_a_404_naming_it() -> None:
    async def check() -> tuple[int, str]:
        async with _running(FakeKube()) as (_, base):
            return await _get(f"{base}/paths/ml/nope")

    status, text = run(check())
    assert status == 404 and "nope" in text
