"""The Replace strategy: the promoted spec in one write (a Pipeline's Models first).

It plans the Models a Pipeline brings (and removes a canary an earlier run of this
ModelPromotion left), writes them and then the target once the shared phase found
the validated plan still the plan (with a bake, a SeldonDeployment's write keeps the
previous version warm beside the promoted one: :mod:`~promotion_operator.core.warm`),
and undoes only that warm copy's part (the switch of the traffic back to it):
verification and the rollback's restore are the shared phases'.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from promotion_operator.core.pass_io import (
    Action,
    Answer,
    Beside,
    Context,
    Decision,
    Effects,
    Observed,
)
from promotion_operator.core.pipeline_models import (
    describe_models,
    read_models,
    with_models,
    write_models,
)
from promotion_operator.core.planning import plan_promotion
from promotion_operator.core.run import Failure, Phase, PreviousTarget, Run
from promotion_operator.core.strategy import Cleared, Planned
from promotion_operator.core.transitions import decision, write_message
from promotion_operator.core.warm import switch_back, warm_done, with_warm


class EarlierCanary(Protocol):
    """The canary strategy of the target's kind, whose leftovers a run removes first."""

    def read_earlier(self, ctx: Context, run: Run, effects: Effects) -> tuple[Answer, Answer]: ...

    def clear_earlier(self, ctx: Context, run: Run, observed: Observed) -> Cleared: ...


@dataclass(frozen=True)
class Replace:
    """The promoted spec in one write (see the module's docstring)."""

    earlier: EarlierCanary
    models: bool = False  # the target is a Pipeline: its Models come first

    def read(self, ctx: Context, run: Run, source: Answer, effects: Effects) -> Beside:
        source_models, models = (
            read_models(ctx, run, source, effects) if self.models else (None, {})
        )
        canary, experiment = self.earlier.read_earlier(ctx, run, effects)
        return Beside(source_models, models, canary, experiment)

    def clear(self, ctx: Context, run: Run, observed: Observed) -> Cleared:
        return self.earlier.clear_earlier(ctx, run, observed)

    def plan(
        self, ctx: Context, run: Run, observed: Observed, previous: PreviousTarget
    ) -> Planned | Failure:
        assert observed.source is not None
        plan = plan_promotion(observed.source, ctx.spec, ctx.promotion)
        if not self.models:
            # What is validated is what is written: with a warm copy, if the bake keeps one.
            return Planned(plan, (), with_warm(ctx.spec, previous, plan.deployment), ())
        planned = with_models(ctx, run, plan, observed)
        if isinstance(planned, Failure):
            return planned
        plan, models = planned
        if not models:
            return Planned(plan, models, plan.deployment, ())
        last = f"{'update' if previous.existed else 'create'} {ctx.spec.target.described}"
        return Planned(plan, models, plan.deployment, (*describe_models(ctx, models), last))

    def summary(self, ctx: Context, run: Run) -> str | Failure:
        assert run.plan is not None
        return f"{run.plan.action.lower()} {ctx.spec.target.described} from {ctx.spec.origin}"

    def start(self, ctx: Context, run: Run, done: str) -> Decision:
        # Record the validated plan and the previous target before the write happens.
        return decision(ctx, run.moved_to(Phase.PROMOTING, ctx.now), done, None, 0.0)

    def write(self, ctx: Context, run: Run, planned: Planned, observed: Observed) -> Decision:
        assert run.plan is not None
        before = write_models(ctx, run, planned.models, observed) if planned.models else None
        if before is not None:
            return before  # a Pipeline's Models first
        action = run.plan.action
        body = with_warm(ctx.spec, run.previous, planned.plan.deployment)
        write = Action(action, body, write_message(ctx))
        return decision(
            ctx, run, f"{action.lower()} of {ctx.spec.target.described} in flight", write
        )

    def proceed(self, ctx: Context, run: Run, observed: Observed) -> Decision | None:
        return None  # its one write comes once the shared phase checked the plan

    def done(
        self,
        ctx: Context,
        run: Run,
        action: Action,
        result: Mapping[str, Any] | None,
        failure: Failure | None,
    ) -> Decision | None:
        return warm_done(ctx, run, action, result, failure)  # the warm copy's writes

    def verified(self, ctx: Context, run: Run, ready: str) -> Decision | None:
        return None

    def in_place(self, ctx: Context, observed: Observed) -> bool:
        return False

    def undo(self, ctx: Context, run: Run, observed: Observed, message: str) -> Decision | None:
        # A bake's warm copy takes the traffic back first; the shared phase restores next.
        return switch_back(ctx, run, observed, message)
