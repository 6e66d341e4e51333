"""The two experiments a Pipeline canary runs on the target Pipeline, one type each.

:class:`CanaryRole` sends a share of the target's traffic to the Pipeline
``<target>-canary`` (``POST .../experiment/canary?weight=``); :class:`ShadowRole`
mirrors all of it to ``<target>-shadow`` (``POST .../experiment/shadow``), whose
answers no caller sees. Each knows its candidate Pipeline's name, how its experiment
is told apart in a ``GET .../experiment`` (by its spec: a candidate named
``<target>-canary``, or a ``mirror`` named ``<target>-shadow``), whether the
experiment already does what a step wants, and the actions that start, promote and
remove it (an :class:`~promotion_operator.core.run.Experiment` on the action tells the
runner which calls to make). :func:`role_at` picks the one a step's candidate plays:
that of the last write step up to it (:class:`~promotion_operator.core.canary_steps.Shadow`
or :class:`~promotion_operator.core.canary_steps.SetWeight`). A Pipeline has one
experiment at a time, so a run that goes from its shadow to a weight removes the one
before starting the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, assert_never

from promotion_operator.core.canary_steps import CanaryStep, SetWeight, Shadow, WriteStep
from promotion_operator.core.pass_io import Action, Purpose
from promotion_operator.core.run import ActionKind, Experiment


@dataclass(frozen=True)
class _Role:
    """What the two experiments share: the candidate's name, promoting and removing."""

    experiment: ClassVar[Experiment]
    label: ClassVar[str]  # as messages name the role and its candidate: "the shadow ..."

    def candidate(self, target: str) -> str:
        """The name of the Pipeline carrying the promoted spec beside ``target``."""
        return f"{target}-{self.experiment}"

    def promote(self, message: str) -> Action:
        """``PUT .../experiment/<role>``: the target takes the candidate's spec, labels and
        annotations; the experiment and the candidate go."""
        return Action(ActionKind.PROMOTE, None, message, experiment=self.experiment)

    def remove(self, message: str, purpose: Purpose) -> Action:
        """``DELETE .../experiment/<role>``: the experiment and the candidate go."""
        return Action(ActionKind.REMOVE, None, message, purpose, experiment=self.experiment)


@dataclass(frozen=True)
class CanaryRole(_Role):
    """The canary experiment: ``weight`` percent of the traffic to ``<target>-canary``."""

    experiment: ClassVar[Experiment] = Experiment.CANARY
    label: ClassVar[str] = "canary"

    def holds(self, experiment: Mapping[str, Any] | None, target: str) -> bool:
        """Whether ``experiment`` (the target's, as read) is this role's: one of its
        candidates is the canary Pipeline."""
        return any(
            isinstance(entry, Mapping) and entry.get("name") == self.candidate(target)
            for entry in _spec(experiment).get("candidates") or ()
        )

    def started(self, experiment: Mapping[str, Any] | None, target: str, weight: int) -> bool:
        """Whether ``experiment`` already sends ``weight`` percent to the canary."""
        return experiment_weight(experiment, self.candidate(target)) == weight

    def start(self, message: str, weight: int) -> Action:
        """``POST .../experiment/canary?weight=``: create the experiment, or re-weight it."""
        return Action(
            ActionKind.SET_WEIGHT, None, message, weight=weight, experiment=self.experiment
        )

    def says(self, target: str, candidate: str, weight: int) -> str:
        """What the experiment does once started, for messages."""
        return f"the experiment on {target} sends {weight}% to {candidate}"


@dataclass(frozen=True)
class ShadowRole(_Role):
    """The shadow experiment: a copy of all the traffic to ``<target>-shadow``."""

    experiment: ClassVar[Experiment] = Experiment.SHADOW
    label: ClassVar[str] = "shadow"

    def holds(self, experiment: Mapping[str, Any] | None, target: str) -> bool:
        """Whether ``experiment`` is this role's: its mirror is the shadow Pipeline."""
        mirror = _spec(experiment).get("mirror")
        return isinstance(mirror, Mapping) and mirror.get("name") == self.candidate(target)

    def started(self, experiment: Mapping[str, Any] | None, target: str, weight: int) -> bool:
        """Whether ``experiment`` already mirrors the traffic (a shadow has no weight)."""
        return self.holds(experiment, target)

    def start(self, message: str, weight: int) -> Action:
        """``POST .../experiment/shadow``: create the experiment."""
        return Action(ActionKind.MIRROR, None, message, experiment=self.experiment)

    def says(self, target: str, candidate: str, weight: int) -> str:
        return f"the experiment on {target} mirrors its traffic to {candidate}"


ExperimentRole = CanaryRole | ShadowRole
CANARY = CanaryRole()
SHADOW = ShadowRole()
#: Every role, in the order a run that has none in mind looks for their candidates.
ROLES: tuple[ExperimentRole, ...] = (CANARY, SHADOW)


def role_of(step: WriteStep) -> ExperimentRole:
    """The experiment a write step starts."""
    match step:
        case Shadow():
            return SHADOW
        case SetWeight():
            return CANARY
        case _:
            assert_never(step)


def role_at(steps: Sequence[CanaryStep], index: int) -> ExperimentRole:
    """The experiment whose candidate step ``index`` works with (``len(steps)``: the one
    the promotion promotes): that of the last write step up to it."""
    return roles_until(steps, index)[0]


def roles_until(steps: Sequence[CanaryStep], index: int) -> tuple[ExperimentRole, ...]:
    """The experiments the steps up to ``index`` start, the latest first (the canary's
    alone before any step)."""
    roles: list[ExperimentRole] = []
    for step in reversed(steps[: index + 1]):
        if isinstance(step, WriteStep) and role_of(step) not in roles:
            roles.append(role_of(step))
    return tuple(roles) or (CANARY,)


def role_held(experiment: Mapping[str, Any] | None, target: str) -> ExperimentRole | None:
    """The role whose experiment ``experiment`` (the target's, as read) is; None for none,
    or an experiment of another sort."""
    return next((role for role in ROLES if role.holds(experiment, target)), None)


def role_for(experiment: Experiment) -> ExperimentRole:
    """The role of an action's :class:`~promotion_operator.core.run.Experiment`."""
    return next(role for role in ROLES if role.experiment == experiment)


def role_named(pipeline: str, target: str) -> ExperimentRole | None:
    """The role whose candidate beside ``target`` is the Pipeline ``pipeline``."""
    return next((role for role in ROLES if role.candidate(target) == pipeline), None)


def experiment_weight(experiment: Mapping[str, Any] | None, candidate: str) -> int:
    """The weight an experiment gives ``candidate`` (0 without one)."""
    for entry in _spec(experiment).get("candidates") or ():
        if isinstance(entry, Mapping) and entry.get("name") == candidate:
            weight = entry.get("weight")
            return weight if isinstance(weight, int) else 0
    return 0


def _spec(experiment: Mapping[str, Any] | None) -> Mapping[str, Any]:
    spec = (experiment or {}).get("spec")
    return spec if isinstance(spec, Mapping) else {}
