"""The strategies, one module each, and :func:`strategy_for`, the one place that
picks a strategy (and what the target's kind brings along) from the spec."""

from __future__ import annotations

from promotion_operator.core.kinds import KINDS
from promotion_operator.core.spec import PromotionSpec, Strategy
from promotion_operator.core.strategies.experiment_canary import ExperimentCanary
from promotion_operator.core.strategies.predictor_canary import PredictorCanary
from promotion_operator.core.strategies.replace import Replace
from promotion_operator.core.strategy import PromotionStrategy


def strategy_for(spec: PromotionSpec) -> PromotionStrategy:
    """The strategy ``spec`` asks for, for its target's kind."""
    pipeline = KINDS[spec.target.kind].brings_models
    # A Pipeline's canary runs beside it, through an experiment; a SeldonDeployment's
    # is a predictor on it. Either is also what Replace removes when an earlier run left it.
    canary = ExperimentCanary() if pipeline else PredictorCanary()
    if spec.strategy is Strategy.CANARY:
        return canary
    return Replace(earlier=canary, models=pipeline)
