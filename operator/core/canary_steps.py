"""The steps of a canary, one type per kind of step.

A canary step is exactly one of :class:`Shadow`, :class:`SetWeight`,
:class:`Analysis` or :class:`Pause` (as the CRD admits exactly one key per ``spec.canary.steps``
entry). Each type owns what does not depend on the strategy: how it is read from
its CRD entry, what :func:`check_steps` refuses, how a dry run and the messages
name it, how entering it moves the run (the phase and when to come back), how
long it may take, and what weight it leaves on the target. How a strategy writes
a weight is the strategy's (:class:`WriteLines` for its dry-run lines); measuring
and pausing are :mod:`canary_stepping`'s.

A new kind of step is a new type here, added to :data:`WriteStep` or
:data:`WaitStep` and to :data:`STEP_KINDS`; mypy then points at what must handle
it: a wait's case in :func:`canary_stepping.step_pass`, or a write's line in each
strategy's :class:`WriteLines` (and its body in the strategy's write).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple, Protocol

from promotion_operator.core.comparisons import Comparison
from promotion_operator.core.durations import NEVER, parse_duration
from promotion_operator.core.promotion import ANNOTATION_PREFIX
from promotion_operator.core.requests import RESUME_ANNOTATION
from promotion_operator.core.run import CanaryState, Phase, TemplateProgress, format_time

DEFAULT_INTERVAL = "30s"
#: On a canary's write: the index of the step it belongs to (``len(steps)``: the last).
CANARY_STEP_ANNOTATION = f"{ANNOTATION_PREFIX}/canary-step"


@dataclass(frozen=True)
class AnalysisTemplate:
    """A PromQL query measured repeatedly: its one number must lie within [min, max],
    or (``compare``) the challenger's answer is judged against the champion's."""

    name: str
    query: str
    min: float | None = None
    max: float | None = None
    interval: str = DEFAULT_INTERVAL  # as written: it also fills the {{interval}} placeholder
    count: int = 1
    failure_limit: int = 0
    compare: Comparison | None = None

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


Templates = Mapping[str, AnalysisTemplate]


def scheduled(
    names: Sequence[str], templates: Templates, now: datetime.datetime
) -> tuple[TemplateProgress, ...]:
    """The progress of templates ``names`` as their measuring starts at ``now``: none
    taken, each first due one interval later."""
    return tuple(
        TemplateProgress(name, now + datetime.timedelta(seconds=templates[name].interval_seconds))
        for name in names
    )


class Entered(NamedTuple):
    """Where entering a step leaves the run: its phase, its canary state, when to come
    back (None: when a person acts, polled), and what the message adds to its name."""

    phase: Phase
    canary: CanaryState
    requeue_after: float | None
    note: str = ""


class WriteLines(Protocol):
    """How a strategy describes, for a dry run, the writes of the steps that write."""

    def set_weight(self, index: int, step: SetWeight) -> str: ...

    def shadow(self, index: int, step: Shadow) -> str: ...


@dataclass(frozen=True)
class Shadow:
    """Give the challenger (the promoted spec) a copy of the target's live traffic,
    whose answers no caller sees; the analysis steps after it judge it against the
    champion. It comes before any setWeight."""

    key: ClassVar[str] = "shadow"
    writes: ClassVar[bool] = True
    measures: ClassVar[bool] = False

    @classmethod
    def parse(cls, entry: Any) -> Shadow:
        return cls()

    def problem(self, index: int, templates: Templates) -> str | None:
        return None  # where it may stand is check_steps'

    @property
    def what(self) -> str:
        return "challenger in shadow"

    def describe(self, index: int, lines: WriteLines) -> str:
        return lines.shadow(index, self)

    def leaves(self, weight: int) -> int:
        return 0  # a copy of the traffic, none of its own

    def enter(self, canary: CanaryState, now: datetime.datetime, templates: Templates) -> Entered:
        return Entered(Phase.PROMOTING, canary, 0.0)  # the write comes on the next pass

    def deadline(
        self, canary: CanaryState, timeout: datetime.timedelta, templates: Templates
    ) -> datetime.datetime:
        return canary.step_started_at + timeout


@dataclass(frozen=True)
class SetWeight:
    """Send ``weight`` percent of the traffic to the canary (the rest to the stable one)."""

    weight: int

    key: ClassVar[str] = "setWeight"
    writes: ClassVar[bool] = True  # the target carries this step's write
    measures: ClassVar[bool] = False

    @classmethod
    def parse(cls, entry: Any) -> SetWeight:
        return cls(int(entry))

    def problem(self, index: int, templates: Templates) -> str | None:
        if not 0 < self.weight < 100:
            return f"spec.canary.steps[{index}].setWeight must be 1..99"
        return None

    @property
    def what(self) -> str:
        return f"canary at {self.weight}%"

    def describe(self, index: int, lines: WriteLines) -> str:
        return lines.set_weight(index, self)

    def leaves(self, weight: int) -> int:
        return self.weight

    def enter(self, canary: CanaryState, now: datetime.datetime, templates: Templates) -> Entered:
        # The write comes on the next pass, recorded as Promoting first.
        return Entered(Phase.PROMOTING, canary, 0.0)

    def deadline(
        self, canary: CanaryState, timeout: datetime.timedelta, templates: Templates
    ) -> datetime.datetime:
        return canary.step_started_at + timeout


@dataclass(frozen=True)
class Analysis:
    """Measure ``templates`` until each has its count of measurements, or one fails."""

    templates: tuple[str, ...]

    key: ClassVar[str] = "analysis"
    writes: ClassVar[bool] = False
    measures: ClassVar[bool] = True  # needs Prometheus

    @classmethod
    def parse(cls, entry: Any) -> Analysis:
        return cls(tuple((entry or {}).get("templates") or ()))

    def problem(self, index: int, templates: Templates) -> str | None:
        unknown = [name for name in self.templates if name not in templates]
        if unknown:
            return (
                f"spec.canary.steps[{index}].analysis names templates that "
                f"spec.analysis.templates does not define: {', '.join(unknown)}"
            )
        return None

    @property
    def what(self) -> str:
        return f"analysis {', '.join(self.templates)}"

    def describe(self, index: int, lines: WriteLines) -> str:
        return f"{index}: {self.what}"

    def leaves(self, weight: int) -> int:
        return weight

    def enter(self, canary: CanaryState, now: datetime.datetime, templates: Templates) -> Entered:
        progress = scheduled(self.templates, templates, now)
        first = min(p.due_at for p in progress)
        canary = replace(canary, analysis=progress)
        return Entered(Phase.ANALYZING, canary, (first - now).total_seconds())

    def seconds(self, templates: Templates) -> float:
        """How long the analysis takes when every measurement answers."""
        return max(
            templates[name].interval_seconds * templates[name].count for name in self.templates
        )

    def deadline(
        self, canary: CanaryState, timeout: datetime.timedelta, templates: Templates
    ) -> datetime.datetime:
        expected = datetime.timedelta(seconds=self.seconds(templates))
        return canary.step_started_at + expected + timeout


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds``, or (None) until a person resumes the canary."""

    seconds: float | None = None

    key: ClassVar[str] = "pause"
    writes: ClassVar[bool] = False
    measures: ClassVar[bool] = False

    @classmethod
    def parse(cls, entry: Any) -> Pause:
        duration = (entry or {}).get("duration")
        return cls(parse_duration(duration) if duration else None)

    def problem(self, index: int, templates: Templates) -> str | None:
        return None

    @property
    def what(self) -> str:
        return "pause until resumed" if self.seconds is None else f"pause {self.seconds:g}s"

    def describe(self, index: int, lines: WriteLines) -> str:
        if self.seconds is None:
            return f"{index}: pause until resumed ({RESUME_ANNOTATION}=true)"
        return f"{index}: {self.what}"

    def leaves(self, weight: int) -> int:
        return weight

    def enter(self, canary: CanaryState, now: datetime.datetime, templates: Templates) -> Entered:
        if self.seconds is None:
            return Entered(Phase.PAUSED, canary, None)
        until = now + datetime.timedelta(seconds=self.seconds)
        canary = replace(canary, pause_until=until)
        return Entered(Phase.PAUSED, canary, self.seconds, f" until {format_time(until)}")

    def deadline(
        self, canary: CanaryState, timeout: datetime.timedelta, templates: Templates
    ) -> datetime.datetime:
        return canary.pause_until or canary.step_started_at + NEVER


#: The steps whose pass is a write (the strategy's), and those whose pass is a wait
#: (:func:`canary_stepping.step_pass` measures or pauses).
WriteStep = Shadow | SetWeight
WaitStep = Analysis | Pause
CanaryStep = WriteStep | WaitStep

#: How each kind is read from its ``spec.canary.steps`` entry, by its CRD key.
STEP_KINDS: Mapping[str, Callable[[Any], CanaryStep]] = {
    kind.key: kind.parse for kind in (Shadow, SetWeight, Analysis, Pause)
}


def parse_step(entry: Mapping[str, Any]) -> CanaryStep:
    """The step a ``spec.canary.steps`` entry (exactly one key, as the CRD admits) is."""
    # An entry with no known key (an older CRD let it through) has always read as a pause.
    key = next((key for key in STEP_KINDS if key in entry), Pause.key)
    return STEP_KINDS[key](entry.get(key))


def check_steps(steps: Sequence[CanaryStep], templates: Templates) -> str | None:
    """What is wrong with steps the admission rules should have refused (an older CRD,
    say), or None."""
    if not steps or not isinstance(steps[0], WriteStep):
        return "spec.canary.steps must start with a setWeight or shadow step"
    shadows = [index for index, step in enumerate(steps) if isinstance(step, Shadow)]
    weights = [index for index, step in enumerate(steps) if isinstance(step, SetWeight)]
    if len(shadows) > 1:
        return "spec.canary.steps may have one shadow step"
    if shadows and weights and weights[0] < shadows[0]:
        return "spec.canary.steps: the shadow step must come before any setWeight"
    for index, step in enumerate(steps):
        problem = step.problem(index, templates)
        if problem is not None:
            return problem
    return None


def step_at(steps: Sequence[CanaryStep], index: int) -> CanaryStep | None:
    """Step ``index``; None for ``len(steps)``, the final promotion."""
    return steps[index] if index < len(steps) else None


def step_name(steps: Sequence[CanaryStep], index: int) -> str:
    """How step ``index`` reads in messages: ``step 2/5: canary at 10%``."""
    step = step_at(steps, index)
    what = "promoting the canary to 100%" if step is None else step.what
    return f"step {index + 1}/{len(steps) + 1}: {what}"


def step_lines(steps: Sequence[CanaryStep], lines: WriteLines) -> list[str]:
    """The steps' writes and waits, in order, as a dry run reports them."""
    return [step.describe(index, lines) for index, step in enumerate(steps)]


def weight_of(steps: Sequence[CanaryStep], index: int) -> int:
    """The canary's weight once step ``index``'s write (if any) landed; 100 when promoted."""
    if index >= len(steps):
        return 100
    weight = 0
    for step in steps[: index + 1]:
        weight = step.leaves(weight)
    return weight


def written_step(resource: Mapping[str, Any]) -> int | None:
    """The canary step whose write ``resource`` is, if it is one."""
    value = ((resource.get("metadata") or {}).get("annotations") or {}).get(CANARY_STEP_ANNOTATION)
    return int(value) if isinstance(value, str) and value.isdigit() else None


def last_write(steps: Sequence[CanaryStep], index: int) -> int:
    """The index of the step whose write the target carries during step ``index``."""
    if index >= len(steps):
        return index
    return max((i for i in range(index + 1) if steps[i].writes), default=0)


def entered(
    steps: Sequence[CanaryStep],
    index: int,
    canary: CanaryState,
    now: datetime.datetime,
    templates: Templates,
) -> Entered:
    """Where entering step ``index`` (``len(steps)``: the final promotion) leaves the run."""
    canary = replace(canary, step=index, step_started_at=now, pause_until=None, analysis=())
    step = step_at(steps, index)
    if step is None:
        return Entered(Phase.PROMOTING, canary, 0.0)
    return step.enter(canary, now, templates)


def step_deadline(
    steps: Sequence[CanaryStep],
    canary: CanaryState,
    timeout: datetime.timedelta,
    templates: Templates,
) -> datetime.datetime:
    """When the current step (or the final promotion) has taken too long."""
    step = step_at(steps, canary.step)
    if step is None:
        return canary.step_started_at + timeout
    return step.deadline(canary, timeout, templates)
