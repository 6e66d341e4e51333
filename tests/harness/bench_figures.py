"""The figures of ``make bench``, computed from what the servers report (no servers here).

Reading a process's memory and CPU from ``/proc``, counting requests in the
apiserver's own ``apiserver_request_total``, percentiles, and the side-by-side
table. Kept apart from ``bench.py`` so that the parsing and the table can be
unit-tested on real samples.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from tests.harness.promotions import API_VERSION

MODELPROMOTIONS = ("deploy.mlops.dev", "modelpromotions")
PROMOTIONPATHS = ("deploy.mlops.dev", "promotionpaths")
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE"})
_REQUEST_TOTAL = "apiserver_request_total"
#: The API Priority and Fairness counter of requests it refused (with a 429).
APF_REJECTED = "apiserver_flowcontrol_rejected_requests_total"
_MIB = 1024 * 1024

assert API_VERSION.startswith(MODELPROMOTIONS[0] + "/")


@dataclass(frozen=True)
class Usage:
    """A process's memory (bytes) and CPU time (user + system, seconds) so far."""

    rss: int
    peak_rss: int
    cpu: float


def usage(pid: int) -> Usage:
    """``VmRSS`` and ``VmHWM`` from ``/proc/PID/status``; ``utime + stime`` from
    ``/proc/PID/stat`` (the process and all its threads, not its children)."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024  # reported in kB
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces; the rest follows its ")".
        after_name = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime = int(after_name[11]), int(after_name[12])  # fields 14 and 15
    return Usage(fields.get("VmRSS", 0), fields.get("VmHWM", 0), (utime + stime) / ticks)


class RequestKey(NamedTuple):
    """One series of ``apiserver_request_total``, without scope, component, version."""

    verb: str
    group: str
    resource: str
    subresource: str
    code: str

    @property
    def accepted(self) -> bool:
        """Answered 2xx (a refused write changed nothing and is counted apart)."""
        return self.code.startswith("2")


def request_totals(metrics_text: str) -> Counter[RequestKey]:
    """``apiserver_request_total`` of a kube-apiserver ``/metrics`` page, summed over
    the labels other than verb, group, resource, subresource and code."""
    lines = "\n".join(
        line for line in metrics_text.splitlines() if line.startswith(_REQUEST_TOTAL + "{")
    )
    totals: Counter[RequestKey] = Counter()
    for family in text_string_to_metric_families(lines + "\n"):
        for sample in family.samples:
            if sample.name != _REQUEST_TOTAL:
                continue
            labels = sample.labels
            key = RequestKey(
                labels.get("verb", ""),
                labels.get("group", ""),
                labels.get("resource", ""),
                labels.get("subresource", ""),
                labels.get("code", ""),
            )
            totals[key] += int(sample.value)
    return totals


def modelpromotion_writes(
    before: Mapping[RequestKey, int],
    after: Mapping[RequestKey, int],
    *,
    own_posts: bool = True,
    refused: bool = False,
) -> Counter[str]:
    """Writes on ModelPromotions between two readings, by ``"VERB"`` (the object) or
    ``"VERB status"``: the accepted ones, or with ``refused`` those answered otherwise
    (by ``"VERB status CODE"``). With ``own_posts`` the creates (POST) are left out:
    the operator never creates a ModelPromotion of its own, the benchmark does (a
    path's stage runs are the operator's: count them with ``own_posts=False``)."""
    return resource_writes(MODELPROMOTIONS, before, after, own_posts=own_posts, refused=refused)


def resource_writes(
    resource: tuple[str, str],
    before: Mapping[RequestKey, int],
    after: Mapping[RequestKey, int],
    *,
    own_posts: bool = True,
    refused: bool = False,
) -> Counter[str]:
    """Writes on ``resource`` (group, plural) between two readings, as
    :func:`modelpromotion_writes` counts them."""
    writes: Counter[str] = Counter()
    for key, count in after.items():
        if (key.group, key.resource) != resource or key.verb not in WRITE_VERBS:
            continue
        if (own_posts and key.verb == "POST") or key.accepted == refused:
            continue
        delta = count - before.get(key, 0)
        if delta:
            kind = " ".join(
                part for part in (key.verb, key.subresource, refused and key.code) if part
            )
            writes[kind] += delta
    return writes


def throttled(before: Mapping[RequestKey, int], after: Mapping[RequestKey, int]) -> Counter[str]:
    """Requests the apiserver answered 429 (Too Many Requests) between two readings,
    by ``"VERB resource"`` (``"VERB resource/subresource"``)."""
    counts: Counter[str] = Counter()
    for key, count in after.items():
        delta = count - before.get(key, 0)
        if key.code == "429" and delta:
            resource = "/".join(part for part in (key.resource, key.subresource) if part)
            counts[f"{key.verb} {resource}"] += delta
    return counts


def labelled_totals(metrics_text: str, sample_name: str, label: str) -> Counter[str]:
    """A counter's samples from a Prometheus text page, summed by one label."""
    lines = "\n".join(
        line for line in metrics_text.splitlines() if line.startswith(sample_name + "{")
    )
    totals: Counter[str] = Counter()
    for family in text_string_to_metric_families(lines + "\n"):
        for sample in family.samples:
            if sample.name == sample_name:
                totals[sample.labels.get(label, "")] += int(sample.value)
    return totals


def labelled_delta(before_text: str, after_text: str, sample_name: str, label: str) -> Counter[str]:
    """How much a counter grew between two pages, by one label (growth only)."""
    before = labelled_totals(before_text, sample_name, label)
    after = labelled_totals(after_text, sample_name, label)
    return +Counter({key: count - before.get(key, 0) for key, count in after.items()})


def events_created(before: Mapping[RequestKey, int], after: Mapping[RequestKey, int]) -> int:
    """Events created between two readings (``core/v1`` and ``events.k8s.io``)."""
    return sum(
        count - before.get(key, 0)
        for key, count in after.items()
        if key.resource == "events" and key.verb == "POST" and key.accepted and not key.subresource
    )


def counter_total(metrics_text: str, sample_name: str) -> float:
    """The sum of a counter's samples over all labels, from a Prometheus text page."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == sample_name
    )


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float], digits: int = 1) -> str:
    """``"p50 / p95 / max s"`` of a sample, or ``"-"`` for none."""
    if not values:
        return "-"
    p50, p95, top = percentile(values, 50), percentile(values, 95), max(values)
    return f"{p50:.{digits}f} / {p95:.{digits}f} / {top:.{digits}f} s"


def mib(size: int) -> str:
    """Bytes as MiB, the unit of the issue's figures."""
    return f"{size / _MIB:.0f} MiB"


def ratio(script: float | None, operator: float | None) -> str:
    """How many times the script's figure is the operator's (``"-"`` when undefined)."""
    if script is None or operator is None or operator <= 0:
        return "-"
    value = script / operator
    return f"{value:.0f}x" if value >= 10 else f"{value:.1f}x"


class Row(NamedTuple):
    """One figure of the side-by-side table."""

    figure: str
    operator: str
    script: str
    ratio: str = "-"


def render_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain-text table with aligned columns, a header and a rule under it."""
    table = [header, *rows]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


# One call in the MLflow server's access log (uvicorn's, as MLflow 3.17.2 writes it):
# `... 127.0.0.1:40498 - "GET /api/2.0/mlflow/model-versions/get?name=iris&version=1
# HTTP/1.1" 200 OK`, on one line.
_MLFLOW_ACCESS = re.compile(
    r'"(?P<method>[A-Z]+) /api/2\.0/mlflow/(?P<path>[^?" ]+)(?:\?[^" ]*)?'
    r' HTTP/[\d.]+" (?P<code>\d{3})'
)


def mlflow_requests(access_log: str) -> Counter[str]:
    """The MLflow REST calls the server logged, as ``"METHOD path code"`` (query
    strings left out, so every read of a version counts as one kind)."""
    return Counter(
        f"{found['method']} {found['path']} {found['code']}"
        for found in _MLFLOW_ACCESS.finditer(access_log)
    )
