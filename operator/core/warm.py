"""The warm copy: during a SeldonDeployment's bake, the previous version stays
deployed beside the promoted one, with no traffic.

With ``spec.bake`` (and ``bake.warm``, the default) on a SeldonDeployment that existed
before the run, the run's last write (Replace's one write, a canary's final one) also
carries the target's previous serving predictor under another name (``<name>-warm``),
at ``traffic: 0``, named by :data:`WARM_PREDICTOR_ANNOTATION`; the promoted predictor
takes 100. Both must have exactly one serving (non-shadow) predictor: otherwise which
one to keep, or to switch away from, cannot be told, and the write carries no copy.

A bake that fails rolls back through the strategy's ``undo`` (:func:`switch_back`):
first one write that gives the warm copy 100 and every other serving predictor 0,
nothing else changed, waited for until Available; then the shared phase restores the
previous spec, which has no warm copy. A bake that passes removes the copy with one
more write (:func:`without_warm`, from :mod:`baking`) before the run succeeds.

Each write is recognised on the target: a switch already there is waited for, not
written again; a target without the copy after a passed bake is the removal, adopted.
Models and Pipelines keep no warm copy (Seldon Core v2 has no traffic-0 copy of a
resource through the API).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from promotion_operator.core.kinds import readiness, ready_word
from promotion_operator.core.pass_io import Action, Context, Decision, Observed, Purpose
from promotion_operator.core.planning import strip_server_fields, written_by
from promotion_operator.core.promotion import ANNOTATION_PREFIX
from promotion_operator.core.run import ActionKind, Failure, PreviousTarget, Run
from promotion_operator.core.spec import Kind, PromotionSpec
from promotion_operator.core.transitions import backoff, deadline, decision, retry_or_fail

#: Names the predictor a write keeps warm (the previous version, at traffic 0).
WARM_PREDICTOR_ANNOTATION = f"{ANNOTATION_PREFIX}/warm-predictor"
WARM_SUFFIX = "warm"


def keeps_warm(spec: PromotionSpec, previous: PreviousTarget | None) -> bool:
    """Whether the last write of a run of ``spec`` may carry a warm copy of ``previous``."""
    bake = spec.bake
    return (
        bake is not None
        and bake.warm
        and spec.target.kind is Kind.SELDON_DEPLOYMENT
        and previous is not None
        and previous.existed
        and previous.deployment is not None
    )


def with_warm(
    spec: PromotionSpec, previous: PreviousTarget | None, body: Mapping[str, Any]
) -> dict[str, Any]:
    """``body`` (the last write) with the previous serving predictor kept warm beside
    its promoted one, or a copy of ``body`` alone when none is kept."""
    result = copy.deepcopy(dict(body))
    if not keeps_warm(spec, previous):
        return result
    assert previous is not None and previous.deployment is not None
    old, new = _serving(previous.deployment), _serving(result)
    if len(old) != 1 or len(new) != 1:
        return result  # which predictor to keep (or to switch from) cannot be told
    predictors = result.setdefault("spec", {}).setdefault("predictors", [])
    warm = copy.deepcopy(old[0])
    name = warm_name(str(warm.get("name")), {str(p.get("name")) for p in predictors})
    warm["name"] = name
    warm["traffic"] = 0
    warm.pop("shadow", None)
    new[0]["traffic"] = 100
    predictors.append(warm)
    metadata = result.setdefault("metadata", {})
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        WARM_PREDICTOR_ANNOTATION: name,
    }
    return result


def warm_name(previous: str, taken: set[str]) -> str:
    """``<previous>-warm``, or ``-warm-2`` ... when the promoted spec has that name."""
    name, n = f"{previous}-{WARM_SUFFIX}", 2
    while name in taken:
        name, n = f"{previous}-{WARM_SUFFIX}-{n}", n + 1
    return name


def warm_predictor(target: Mapping[str, Any] | None) -> str | None:
    """The warm copy's name on ``target``: named by the annotation and there."""
    if target is None:
        return None
    name = ((target.get("metadata") or {}).get("annotations") or {}).get(WARM_PREDICTOR_ANNOTATION)
    if not name or not any(p.get("name") == name for p in _predictors(target)):
        return None
    return str(name)


def switched(target: Mapping[str, Any], name: str) -> bool:
    """Whether the warm copy ``name`` serves all the traffic of ``target`` (the switch)."""
    return all(
        p.get("traffic", 0) == (100 if p.get("name") == name else 0) for p in _serving(target)
    )


def switched_to_warm(target: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``target`` with the warm copy ``name`` at 100 and every other serving predictor at
    0; nothing else changed."""
    body = strip_server_fields(target)
    for predictor in _serving(body):
        predictor["traffic"] = 100 if predictor.get("name") == name else 0
    return body


def without_warm(target: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``target`` without its warm copy ``name`` (the promoted spec alone, at 100)."""
    body = strip_server_fields(target)
    annotations = body["metadata"].get("annotations") or {}
    annotations.pop(WARM_PREDICTOR_ANNOTATION, None)
    spec = body.setdefault("spec", {})
    spec["predictors"] = [p for p in _predictors(body) if p.get("name") != name]
    serving = _serving(body)
    if len(serving) == 1:
        serving[0]["traffic"] = 100
    return body


def switch_back(ctx: Context, run: Run, observed: Observed, message: str) -> Decision | None:
    """A rollback's first call when the bake kept the previous version warm: the switch
    of the traffic to it, then the wait until the switch is Available. None when there
    is no warm copy to switch to, or once the switch is done (or failed, or out of time):
    the shared phase restores the previous spec next."""
    target = observed.target
    bake = run.bake
    if bake is None or not bake.warm or target is None:
        return None
    name = warm_predictor(target)
    if name != bake.warm or not written_by(target, ctx.promotion):
        return None
    described = ctx.spec.target.described
    if ctx.now >= deadline(ctx, run):
        return None  # no time left to wait for a switch: restore at once
    if not switched(target, name):
        switch = Action(ActionKind.UPDATE, switched_to_warm(target, name), message, Purpose.SWITCH)
        return decision(
            ctx,
            run,
            f"switching the traffic of {described} to its warm predictor {name!r} "
            "(the previous version)",
            switch,
        )
    seen = readiness(ctx.spec.target.kind, target)
    generation = (target.get("metadata") or {}).get("generation")
    current = generation is None or (
        seen.observed_generation is not None and seen.observed_generation >= int(generation)
    )
    if current and (seen.ready or seen.failed):
        return None
    waiting = (
        f"switched the traffic of {described} to its warm predictor {name!r}; waiting for it "
        f"to become {ready_word(ctx.spec.target.kind)} before restoring the previous spec"
    )
    return decision(ctx, run, waiting, None, backoff(ctx, run.phase_since, poll=True))


def warm_done(
    ctx: Context,
    run: Run,
    action: Action,
    result: Mapping[str, Any] | None,
    failure: Failure | None,
) -> Decision | None:
    """After a write of the warm copy's (the switch, or its removal after a passed bake);
    None for any other action."""
    described = ctx.spec.target.described
    if action.purpose is Purpose.SWITCH:
        if failure is not None and failure.retryable and ctx.now < deadline(ctx, run):
            return retry_or_fail(ctx, run, failure)
        if failure is not None:
            # A switch that cannot be made: restore the previous spec without it.
            assert run.bake is not None
            run = replace(run, bake=replace(run.bake, warm=""))
            message = (
                f"the switch to the warm predictor failed ({failure.reason}: "
                f"{failure.message}); restoring the previous spec of {described}"
            )
            return decision(ctx, run, message, None, 0.0)
        return decision(
            ctx, run, "rolling back: waiting for the switch to the warm copy", None, 0.0
        )
    if action.purpose is Purpose.DROP_WARM:
        if failure is not None:
            return retry_or_fail(ctx, run, failure)
        generation = ((result or {}).get("metadata") or {}).get("generation")
        run = replace(
            run,
            applied_generation=int(generation) if generation is not None else None,
            applied_at=ctx.now,
        )
        message = (
            f"removed the warm predictor from {described}; waiting for it to become "
            f"{ready_word(ctx.spec.target.kind)}"
        )
        return decision(ctx, run, message, None, backoff(ctx, ctx.now, poll=True))
    return None


def _predictors(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    predictors: list[dict[str, Any]] = (deployment.get("spec") or {}).get("predictors") or []
    return predictors


def _serving(deployment: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _predictors(deployment) if not p.get("shadow")]
