"""What one pass of a run works with and produces: its inputs, what it read, the
action it takes, the :class:`Decision` it comes to, and its result. Plain data; the
logic is in :mod:`machine`."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from promotion_operator.core.conditions import Event
from promotion_operator.core.promotion import PromotionRef
from promotion_operator.core.requests import Requests
from promotion_operator.core.run import ActionKind, Experiment, Failure, Run
from promotion_operator.core.spec import PromotionSpec


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before the next pass.

    The wait equals the time already spent waiting (so the gaps double:
    0.5, 0.5, 1, 2, 4 s ...), half of it for a poll of a rolling-out target
    (0.5, 0.5, 0.5, 0.75, 1.1 s ...), clamped, and spread by jitter so runs
    that failed together do not retry together. A server's Retry-After is honoured as a
    minimum up to ``max_delay``; no wait reaches past the run's deadline.
    """

    min_delay: float = 0.5
    max_delay: float = 60.0
    max_poll: float = 10.0


@dataclass(frozen=True)
class Context:
    """The inputs of one pass that are not observations."""

    spec: PromotionSpec
    promotion: PromotionRef
    now: datetime.datetime
    jitter: float = 0.5  # uniform in [0, 1): supplied by the caller to keep this pure
    policy: RetryPolicy = RetryPolicy()
    requests: Requests = field(default_factory=Requests)  # asked through annotations
    prometheus_configured: bool = False  # analysis steps and a bake can be measured


class Answer(NamedTuple):
    """What Seldon Deploy answered: a deployment (None: not found / no body), or a failure."""

    deployment: Mapping[str, Any] | None = None
    failure: Failure | None = None


@dataclass(frozen=True)
class Observed:
    """What the pass read from Seldon Deploy. ``None`` with no error means not found."""

    source: Mapping[str, Any] | None = None
    target: Mapping[str, Any] | None = None
    source_error: Failure | None = None
    target_error: Failure | None = None
    readings: Mapping[tuple[str, Side], Reading] = field(default_factory=dict)  # by template, side
    alerts: Alerts | None = None  # a bake's: the alerts firing now; None: not looked at
    # A Pipeline's: the Models its source's steps name, and those beside the target.
    source_models: ModelsAnswer | None = None  # None: not read in this pass
    models: Mapping[str, Answer] = field(default_factory=dict)  # by name, in the target's namespace
    # A Pipeline's canary: the candidate Pipeline carrying the promoted spec (the canary
    # or the shadow Pipeline, as the strategy reads it), and the experiment.
    canary: Answer = field(default_factory=Answer)
    experiment: Answer = field(default_factory=Answer)

    @property
    def failed_read(self) -> Failure | None:
        """The first failure among the reads beside the source and the target."""
        if self.source_models is not None and self.source_models.failure is not None:
            return self.source_models.failure
        models = (a.failure for a in self.models.values() if a.failure is not None)
        return next(models, None) or self.canary.failure or self.experiment.failure


class Beside(NamedTuple):
    """What a pass read beside the source and the target (see :class:`Observed`)."""

    source_models: ModelsAnswer | None = None
    models: Mapping[str, Answer] = {}
    canary: Answer = Answer()
    experiment: Answer = Answer()


class Purpose(enum.Enum):
    """Why an action writes the target."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"  # restore (or remove) what the run replaced
    CLEANUP = "cleanup"  # remove a canary an earlier generation left behind
    SWITCH = "switch"  # a rollback's first write: the traffic to the warm copy (core/warm.py)
    DROP_WARM = "drop-warm"  # after a passed bake: the warm copy removed from the target


@dataclass(frozen=True)
class Action:
    """One call to Seldon Deploy on the target (or a validation of it)."""

    kind: ActionKind
    deployment: Mapping[str, Any] | None  # None only for DELETE
    message: str  # the GitOps commit message of a write
    purpose: Purpose = Purpose.PROMOTE
    model: str | None = None  # a Model beside a Pipeline target, by name; None: the target
    pipeline: str | None = None  # a Pipeline beside the target (a candidate), by name
    weight: int | None = None  # SET_WEIGHT: the canary's share of the traffic, in percent
    # The experiment a call on the target Pipeline's experiment (SET_WEIGHT, MIRROR,
    # PROMOTE, REMOVE) is on; None for any other action.
    experiment: Experiment | None = None

    @property
    def rollback(self) -> bool:
        """Whether the write undoes something (a rollback, its switch, or a cleanup)."""
        return self.purpose in (Purpose.ROLLBACK, Purpose.SWITCH, Purpose.CLEANUP)


@dataclass(frozen=True)
class Decision:
    """What a pass decided: the run to record, at most one action, when to come back."""

    run: Run
    action: Action | None = None
    requeue_after: float | None = None  # None: nothing more until the spec changes
    used: tuple[str, ...] = ()  # the requests this decision acted on (by name)


class Reading(NamedTuple):
    """What Prometheus answered to one analysis query: a number (numbers by label, for
    a query read ``by`` one), or a failure."""

    value: float | Mapping[str, float] | None = None
    failure: Failure | None = None


class Alerts(NamedTuple):
    """What Prometheus answered for the alerts a bake watches: the label set of each
    one firing now (none: no alert fires), or a failure."""

    firing: tuple[Mapping[str, str], ...] = ()
    failure: Failure | None = None


class Side(enum.StrEnum):
    """Whom a template's query measures: what its placeholders name (``MEASURED``), or,
    for a comparison, the champion or the challenger in ``{{predictor}}``."""

    MEASURED = ""
    CHAMPION = "champion"
    CHALLENGER = "challenger"


class Query(NamedTuple):
    """One analysis query due in this pass: its template, side and filled-in PromQL;
    ``by``: read its series as numbers by this label."""

    template: str
    side: Side
    promql: str
    by: str | None = None


class ModelsAnswer(NamedTuple):
    """What Seldon Deploy answered for the Models a Pipeline's steps name, or a failure."""

    models: tuple[Mapping[str, Any], ...] = ()
    failure: Failure | None = None


class Effects(Protocol):
    """A pass's window on Seldon Deploy: the two resources of the spec (and, for a
    Pipeline, the Models beside them), and one action; and on Prometheus: the
    measurements and, for a bake, the firing alerts."""

    def read_source(self) -> Answer:
        """The source resource (``Answer()`` if it does not exist)."""
        ...

    def read_target(self) -> Answer:
        """The target resource (``Answer()`` if it does not exist)."""
        ...

    def read_source_models(self) -> ModelsAnswer:
        """The Models the source Pipeline's steps name, as they exist beside it."""
        ...

    def read_model(self, name: str) -> Answer:
        """The Model ``name`` in the target's namespace (``Answer()`` if it does not exist)."""
        ...

    def read_pipeline(self, name: str) -> Answer:
        """The Pipeline ``name`` in the target's namespace (``Answer()`` if it does not exist)."""
        ...

    def read_experiment(self) -> Answer:
        """The experiment on the target Pipeline (``Answer()`` if it has none)."""
        ...

    def perform(self, action: Action) -> Answer:
        """Carry out ``action`` on the target; the answer is the written deployment."""
        ...

    def query(self, promql: str, by: str | None = None) -> Reading:
        """The one number ``promql`` gives now (an analysis measurement); with ``by``,
        its numbers by that label."""
        ...

    def firing_alerts(self, match_labels: Mapping[str, str]) -> Alerts:
        """The alerts firing now whose labels equal ``match_labels`` (a bake's)."""
        ...


@dataclass(frozen=True)
class PassResult:
    """What one pass wants recorded and done next."""

    run: Run | None  # the run after the pass; None when the status could not be read
    status: dict[str, Any] | None  # the status to record; None: nothing changed
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None  # None: nothing more until the spec changes
    message: str = ""  # the Ready condition's message
    started: bool = False  # this pass started a run (a new generation, or a retry)
    # Requests acted on (or stale), recorded in ``status`` (consumedRequests): remove their
    # annotations, then write ``after_removal``, the status patch that clears the record.
    used: tuple[str, ...] = ()
    after_removal: dict[str, Any] | None = None
