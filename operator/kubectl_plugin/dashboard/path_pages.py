"""The dashboard's PromotionPath pages: the paths the user can see, and one path's
stages side by side with their freight, built from the plugin's own view of a path
(:func:`~..paths.path_view`, what ``kubectl promotion path get`` prints).

Pure functions of the objects the watch delivered and ``now``, as :mod:`.pages`:
a static part, and a live part (``<div id="live">``) the server pushes again after
every change of the paths. A soak's remaining time counts down in the browser
(``data-until``), so it stays right between pushes without asking the server.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from promotion_operator.kubectl_plugin.dashboard import csrf
from promotion_operator.kubectl_plugin.dashboard.pages import (
    NONE,
    Said,
    Scope,
    document,
    promotion_path,
    said_notice,
    scope_text,
)
from promotion_operator.kubectl_plugin.paths import PathView, age_of, path_view, soak_left


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def path_url(namespace: str, name: str) -> str:
    return f"/paths/{quote(namespace, safe='')}/{quote(name, safe='')}"


def _phase_class(phase: str) -> str:
    return _e(phase.lower() or "none")


def _run_link(namespace: str, run: str) -> str:
    if not run:
        return NONE
    return f'<a href="{_e(promotion_path(namespace, run))}">{_e(run)}</a>'


# --- the list -------------------------------------------------------------------

PATHS_COLUMNS = ("Namespace", "Name", "Source", "Newest freight", "Stages", "Message")


def paths_page(
    paths: Sequence[Mapping[str, Any]], now: datetime.datetime, scope: Scope, error: str = ""
) -> str:
    body = (
        "<h1>PromotionPaths</h1>"
        f'<p class="scope">{_e(scope_text(scope))}</p>'
        f'<div id="live" aria-live="polite">{paths_live(paths, now, error)}</div>'
    )
    return document("PromotionPaths", body, "/stream/paths")


def paths_live(paths: Sequence[Mapping[str, Any]], now: datetime.datetime, error: str = "") -> str:
    """The list's live part: one row per path, its stages in order with their phase
    and freight."""
    views = sorted((path_view(p) for p in paths), key=lambda v: (v.namespace, v.name))
    alert = f'<p class="error" role="alert">{_e(error)}</p>' if error else ""
    if not views:
        return alert + '<p class="empty">No PromotionPaths to show.</p>'
    rows = []
    for view in views:
        stages = "".join(
            f'<li class="phase {_phase_class(s.phase)}" data-stage="{_e(s.name)}">'
            f"<strong>{_e(s.name)}</strong> {_e(s.phase or 'not started')}"
            + (f" <code>{_e(s.freight)}</code>" if s.freight else "")
            + "</li>"
            for s in view.stages
        )
        rows.append(
            f'<tr data-path="{_e(view.namespace)}/{_e(view.name)}">'
            f"<td>{_e(view.namespace)}</td>"
            f'<td><a href="{_e(path_url(view.namespace, view.name))}">{_e(view.name)}</a></td>'
            f"<td>{_e(view.source)}</td>"
            f"<td><code>{_e(view.newest_freight or NONE)}</code></td>"
            f'<td><ol class="stage-chain">{stages}</ol></td>'
            f"<td>{_e(view.message or NONE)}</td></tr>"
        )
    head = "".join(f'<th scope="col">{c}</th>' for c in PATHS_COLUMNS)
    return (
        alert + '<div class="scroll"><table class="paths"><caption>PromotionPaths, '
        f"{len(views)} shown</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


# --- one path -----------------------------------------------------------------------


def path_page(
    path: Mapping[str, Any],
    now: datetime.datetime,
    token: str | None = None,
    said: Said | None = None,
) -> str:
    """One path; ``token`` None (``--read-only``) shows no buttons."""
    view = path_view(path)
    url = path_url(view.namespace, view.name)
    buttons = "" if token is None else _stage_buttons(view, url, token)
    body = (
        f"<h1>{_e(view.namespace)}/{_e(view.name)}</h1>"
        f'<p class="scope">PromotionPath</p>{said_notice(said)}{buttons}'
        f'<div id="live" aria-live="polite">{path_live(path, now)}</div>'
    )
    return document(f"{view.namespace}/{view.name}", body, f"/stream{url}")


#: A stage's requests, as the buttons post them: action, label, what it does.
STAGE_ACTIONS = (
    ("promote", "Promote", "start the freight that waits at this manual stage"),
    ("hold", "Hold", "start no new run at this stage until it is released"),
    ("release", "Release", "release the hold: the stage starts what waits there"),
)


def _stage_buttons(view: PathView, url: str, token: str) -> str:
    """Per stage: promote (manual stages only), hold with a reason, release. Outside
    the live part, so a push never resets a reason being typed."""
    rows = []
    for stage in view.stages:
        forms = []
        for action, label, why in STAGE_ACTIONS:
            if action == "promote" and stage.policy != "manual":
                continue
            reason = ""
            if action == "hold":
                field_id = f"reason-{_e(stage.name)}"
                reason = (
                    f'<label for="{field_id}">Reason</label>'
                    f'<input id="{field_id}" name="reason" maxlength="200" '
                    'placeholder="e.g. INC-42">'
                )
            forms.append(
                f'<form method="post" action="{_e(url)}/stages/{_e(stage.name)}/{action}">'
                f'<input type="hidden" name="{csrf.FIELD}" value="{_e(token)}">{reason}'
                f'<button type="submit" class="{action}" title="{_e(why)}">{label} '
                f"{_e(stage.name)}</button></form>"
            )
        rows.append(f'<li data-stage="{_e(stage.name)}">{"".join(forms)}</li>')
    return (
        '<section class="actions" aria-label="Operate the stages">'
        f'<ul class="stage-actions">{"".join(rows)}</ul></section>'
    )


def path_live(path: Mapping[str, Any], now: datetime.datetime) -> str:
    """One path's live part: its source, its stages side by side, its freight and runs."""
    view = path_view(path)
    return "".join((_overview(view), _stages(view, now), _freight(view, now), _runs(view)))


def _dl(pairs: Iterable[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{v or NONE}</dd>" for k, v in pairs) + "</dl>"


def _overview(view: PathView) -> str:
    pairs = [
        ("Source", _e(f"{view.source} ({view.source_kind})")),
        ("Newest freight", f"<code>{_e(view.newest_freight)}</code>" if view.freight else ""),
        ("Message", _e(view.message)),
    ]
    return f'<section aria-labelledby="h-path"><h2 id="h-path">Overview</h2>{_dl(pairs)}</section>'


def _since(stamp: str, now: datetime.datetime) -> str:
    if not stamp:
        return ""
    return f'<time datetime="{_e(stamp)}">{_e(stamp)}</time> ({_e(age_of(stamp, now))} ago)'


def _stages(view: PathView, now: datetime.datetime) -> str:
    """The stages side by side, in the order freight moves through them."""
    cards = []
    for stage in view.stages:
        left = soak_left(stage, now)
        soaking = (
            f'<span class="countdown" data-until="{_e(stage.soak_until)}">{_e(left)}</span> '
            f"left (until {_e(stage.soak_until)})"
            if left
            else ""
        )
        phase = _e(stage.phase or "not started") + (
            f" ({_e(stage.reason)})" if stage.reason and stage.reason != stage.phase else ""
        )
        pairs = [
            ("Phase", phase),
            ("Freight", f"<code>{_e(stage.freight)}</code>" if stage.freight else ""),
            ("Promoted", f"<code>{_e(stage.promoted)}</code>" if stage.promoted else ""),
            ("Since", _since(stage.since, now)),
            ("Soak remaining", soaking),
            ("Run", _run_link(view.namespace, stage.run)),
            ("Policy", _e(stage.policy)),
            ("Soak", _e(stage.soak)),
            ("Message", _e(stage.message)),
        ]
        cards.append(
            f'<li class="stage {_phase_class(stage.phase)}" data-stage="{_e(stage.name)}" '
            f'data-phase="{_e(stage.phase)}" data-freight="{_e(stage.freight)}">'
            f"<h3>{_e(stage.name)}</h3>{_dl(pairs)}</li>"
        )
    return (
        '<section aria-labelledby="h-stages"><h2 id="h-stages">Stages</h2>'
        f'<ol class="stages">{"".join(cards)}</ol></section>'
    )


FREIGHT_COLUMNS = ("Freight", "Source generation", "Images", "Model URIs", "Discovered", "At")


def _freight(view: PathView, now: datetime.datetime) -> str:
    """The freight, newest first, and the stages whose target carries each."""
    if not view.freight:
        return ""
    rows = []
    for freight in view.freight:
        ident = str(freight.get("id") or "")
        carried = ", ".join(s.name for s in view.stages if s.promoted and s.promoted == ident)
        rows.append(
            f'<tr data-freight="{_e(ident)}"><td><code>{_e(ident)}</code></td>'
            f"<td>{_e(freight.get('sourceGeneration', NONE))}</td>"
            f"<td>{_e(_joined(freight.get('images')))}</td>"
            f"<td>{_e(_joined(freight.get('modelUris')))}</td>"
            f"<td>{_since(str(freight.get('discoveredAt') or ''), now) or NONE}</td>"
            f"<td>{_e(carried or NONE)}</td></tr>"
        )
    head = "".join(f'<th scope="col">{c}</th>' for c in FREIGHT_COLUMNS)
    return (
        '<section aria-labelledby="h-freight"><h2 id="h-freight">Freight</h2>'
        '<div class="scroll"><table class="freight"><caption>The versions of the source, '
        f"newest first, and the stages whose target carries each</caption><thead><tr>{head}"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _joined(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) and values else NONE


RUNS_COLUMNS = ("Stage", "Freight", "Run", "Phase", "Started", "Finished")


def _runs(view: PathView) -> str:
    """The path's latest stage runs, newest first, each linked to its promotion page."""
    if not view.history:
        return ""
    rows = "".join(
        f"<tr><td>{_e(h.get('stage'))}</td><td><code>{_e(h.get('freight'))}</code></td>"
        f"<td>{_run_link(view.namespace, str(h.get('run') or ''))}</td>"
        f'<td class="phase {_phase_class(str(h.get("phase") or ""))}">'
        f"{_e(h.get('phase') or NONE)}</td>"
        f"<td>{_e(h.get('startedAt') or NONE)}</td><td>{_e(h.get('finishedAt') or NONE)}</td>"
        "</tr>"
        for h in view.history
    )
    head = "".join(f'<th scope="col">{c}</th>' for c in RUNS_COLUMNS)
    return (
        '<section aria-labelledby="h-runs"><h2 id="h-runs">Stage runs</h2>'
        f'<div class="scroll"><table class="runs"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def path_not_found_page(namespace: str, name: str, message: str) -> str:
    body = (
        f"<h1>{_e(namespace)}/{_e(name)}</h1>"
        f'<p class="error" role="alert">{_e(message)}</p>'
        '<p><a href="/paths">All PromotionPaths</a></p>'
    )
    return document(f"{namespace}/{name}", body, None)
