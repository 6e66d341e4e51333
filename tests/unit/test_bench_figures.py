"""``make bench``'s figures: counting writes in a real kube-apiserver ``/metrics`` page,
reading ``/proc``, percentiles and the table (no servers)."""

from __future__ import annotations

import os
from collections import Counter

from tests.harness.bench_figures import (
    APF_REJECTED,
    PROMOTIONPATHS,
    RequestKey,
    Row,
    events_created,
    labelled_delta,
    mlflow_requests,
    modelpromotion_writes,
    percentile,
    ratio,
    render_table,
    request_totals,
    resource_writes,
    spread,
    throttled,
    usage,
)

# Lines of the harness's kube-apiserver v1.35.4 /metrics after one create of a
# ModelPromotion, two status patches, one label patch and one Event (other series
# of the 1.5 MB page left out, a few kept to be ignored).
BEFORE = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/readyz",verb="GET",version=""} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="modelpromotions",scope="resource",subresource="",verb="POST",version="v1alpha1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="modelpromotions",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 2
# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="deploy.mlops.dev",resource="modelpromotions",scope="resource",subresource="status",verb="PATCH",version="v1alpha1",le="0.005"} 2
"""  # noqa: E501

AFTER = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/readyz",verb="GET",version=""} 9
apiserver_request_total{code="200",component="apiserver",dry_run="",group="apiextensions.k8s.io",resource="customresourcedefinitions",scope="cluster",subresource="",verb="WATCH",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="modelpromotions",scope="resource",subresource="",verb="PATCH",version="v1alpha1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="modelpromotions",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 5
apiserver_request_total{code="409",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="modelpromotions",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 1
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 1
apiserver_request_total{code="201",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="modelpromotions",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3
"""  # noqa: E501


def test_request_totals_by_code() -> None:
    totals = request_totals(AFTER)
    status = RequestKey("PATCH", "deploy.mlops.dev", "modelpromotions", "status", "200")
    assert totals[status] == 5
    assert totals[status._replace(code="409")] == 1
    assert totals[RequestKey("GET", "", "", "/readyz", "200")] == 9
    assert not any(key.resource == "" and key.verb == "PATCH" for key in totals)


def test_writes_between_readings_leave_out_the_creates_and_count_refusals_apart() -> None:
    before, after = request_totals(BEFORE), request_totals(AFTER)
    assert modelpromotion_writes(before, after) == {"PATCH": 1, "PATCH status": 3}
    assert modelpromotion_writes(before, after, refused=True) == {"PATCH status 409": 1}
    assert modelpromotion_writes(before, after, own_posts=False)["POST"] == 2
    assert events_created(before, after) == 1


PATH_WRITES = """\
apiserver_request_total{code="201",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="promotionpaths",scope="resource",subresource="",verb="POST",version="v1alpha1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="promotionpaths",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 7
apiserver_request_total{code="201",component="apiserver",dry_run="",group="deploy.mlops.dev",resource="modelpromotions",scope="resource",subresource="",verb="POST",version="v1alpha1"} 3
"""  # noqa: E501


def test_writes_of_another_resource_are_counted_apart_from_modelpromotions() -> None:
    before, after = request_totals(""), request_totals(PATH_WRITES)
    assert resource_writes(PROMOTIONPATHS, before, after) == {"PATCH status": 7}
    assert resource_writes(PROMOTIONPATHS, before, after, own_posts=False)["POST"] == 2
    assert modelpromotion_writes(before, after, own_posts=False) == {"POST": 3}


def test_usage_reads_this_process() -> None:
    mine = usage(os.getpid())
    times = os.times()
    assert 0 < mine.rss <= mine.peak_rss
    # /proc/PID/stat fields 14 and 15 are this process's user and system ticks.
    assert abs(mine.cpu - (times.user + times.system)) < 0.05


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(10, 0, -1)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (5, 10, 10)
    assert percentile([3.0], 50) == 3.0
    assert spread([1.0, 2.0, 4.0]) == "2.0 / 4.0 / 4.0 s"
    assert spread([]) == "-"


def test_ratio() -> None:
    assert ratio(2600.0, 38.0) == "68x"
    assert ratio(7.7, 8.0) == "1.0x"
    assert ratio(5.0, 0.0) == ratio(None, 1.0) == "-"


def test_table_columns_line_up() -> None:
    table = render_table(
        Row("figure", "operator", "seed-style script", "script/operator"),
        [Row("wall time", "38.0 s", "~2600 s", "68x"), Row("tokens", "2", "~500")],
    )
    lines = table.splitlines()
    assert lines[0] == "figure     operator  seed-style script  script/operator"
    assert lines[1] == "---------  --------  -----------------  ---------------"
    assert lines[2] == "wall time  38.0 s    ~2600 s            68x"
    assert lines[3] == "tokens     2         ~500               -"


APF_PAGE = """\
# TYPE apiserver_flowcontrol_rejected_requests_total counter
apiserver_flowcontrol_rejected_requests_total{flow_schema="service-accounts",priority_level="workload-low",reason="queue-full"} 7
apiserver_flowcontrol_rejected_requests_total{flow_schema="service-accounts",priority_level="workload-low",reason="time-out"} 2
apiserver_flowcontrol_rejected_requests_total{flow_schema="global-default",priority_level="global-default",reason="queue-full"} 1
"""  # noqa: E501


def test_429_answers_are_counted_by_verb_and_resource() -> None:
    key = RequestKey("PATCH", "deploy.mlops.dev", "modelpromotions", "status", "429")
    before = request_totals(BEFORE)
    after = request_totals(AFTER) + Counter({key: 4, key._replace(verb="GET", subresource=""): 1})

    assert throttled(before, after) == {
        "PATCH modelpromotions/status": 4,
        "GET modelpromotions": 1,
    }


def test_flow_control_rejections_grow_by_priority_level() -> None:
    before = APF_PAGE.replace("} 7", "} 3")

    assert labelled_delta(before, APF_PAGE, APF_REJECTED, "priority_level") == {"workload-low": 4}


# Lines of MLflow 3.17.2's server log, as the harness's server wrote them.
MLFLOW_LOG = """\
2026/12/07 18:29:12 INFO:     127.0.0.1:53414 - "POST /api/2.0/mlflow/model-versions/create HTTP/1.1" 200 OK
2026/12/07 18:29:17 INFO mlflow.server.jobs.utils: Registered online_scoring_scheduler periodic task
2026/12/07 18:29:22 INFO:     127.0.0.1:40498 - "GET /api/2.0/mlflow/model-versions/get?name=iris&version=1 HTTP/1.1" 200 OK
2026/12/07 18:29:23 INFO:     127.0.0.1:37660 - "GET /api/2.0/mlflow/model-versions/get?name=iris&version=2 HTTP/1.1" 401 Unauthorized
2026/12/07 18:29:24 INFO:     127.0.0.1:37672 - "GET /api/2.0/mlflow/registered-models/alias?name=iris&alias=champion HTTP/1.1" 200 OK
2026/12/07 18:29:25 INFO:     127.0.0.1:37684 - "POST /api/2.0/mlflow/model-versions/set-tag HTTP/1.1" 200 OK
2026/12/07 18:29:26 INFO:     127.0.0.1:37690 - "GET /health HTTP/1.1" 200 OK
2026/12/07 18:29:27 INFO:     127.0.0.1:37698 - "GET /api/2.0/mlflow/model-versions/get?name=iris&version=1 HTTP/1.1" 200 OK
"""  # noqa: E501


def test_mlflow_requests_are_counted_by_call_and_status_without_the_query() -> None:
    assert mlflow_requests(MLFLOW_LOG) == Counter(
        {
            "GET model-versions/get 200": 2,
            "GET model-versions/get 401": 1,
            "GET registered-models/alias 200": 1,
            "POST model-versions/create 200": 1,
            "POST model-versions/set-tag 200": 1,
        }
    )
