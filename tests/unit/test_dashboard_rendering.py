"""The dashboard's pages and plots, built from objects as the API returns them."""

from __future__ import annotations

import datetime
import re
from typing import Any

from promotion_operator.kubectl_plugin.dashboard import pages
from promotion_operator.kubectl_plugin.dashboard.comparison_plot import comparison_plot
from promotion_operator.kubectl_plugin.dashboard.plot import Band, band_of, plot
from promotion_operator.kubectl_plugin.resource import Promotion

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)


def measurement(at: str, result: str, value: float | None, **bounds: float) -> dict[str, Any]:
    out: dict[str, Any] = {"template": "error-rate", "result": result, "at": at, **bounds}
    if value is not None:
        out["value"] = value
    else:
        out["message"] = "the query returned no samples"
    return out


MEASUREMENTS = [
    measurement("2026-03-01T11:58:00Z", "Passed", 0.01, max=0.05),
    measurement("2026-03-01T11:58:30Z", "Inconclusive", None, max=0.05),
    measurement("2026-03-01T11:59:00Z", "Failed", 0.2, max=0.05),
]


def canary(**status: Any) -> Promotion:
    return Promotion(
        {
            "metadata": {
                "name": "iris",
                "namespace": "ml",
                "generation": 1,
                "resourceVersion": "7",
                "creationTimestamp": "2026-03-01T11:50:00Z",
            },
            "spec": {
                "source": {"namespace": "staging", "name": "iris"},
                "target": {"namespace": "production"},
                "strategy": "Canary",
                "canary": {"steps": [{"setWeight": 10}, {"analysis": {}}, {"setWeight": 50}]},
                "approval": {"required": True, "groups": ["release-managers"]},
            },
            "status": {
                "observedGeneration": 1,
                "phase": "Analyzing",
                "startedAt": "2026-03-01T11:55:00Z",
                "canary": {"step": 1, "weight": 10, "measurements": MEASUREMENTS},
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "Analyzing", "message": "m"}
                ],
                **status,
            },
        }
    )


def test_the_plot_has_one_point_per_measurement() -> None:
    svg = plot("error-rate", MEASUREMENTS)
    assert svg.count('<g class="point ') == len(MEASUREMENTS)
    assert svg.count('class="point failed"') == 1
    assert svg.count('class="point inconclusive"') == 1


def test_the_plot_draws_the_band_of_the_templates_bounds() -> None:
    svg = plot("error-rate", MEASUREMENTS)
    assert band_of(MEASUREMENTS) == Band(None, 0.05)
    assert svg.count('class="band"') == 1
    assert 'class="bound max"' in svg and 'class="bound min"' not in svg


def test_a_failure_is_told_by_its_shape_not_only_its_colour() -> None:
    svg = plot("error-rate", MEASUREMENTS)
    failed = re.search(r'<g class="point failed"[^>]*>(.*?)</g>', svg)
    passed = re.search(r'<g class="point passed"[^>]*>(.*?)</g>', svg)
    assert failed and "<path" in failed.group(1)
    assert passed and "<circle" in passed.group(1)


def test_the_plot_is_labelled_for_screen_readers() -> None:
    svg = plot("error-rate", MEASUREMENTS)
    assert 'role="img"' in svg
    assert "3 measurements of error-rate: 1 passed, 1 failed; passing band [-inf, 0.05]" in svg


def test_points_without_times_are_spread_evenly() -> None:
    untimed = [{"template": "t", "result": "Passed", "value": v} for v in (1, 2, 3)]
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', plot("t", untimed))]
    assert len(xs) == 3 and xs[1] - xs[0] == xs[2] - xs[1] > 0


def test_a_single_value_still_plots_inside_the_frame() -> None:
    svg = plot("t", [{"template": "t", "result": "Passed", "value": 5, "at": "x"}])
    assert svg.count('<g class="point passed"') == 1
    assert '<circle cx="344.0"' in svg  # in the middle
    assert "nan" not in svg.lower()


def test_values_from_the_api_are_escaped() -> None:
    hostile = canary(
        conditions=[
            {"type": "Ready", "status": "False", "reason": "X", "message": "<script>x</script>"}
        ]
    )
    html = pages.promotion_page(hostile, [], NOW, "tok")
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html


def test_the_list_shows_the_canarys_weight_and_filters_by_phase() -> None:
    running = canary()
    html = pages.list_live([running], NOW, pages.Filters())
    row = re.search(r'<tr data-promotion="ml/iris">.*?</tr>', html)
    assert row and '<td class="weight">10%</td>' in row.group(0)
    assert "Analyzing" in row.group(0) and "staging/iris" in row.group(0)
    assert "No ModelPromotions" in pages.list_live([running], NOW, pages.Filters(phase="Paused"))
    assert "ml/iris" in pages.list_live([running], NOW, pages.Filters(namespace="ml"))


def test_the_current_canary_step_is_marked() -> None:
    html = pages.promotion_live(canary(), [], NOW)
    current = re.findall(r'<li class="current" aria-current="step">([^<]*)', html)
    assert [text.strip() for text in current] == ["analysis {}"]


def test_read_only_shows_no_buttons() -> None:
    assert "<button" not in pages.promotion_page(canary(), [], NOW, None)
    with_buttons = pages.promotion_page(canary(), [], NOW, "tok")
    assert re.findall(r'value="(approve|resume|retry|abort)"', with_buttons) == [
        "approve",
        "resume",
        "retry",
        "abort",
    ]


def test_every_form_carries_the_csrf_token() -> None:
    html = pages.promotion_page(canary(), [], NOW, "the-token")
    assert html.count("<form") == html.count('name="csrf" value="the-token"') == 4


def test_a_refusal_is_shown_as_an_alert_with_its_message() -> None:
    said = pages.Said("Error from server (Forbidden): not a member", refused=True)
    html = pages.promotion_page(canary(), [], NOW, "tok", said)
    assert '<p class="error" role="alert">Error from server (Forbidden): not a member</p>' in html


def test_the_approval_state_names_the_approver_groups() -> None:
    html = pages.promotion_live(canary(phase="AwaitingApproval"), [], NOW)
    assert "waiting for approval (approvers: members of release-managers)" in html
    approved = canary(approval={"by": "alice", "at": "2026-03-01T11:56:00Z"})
    assert "approved by alice at 2026-03-01T11:56:00Z" in pages.promotion_live(approved, [], NOW)


def test_the_timeline_lists_the_runs_events_with_their_durations() -> None:
    events = [
        {"reason": "Promoting", "message": "writing", "lastTimestamp": "2026-03-01T11:56:00Z"},
        {"reason": "Analyzing", "message": "step 2/4", "lastTimestamp": "2026-03-01T11:57:00Z"},
        {"reason": "Old", "message": "an earlier run", "lastTimestamp": "2026-03-01T11:00:00Z"},
    ]
    html = pages.promotion_live(canary(), events, NOW)
    timeline = re.search(r'<h2 id="h-timeline">.*?</table>', html)
    assert timeline is not None
    rows = re.findall(
        r"<tr><td><time[^>]*>([^<]*)</time></td><td>([^<]*)</td><td>([^<]*)</td>", timeline.group(0)
    )
    assert rows == [
        ("11:55:00", "Started", "60s"),
        ("11:56:00", "Promoting", "60s"),
        ("11:57:00", "Analyzing", "3m"),
    ]


def test_the_page_loads_nothing_from_another_site() -> None:
    html = pages.promotion_page(canary(), [], NOW, "tok")
    assert not re.search(r'(src|href)="(https?:)?//', html)


# --- a comparison: the challenger against the champion ------------------------------


def compared(at: str, result: str, challenger: float, champion: float) -> dict[str, Any]:
    return {
        "template": "latency",
        "result": result,
        "at": at,
        "value": challenger,
        "champion": champion,
        "score": challenger / champion,
        "max": 1.5,
        "message": f"ratio {challenger / champion:g} (challenger {challenger}, "
        f"champion {champion})",
    }


COMPARED = [
    compared("2026-03-01T11:58:00Z", "Passed", 0.11, 0.1),
    compared("2026-03-01T11:58:30Z", "Passed", 0.12, 0.1),
    compared("2026-03-01T11:59:00Z", "Failed", 0.3, 0.1),
]


def shadow(measurements: list[dict[str, Any]], compare: dict[str, Any]) -> Promotion:
    body = dict(canary(canary={"step": 1, "measurements": measurements}).body)
    template = {"name": measurements[0]["template"], "query": "q", "compare": compare}
    body["spec"] = {**body["spec"], "analysis": {"templates": [template]}}
    return Promotion(body)


def test_a_comparison_plots_one_point_per_measurement_for_each_series() -> None:
    svg = comparison_plot("latency", COMPARED, "ratio")
    assert svg.count('<g class="sample challenger"') == len(COMPARED)
    assert svg.count('<g class="sample champion"') == len(COMPARED)
    assert 'class="trace challenger"' in svg and 'class="trace champion"' in svg


def test_the_two_series_differ_in_line_and_marker_and_a_legend_names_them() -> None:
    svg = comparison_plot("latency", COMPARED, "ratio")
    legend = re.search(r'<g class="legend">(.*?)</g></g>', svg)
    assert legend is not None
    assert ">challenger</text>" in legend.group(0) and ">champion</text>" in legend.group(0)
    challenger = re.search(r'<g class="sample challenger"[^>]*>(.*?)</g>', svg)
    champion = re.search(r'<g class="sample champion"[^>]*>(.*?)</g>', svg)
    assert challenger and "<circle" in challenger.group(1)
    assert champion and "<rect" in champion.group(1)
    assert 'class="trace champion"' in svg and re.search(
        r'class="trace champion"[^>]*stroke-dasharray', svg
    )


def test_the_score_is_drawn_against_its_band_with_each_verdict_marked() -> None:
    svg = comparison_plot("latency", COMPARED, "ratio")
    assert svg.count('class="band"') == 1 and 'class="bound max"' in svg
    assert svg.count('<g class="point ') == len(COMPARED)
    assert svg.count('class="point failed"') == 1 and svg.count('class="point passed"') == 2
    assert "ratio must lie in [-inf, 1.5]" in svg


def test_a_distribution_without_single_values_still_plots_its_score() -> None:
    psi: list[dict[str, Any]] = [
        {"template": "predictions", "result": "Passed", "at": "2026-03-01T11:58:00Z",
         "score": 0.02, "max": 0.1},
        {"template": "predictions", "result": "Inconclusive", "at": "2026-03-01T11:58:30Z",
         "message": "no samples"},
    ]  # fmt: skip
    svg = comparison_plot("predictions", psi, "PSI")
    assert '<g class="sample' not in svg
    assert svg.count('<g class="point ') == 2 and 'class="point inconclusive"' in svg


def test_a_sample_judged_later_is_marked_apart_from_the_verdicts() -> None:
    sampled = [{**m, "result": "Sampled"} for m in COMPARED[:2]]
    for m in sampled:
        del m["score"], m["max"]
    svg = comparison_plot("latency", sampled, "Mann-Whitney p-value")
    assert svg.count('class="point sampled"') == 2
    assert svg.count('<g class="sample challenger"') == 2


def test_the_page_shows_a_comparisons_plot_and_both_values_beside_it() -> None:
    html = pages.promotion_live(shadow(COMPARED, {"ratio": {"max": 1.5}}), [], NOW)
    figure = re.search(r'<figure class="analysis" data-template="latency">.*?</figure>', html)
    assert figure is not None
    assert 'class="plot comparison"' in figure.group(0)
    heads = re.findall(r'<th scope="col">([^<]*)</th>', figure.group(0))
    assert heads == ["At (UTC)", "Verdict", "Challenger", "Champion", "Ratio", "Band", "Message"]
    rows = re.findall(
        r'<tr class="(\w+)"><td><time[^>]*>[^<]*</time></td>((?:<td>[^<]*</td>){4})',
        figure.group(0),
    )
    assert [(kind, re.findall(r"<td>([^<]*)</td>", cells)[:3]) for kind, cells in rows] == [
        ("passed", ["Passed", "0.11", "0.1"]),
        ("passed", ["Passed", "0.12", "0.1"]),
        ("failed", ["Failed", "0.3", "0.1"]),
    ]


def test_the_score_is_named_by_the_templates_comparison() -> None:
    assert pages.statistic({"ratio": {"max": 1.1}}) == "ratio"
    assert pages.statistic({"difference": {"max": 0.01}}) == "difference"
    assert pages.statistic({"mannWhitney": {}}) == "Mann-Whitney p-value"
    assert pages.statistic({"distribution": {"by": "class", "maxPSI": 0.2}}) == "PSI"
    assert pages.statistic({"distribution": {"by": "c", "significance": 0.05}}) == (
        "chi-square p-value"
    )
    psi = [{"template": "p", "result": "Passed", "score": 0.02, "max": 0.1}]
    html = pages.promotion_live(shadow(psi, {"distribution": {"by": "c", "maxPSI": 0.1}}), [], NOW)
    assert '<th scope="col">PSI</th>' in html


def test_a_template_without_compare_keeps_its_single_series_plot() -> None:
    html = pages.promotion_live(canary(), [], NOW)
    assert 'class="plot values"' in html and 'class="plot comparison"' not in html
