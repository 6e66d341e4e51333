"""What a strategy is to the shared phases: the one interface through which
:mod:`machine` plans, starts, runs, verifies and undoes a promotion, whatever the
strategy. :func:`~promotion_operator.core.strategies.strategy_for` picks the one a
spec asks for; the strategies are in :mod:`promotion_operator.core.strategies`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from promotion_operator.core.pass_io import (
    Action,
    Answer,
    Beside,
    Context,
    Decision,
    Effects,
    Observed,
)
from promotion_operator.core.pipeline_models import PlannedModel
from promotion_operator.core.planning import Plan
from promotion_operator.core.run import Failure, PreviousTarget, Run


class Cleared(NamedTuple):
    """Before planning: a decision that comes first (a refusal, the removal of what an
    earlier run left), or the target to plan against."""

    decision: Decision | None
    target: Mapping[str, Any] | None


class Planned(NamedTuple):
    """What a strategy plans: the plan, the Models a Pipeline brings, the body Seldon
    Deploy validates, and the writes and waits for ``status.plan.steps``."""

    plan: Plan
    models: tuple[PlannedModel, ...]
    checked: Mapping[str, Any]
    steps: tuple[str, ...]


class PromotionStrategy(Protocol):
    """How one strategy promotes: what it reads, plans, writes, waits for and undoes."""

    def read(self, ctx: Context, run: Run, source: Answer, effects: Effects) -> Beside:
        """What the pass reads beside the source and the target."""
        ...

    def clear(self, ctx: Context, run: Run, observed: Observed) -> Cleared:
        """What comes before planning: a refusal, or removing an earlier run's canary."""
        ...

    def plan(
        self, ctx: Context, run: Run, observed: Observed, previous: PreviousTarget
    ) -> Planned | Failure:
        """The plan, or a retryable failure; raises PlanningError for a spec that cannot be."""
        ...

    def summary(self, ctx: Context, run: Run) -> str | Failure:
        """What the validated plan will do (for messages), or why it must not start."""
        ...

    def start(self, ctx: Context, run: Run, done: str) -> Decision:
        """After validation (and approval): record the plan; the writes come next."""
        ...

    def write(self, ctx: Context, run: Run, planned: Planned, observed: Observed) -> Decision:
        """The validated plan, still the plan once the run is Promoting: its write."""
        ...

    def proceed(self, ctx: Context, run: Run, observed: Observed) -> Decision | None:
        """A pass of the strategy's own (its writes, its waits); None in the shared phases."""
        ...

    def done(
        self,
        ctx: Context,
        run: Run,
        action: Action,
        result: Mapping[str, Any] | None,
        failure: Failure | None,
    ) -> Decision | None:
        """After an action of the strategy's own (``result``: what it wrote, or
        ``failure``); None for the shared writes of the target."""
        ...

    def verified(self, ctx: Context, run: Run, ready: str) -> Decision | None:
        """The target is ``ready`` with the latest write: what comes next; None: done."""
        ...

    def in_place(self, ctx: Context, observed: Observed) -> bool:
        """Whether something this run wrote beside the target is there (an abort undoes it)."""
        ...

    def undo(self, ctx: Context, run: Run, observed: Observed, message: str) -> Decision | None:
        """The rollback's next call on what the strategy wrote beside the target (or, with a
        bake's warm copy, the switch of the traffic back to it), before the target is
        restored; None once nothing of it is left."""
        ...
