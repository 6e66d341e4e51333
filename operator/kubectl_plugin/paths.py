"""PromotionPaths in the plugin: the view of a path (its stages side by side with their
freight) and the decision to promote a manual stage.

The plugin imports nothing of the operator, so the names it shares with it (the
promotion annotation, the phase a manual stage waits in) are spelled here; a unit
test checks that they are the core's.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promotion_operator.kubectl_plugin.render import age
from promotion_operator.kubectl_plugin.resource import GROUP, ExitCode

PATH_PLURAL = "promotionpaths"
#: The annotation with which a person promotes a manual stage (its value: a freight ID).
PROMOTE_PREFIX = f"{GROUP}/promote-"
#: The stage phases a person's promotion applies to: soaked and waiting, or still soaking
#: (the promotion then takes effect when the soak ends).
PROMOTABLE = frozenset({"WaitingForPromotion", "Soaking"})


@dataclass(frozen=True)
class PromoteDecision:
    """What ``path promote`` does: the annotations to write (None: nothing), the message
    and the exit code."""

    annotations: Mapping[str, str] | None
    message: str
    exit_code: ExitCode


def decide_promote(path: Mapping[str, Any], stage: str) -> PromoteDecision:
    """Promote the freight that waits at ``stage`` of ``path``, if a person may now."""
    stages = {s.get("name"): s for s in (path.get("spec") or {}).get("stages") or ()}
    if stage not in stages:
        known = ", ".join(str(name) for name in stages) or "none"
        return PromoteDecision(
            None, f"no stage {stage!r} (the stages: {known})", ExitCode.NOT_FOUND
        )
    if (stages[stage].get("policy") or "auto") != "manual":
        return PromoteDecision(
            None, f"stage {stage} promotes by itself (policy auto)", ExitCode.ERROR
        )
    shown = {s.get("name"): s for s in (path.get("status") or {}).get("stages") or ()}
    current = shown.get(stage) or {}
    freight = str(current.get("freight") or "")
    phase = str(current.get("phase") or "")
    annotation = f"{PROMOTE_PREFIX}{stage}"
    if phase not in PROMOTABLE or not freight:
        return PromoteDecision(
            None,
            f"no freight waits at stage {stage} (it is {phase or 'not started'})",
            ExitCode.ERROR,
        )
    annotations = (path.get("metadata") or {}).get("annotations") or {}
    if annotations.get(annotation) == freight:
        return PromoteDecision(
            None, f"freight {freight} is already promoted to stage {stage}", ExitCode.SUCCEEDED
        )
    return PromoteDecision(
        {annotation: freight}, f"freight {freight} promoted to stage {stage}", ExitCode.SUCCEEDED
    )


def render_path(path: Mapping[str, Any], now: datetime.datetime) -> str:
    """The path as a person reads it: its source and newest freight, then one line per
    stage (policy, soak, phase, the freight it works on and the one it carries)."""
    metadata = path.get("metadata") or {}
    spec = path.get("spec") or {}
    status = path.get("status") or {}
    source = spec.get("source") or {}
    freight = status.get("freight") or []
    lines = [
        f"Name:       {metadata.get('namespace')}/{metadata.get('name')}",
        f"Source:     {source.get('namespace')}/{source.get('name')}"
        f" ({source.get('kind') or 'SeldonDeployment'})",
        f"Freight:    {', '.join(str(f.get('id')) for f in freight[:5]) or '-'}",
    ]
    if status.get("message"):
        lines.append(f"Message:    {status['message']}")
    shown = {s.get("name"): s for s in status.get("stages") or ()}
    rows = [("STAGE", "POLICY", "SOAK", "PHASE", "FREIGHT", "PROMOTED", "SINCE", "RUN")]
    for stage in spec.get("stages") or ():
        current = shown.get(stage.get("name")) or {}
        rows.append(
            (
                str(stage.get("name")),
                str(stage.get("policy") or "auto"),
                str(stage.get("soak") or "0s"),
                str(current.get("phase") or "-"),
                str(current.get("freight") or "-"),
                str(current.get("promoted") or "-"),
                _age(current.get("since"), now),
                str(current.get("run") or "-"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    messages = [
        f"  {s.get('name')}: {s.get('message')}"
        for s in status.get("stages") or ()
        if s.get("message")
    ]
    if messages:
        lines += ["", "Messages:", *messages]
    return "\n".join(lines)


def _age(stamp: Any, now: datetime.datetime) -> str:
    if not isinstance(stamp, str):
        return "-"
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return age(moment, now)
