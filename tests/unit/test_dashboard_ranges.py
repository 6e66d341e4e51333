"""``--prometheus-url``: each template's query over the run, filled in as the operator
fills it, asked of a Prometheus (here a small real HTTP server on 127.0.0.1 that
answers as Prometheus's API does) and drawn under the measurements."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
from aiohttp import web

from promotion_operator.kubectl_plugin.dashboard import pages, serve
from promotion_operator.kubectl_plugin.dashboard.prometheus import RangeReader, url_refusal
from promotion_operator.kubectl_plugin.dashboard.range_plot import range_plot
from promotion_operator.kubectl_plugin.dashboard.range_queries import (
    CHALLENGER,
    CHAMPION,
    Ranged,
    RangeQuery,
    Series,
    Unreadable,
    Window,
    range_queries,
    series_of,
    window_of,
)
from promotion_operator.kubectl_plugin.kube import Kube
from promotion_operator.kubectl_plugin.resource import Promotion
from tests.unit.test_dashboard_server import FakeKube

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
STARTED = "2026-03-01T11:50:00Z"
LATENCY = 'p95{deployment_name="{{target}}",namespace="{{namespace}}",predictor="{{predictor}}"}'
ERRORS = 'errors{predictor="{{canary}}",stable="{{stable}}"}[{{interval}}]'


def shadow(**status: Any) -> Promotion:
    return Promotion(
        {
            "metadata": {"name": "iris", "namespace": "ml", "generation": 1},
            "spec": {
                "source": {"namespace": "staging", "name": "iris"},
                "target": {"namespace": "production"},
                "strategy": "Canary",
                "analysis": {
                    "templates": [
                        {"name": "latency", "query": LATENCY, "compare": {"ratio": {"max": 1.5}}},
                        {"name": "errors", "query": ERRORS, "max": 0.05, "interval": "10s"},
                    ]
                },
            },
            "status": {
                "observedGeneration": 1,
                "phase": "Analyzing",
                "startedAt": STARTED,
                "canary": {
                    "canaryPredictor": "canary",
                    "stablePredictor": "default",
                    "measurements": [
                        {"template": "latency", "result": "Passed", "value": 0.11,
                         "champion": 0.1, "score": 1.1, "max": 1.5, "at": "2026-03-01T11:55:00Z"},
                        {"template": "errors", "result": "Passed", "value": 0.01, "max": 0.05,
                         "at": "2026-03-01T11:55:00Z"},
                    ],
                },
                **status,
            },
        }
    )  # fmt: skip


def test_the_queries_are_filled_in_as_the_operator_fills_them() -> None:
    assert range_queries(shadow()) == [
        RangeQuery(
            "latency",
            CHAMPION,
            'p95{deployment_name="iris",namespace="production",predictor="default"}',
        ),
        RangeQuery(
            "latency",
            CHALLENGER,
            'p95{deployment_name="iris",namespace="production",predictor="canary"}',
        ),
        RangeQuery("errors", "measured", 'errors{predictor="canary",stable="default"}[10s]'),
    ]


def test_the_window_is_the_runs_from_its_start_to_its_end_or_now() -> None:
    running = window_of(shadow(), NOW)
    assert running is not None and (running.start.minute, running.end) == (50, NOW)
    assert running.step_seconds == 3  # 600 s in at most 240 points
    ended = window_of(shadow(finishedAt="2026-03-01T11:56:00Z"), NOW)
    assert ended is not None and ended.end.minute == 56
    assert window_of(Promotion({"status": {}}), NOW) is None


def matrix(*series: tuple[dict[str, str], list[list[Any]]]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": m, "values": v} for m, v in series],
        },
    }


def test_an_answer_is_read_as_series_leaving_out_values_that_are_not_numbers() -> None:
    answer = matrix(({"class": "setosa"}, [[1.0, "0.5"], [2.0, "NaN"], [3.0, "0.7"]]))
    assert series_of(CHAMPION, answer) == [
        Series(CHAMPION, {"class": "setosa"}, ((1.0, 0.5), (3.0, 0.7)))
    ]


def test_a_refused_query_says_what_prometheus_said() -> None:
    refused = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    try:
        series_of(CHAMPION, refused)
    except Unreadable as error:
        assert "parse error at char 3" in str(error)
    else:
        raise AssertionError("a refused query was read as series")


WINDOW = Window(
    datetime.datetime(2026, 3, 1, 11, 50, tzinfo=datetime.UTC),
    datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC),
)


def points(*values: float) -> tuple[tuple[float, float], ...]:
    start = WINDOW.start.timestamp()
    return tuple((start + 60 * i, v) for i, v in enumerate(values))


def test_the_range_plot_draws_each_series_and_names_it_in_a_legend() -> None:
    svg = range_plot(
        "latency",
        WINDOW,
        [Series(CHAMPION, {}, points(0.1, 0.1, 0.12)), Series(CHALLENGER, {}, points(0.11, 0.3))],
    )
    assert svg.count('<g class="series champion" data-points="3">') == 1
    champion = svg[svg.index('<g class="series champion"') :]
    assert 'stroke-dasharray="6 3"' in champion[: champion.index("</g>")]
    assert svg.count('<g class="series challenger" data-points="2">') == 1
    legend = svg[svg.index('<g class="legend">') :]
    assert ">champion</text>" in legend and ">challenger</text>" in legend
    assert "nan" not in svg.lower()


def test_series_by_label_are_named_by_the_label_that_tells_them_apart() -> None:
    svg = range_plot(
        "predictions",
        WINDOW,
        [
            Series(CHAMPION, {"class": "setosa", "job": "x"}, points(1, 2)),
            Series(CHAMPION, {"class": "virginica", "job": "x"}, points(2, 3)),
        ],
    )
    assert ">champion class=setosa</text>" in svg and ">champion class=virginica</text>" in svg
    assert "job=" not in svg


def test_a_query_without_data_says_so() -> None:
    assert "Prometheus has no data for this query" in range_plot("t", WINDOW, [])


def test_without_ranges_the_page_draws_no_range() -> None:
    assert 'class="range"' not in pages.promotion_live(shadow(), [], NOW)


def test_the_range_is_drawn_under_its_templates_measurements_or_its_failure_said() -> None:
    ranges = {
        "latency": Ranged(WINDOW, (Series(CHAMPION, {}, points(0.1, 0.1)),)),
        "errors": Ranged(WINDOW, (), "cannot reach Prometheus at prom:9090: ClientConnectorError"),
    }
    html = pages.promotion_live(shadow(), [], NOW, ranges)
    latency = html[html.index('<figure class="analysis" data-template="latency">') :]
    latency = latency[: latency.index("</figure>")]
    assert '<div class="range" data-template="latency">' in latency
    assert 'class="plot range"' in latency
    errors = html[html.index('<figure class="analysis" data-template="errors">') :]
    assert '<p class="note">cannot reach Prometheus at prom:9090' in errors


def test_a_url_with_credentials_or_without_a_host_is_refused() -> None:
    assert url_refusal("http://prometheus.monitoring:9090") is None
    assert "no credentials" in (url_refusal("https://me:secret@prom") or "")
    assert "http:// or https://" in (url_refusal("prometheus:9090") or "")


# --- against a Prometheus that answers over HTTP -----------------------------------------


@contextlib.asynccontextmanager
async def prometheus(asked: list[dict[str, str]]) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that answers ``/api/v1/query_range`` as Prometheus does:
    one series, the predictor's name as a label, two points."""

    async def query_range(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        start = float(request.query["start"])
        return web.json_response(
            matrix(({"predictor": request.query["query"][-12:]}, [[start, "1"], [start + 9, "2"]]))
        )

    app = web.Application()
    app.router.add_get("/api/v1/query_range", query_range)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def test_the_reader_asks_each_query_over_the_window_and_keeps_a_running_runs_answers() -> None:
    asked: list[dict[str, str]] = []

    async def check() -> tuple[dict[str, Ranged], dict[str, Ranged]]:
        async with prometheus(asked) as url:
            reader = RangeReader(url)
            try:
                first = await reader.read(shadow(), NOW)
                again = await reader.read(shadow(), NOW)
                ended = shadow(finishedAt="2026-03-01T11:58:00Z")
                await reader.read(ended, NOW)  # the run's end: asked again, then kept
                await reader.read(ended, NOW)
            finally:
                await reader.close()
            return first, again

    first, again = asyncio.run(check())
    assert len(asked) == 6  # the champion's, the challenger's, the error rate's; twice
    assert {a["start"] for a in asked} == {f"{WINDOW.start.timestamp():.3f}"}
    assert asked[-1]["end"] == f"{WINDOW.start.timestamp() + 8 * 60:.3f}"
    assert [s.side for s in first["latency"].series] == [CHAMPION, CHALLENGER]
    assert first["errors"].error == "" and len(first["errors"].series) == 1
    assert again == first


def test_the_promotion_page_draws_the_range_only_with_the_flag() -> None:
    fake = FakeKube()
    fake.objects["modelpromotions"] = dict(shadow().body)
    asked: list[dict[str, str]] = []

    async def page(url: str | None) -> str:
        options = serve.Options(open_browser=False, prometheus_url=url)
        async with (
            serve.started(cast(Kube, fake), options) as dashboard,
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{dashboard.port}/promotions/ml/iris") as response,
        ):
            return await response.text()

    async def check() -> tuple[str, str]:
        without = await page(None)
        async with prometheus(asked) as url:
            return without, await page(url)

    without, with_flag = asyncio.run(asyncio.wait_for(check(), 30))
    assert 'class="range"' not in without
    assert with_flag.count('class="plot range"') == 2
    assert len(asked) == 3 and not math.isnan(float(asked[0]["step"]))
