"""The range queries of ``--prometheus-url``: each analysis template's query over the
run's window, asked of Prometheus's HTTP API (``/api/v1/query_range``) with aiohttp.

Only with the flag: without it the dashboard asks Prometheus nothing. The answers of
a run are kept a few seconds (a finished run's for good, a few dozen runs at most),
so a burst of pushes to open pages is one round of queries. A failure is shown
under the plot in words that name Prometheus's host, never its whole URL.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections import OrderedDict
from urllib.parse import urlsplit

import aiohttp

from promotion_operator.kubectl_plugin.dashboard.range_queries import (
    Ranged,
    Series,
    Unreadable,
    Window,
    range_queries,
    series_of,
    window_of,
)
from promotion_operator.kubectl_plugin.resource import Promotion

# A running run's answers are asked again after this long.
_FRESH_SECONDS = 10.0
_KEPT_RUNS = 32
_TIMEOUT = aiohttp.ClientTimeout(total=10)

Key = tuple[str, str, str, bool]


def url_refusal(url: str) -> str | None:
    """Why ``--prometheus-url`` cannot be used (None: it can)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"--prometheus-url must be an http:// or https:// URL, not {url!r}"
    if parts.username or parts.password:
        return "--prometheus-url must carry no credentials (user:password@)"
    return None


class RangeReader:
    """Asks Prometheus for each template's query over a run, and keeps the answers."""

    def __init__(self, url: str) -> None:
        self._url = url.rstrip("/")
        self._host = urlsplit(url).netloc
        self._session: aiohttp.ClientSession | None = None
        self._kept: OrderedDict[Key, tuple[float, dict[str, Ranged]]] = OrderedDict()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def read(self, p: Promotion, now: datetime.datetime) -> dict[str, Ranged]:
        """The range of each template the run measured, by template (empty before the
        run started)."""
        window = window_of(p, now)
        if window is None:
            return {}
        finished = bool(p.status.get("finishedAt"))
        # A run's end is a key of its own: the first read after it asks again.
        key = (p.namespace, p.name, p.run_label, finished)
        kept = self._kept.get(key)
        if kept is not None and (finished or time.monotonic() - kept[0] < _FRESH_SECONDS):
            return kept[1]
        queries = range_queries(p)
        answers = await asyncio.gather(*(self._series(q.side, q.promql, window) for q in queries))
        ranges: dict[str, Ranged] = {}
        for query, answer in zip(queries, answers, strict=True):
            before = ranges.get(query.template, Ranged(window))
            if isinstance(answer, str):
                ranges[query.template] = Ranged(window, before.series, before.error or answer)
            else:
                ranges[query.template] = Ranged(window, before.series + tuple(answer), before.error)
        self._kept[key] = (time.monotonic(), ranges)
        self._kept.move_to_end(key)
        while len(self._kept) > _KEPT_RUNS:
            self._kept.popitem(last=False)
        return ranges

    async def _series(self, side: str, promql: str, window: Window) -> list[Series] | str:
        """The series, or what went wrong in words."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        params = {
            "query": promql,
            "start": f"{window.start.timestamp():.3f}",
            "end": f"{window.end.timestamp():.3f}",
            "step": f"{window.step_seconds:g}",
        }
        try:
            async with self._session.get(
                f"{self._url}/api/v1/query_range", params=params
            ) as response:
                if response.status >= 500:
                    return f"Prometheus at {self._host} answered HTTP {response.status}"
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as error:
            return f"cannot reach Prometheus at {self._host}: {type(error).__name__}"
        except ValueError:
            return f"Prometheus at {self._host} did not answer JSON"
        try:
            return series_of(side, answer)
        except Unreadable as error:
            return str(error)
