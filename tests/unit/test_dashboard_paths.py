"""The dashboard's PromotionPath pages, built from paths as the API returns them."""

from __future__ import annotations

import datetime
import re
from typing import Any

from promotion_operator.kubectl_plugin.dashboard import path_pages
from promotion_operator.kubectl_plugin.dashboard.pages import Scope

NOW = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)
OLD, NEW = "1-aaaaaa", "2-bbbbbb"


def a_path(name: str = "iris", **status: Any) -> dict[str, Any]:
    """dev carries the new freight; staging soaks it, carrying the old one."""
    return {
        "metadata": {"namespace": "ml", "name": name, "resourceVersion": "5"},
        "spec": {
            "source": {"namespace": "build", "name": "iris"},
            "stages": [
                {"name": "dev", "target": {"namespace": "dev"}},
                {"name": "staging", "target": {"namespace": "staging"}, "soak": "2m"},
            ],
        },
        "status": {
            "freight": [
                {"id": NEW, "sourceGeneration": 2, "images": ["iris:2"],
                 "discoveredAt": "2026-03-01T11:55:00Z"},
                {"id": OLD, "sourceGeneration": 1, "images": ["iris:1"],
                 "discoveredAt": "2026-03-01T11:00:00Z"},
            ],
            "stages": [
                {"name": "dev", "phase": "Succeeded", "freight": NEW, "promoted": NEW,
                 "since": "2026-03-01T11:58:00Z", "run": f"iris-dev-{NEW}"},
                {"name": "staging", "phase": "Soaking", "reason": "Soaking", "freight": NEW,
                 "promoted": OLD, "since": "2026-03-01T11:58:00Z",
                 "soakUntil": "2026-03-01T12:01:30Z", "run": f"iris-staging-{OLD}"},
            ],
            "history": [
                {"stage": "dev", "freight": NEW, "run": f"iris-dev-{NEW}", "phase": "Succeeded",
                 "startedAt": "2026-03-01T11:56:00Z", "finishedAt": "2026-03-01T11:58:00Z"},
            ],
            **status,
        },
    }  # fmt: skip


def stage_card(html: str, stage: str) -> str:
    found = re.search(rf'<li class="stage [^"]*" data-stage="{stage}".*?</li>', html)
    assert found is not None, html
    return found.group(0)


def test_the_list_shows_each_paths_source_stages_and_newest_freight() -> None:
    html = path_pages.paths_live([a_path()], NOW)
    row = re.search(r'<tr data-path="ml/iris">.*?</tr>', html)
    assert row is not None
    assert 'href="/paths/ml/iris"' in row.group(0) and "build/iris" in row.group(0)
    assert f"<code>{NEW}</code>" in row.group(0)
    stages = re.findall(r'data-stage="(\w+)"><strong>\w+</strong> (\w+)', row.group(0))
    assert stages == [("dev", "Succeeded"), ("staging", "Soaking")]


def test_the_list_says_when_there_is_no_path() -> None:
    html = path_pages.paths_page([], NOW, Scope("ml"))
    assert "No PromotionPaths to show." in html and "Watching namespace ml." in html
    assert 'data-stream="/stream/paths"' in html


def test_a_paths_stages_are_side_by_side_in_the_order_freight_moves() -> None:
    html = path_pages.path_live(a_path(), NOW)
    stages = re.findall(r'<li class="stage [^"]*" data-stage="(\w+)" data-phase="(\w*)"', html)
    assert stages == [("dev", "Succeeded"), ("staging", "Soaking")]


def test_a_stage_shows_its_freight_phase_since_and_its_run_linked() -> None:
    dev = stage_card(path_pages.path_live(a_path(), NOW), "dev")
    assert f"<dt>Freight</dt><dd><code>{NEW}</code></dd>" in dev
    assert '<time datetime="2026-03-01T11:58:00Z">' in dev and "(2m ago)" in dev
    assert f'<a href="/promotions/ml/iris-dev-{NEW}">iris-dev-{NEW}</a>' in dev


def test_a_soaking_stage_shows_the_time_left_and_counts_it_down_in_the_browser() -> None:
    staging = stage_card(path_pages.path_live(a_path(), NOW), "staging")
    assert "Soaking (Soaking)" not in staging  # the reason only when it says more
    countdown = re.search(r'<span class="countdown" data-until="([^"]+)">([^<]+)</span>', staging)
    assert countdown is not None
    assert countdown.groups() == ("2026-03-01T12:01:30Z", "90s")


def test_the_freight_history_says_which_stages_carry_each() -> None:
    html = path_pages.path_live(a_path(), NOW)
    rows = dict(re.findall(r'<tr data-freight="([^"]+)">.*?<td>([^<]*)</td></tr>', html))
    assert rows == {NEW: "dev", OLD: "staging"}


def test_the_stage_runs_are_listed_newest_first_and_linked() -> None:
    html = path_pages.path_live(a_path(), NOW)
    runs = re.search(r'<table class="runs">.*?</table>', html)
    assert runs is not None and f'href="/promotions/ml/iris-dev-{NEW}"' in runs.group(0)


def test_a_path_not_yet_worked_on_shows_its_stages_as_not_started() -> None:
    fresh = a_path()
    del fresh["status"]
    html = path_pages.path_live(fresh, NOW)
    assert html.count("not started") == 2
    assert 'class="freight"' not in html and 'class="runs"' not in html


def test_values_from_the_api_are_escaped() -> None:
    hostile = a_path(message="<script>alert(1)</script>")
    for html in (path_pages.path_page(hostile, NOW), path_pages.paths_live([hostile], NOW)):
        assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_the_path_page_streams_its_own_updates() -> None:
    html = path_pages.path_page(a_path(), NOW)
    assert 'data-stream="/stream/paths/ml/iris"' in html
    assert '<a href="/paths">PromotionPaths</a>' in html


def stage_forms(html: str, stage: str) -> list[str]:
    """The actions of ``stage``'s buttons, in order."""
    found = re.search(rf'<li data-stage="{stage}">(.*?)</li>', html)
    assert found is not None, html
    return re.findall(rf'action="/paths/ml/iris/stages/{stage}/(\w+)"', found.group(1))


def test_each_stage_has_hold_and_release_and_a_manual_one_promote() -> None:
    manual = a_path()
    manual["spec"]["stages"][1]["policy"] = "manual"
    html = path_pages.path_page(manual, NOW, "t0ken")

    assert stage_forms(html, "dev") == ["hold", "release"]
    assert stage_forms(html, "staging") == ["promote", "hold", "release"]
    assert html.count('name="csrf" value="t0ken"') == 5
    assert '<label for="reason-dev">Reason</label>' in html


def test_a_read_only_path_page_has_no_buttons() -> None:
    html = path_pages.path_page(a_path(), NOW)
    assert "<form" not in html and "stage-actions" not in html
