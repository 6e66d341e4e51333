"""One promotion run's state, and its round trip through the resource's ``status``."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class Phase(enum.StrEnum):
    """Where a run is. ``RollingBack`` makes a half-done rollback resumable after a crash."""

    PENDING = "Pending"
    VALIDATING = "Validating"
    AWAITING_APPROVAL = "AwaitingApproval"  # validated and planned; a person must approve
    PROMOTING = "Promoting"
    VERIFYING = "Verifying"
    ANALYZING = "Analyzing"  # canary: measuring the analysis templates
    PAUSED = "Paused"  # canary: a pause step, timed or until a person resumes it
    BAKING = "Baking"  # the last write verified: watched a while (spec.bake) before success
    ROLLING_BACK = "RollingBack"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"  # stopped on request before anything was written


FINISHED = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ROLLED_BACK, Phase.ABORTED})
#: Runs kept in ``status.history``.
HISTORY_LENGTH = 10


class ActionKind(enum.StrEnum):
    """The calls a run makes on the target: a validation, the three writes, and the
    four calls on a Pipeline's experiment (Seldon Core v2; which experiment, the canary
    or the shadow, is the action's :class:`Experiment`)."""

    VALIDATE = "Validate"
    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"
    SET_WEIGHT = "SetWeight"  # create the canary experiment, or change its weight
    MIRROR = "Mirror"  # create the shadow experiment: the shadow gets a copy of the traffic
    PROMOTE = "Promote"  # the candidate's spec becomes the Pipeline's; the experiment goes
    REMOVE = "Remove"  # the experiment and its candidate Pipeline go; the Pipeline stays


class Experiment(enum.StrEnum):
    """Which of a Pipeline's experiments an experiment call is on: the canary (a share of
    the traffic to ``<pipeline>-canary``) or the shadow (a copy of it to
    ``<pipeline>-shadow``). A Pipeline has at most one experiment at a time."""

    CANARY = "canary"
    SHADOW = "shadow"


class UnreadableStatus(ValueError):
    """The recorded status cannot be read back as a run (hand-edited, or from elsewhere)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Failure:
    """A failure as the status and Events report it. The message holds no secret."""

    reason: str
    message: str
    http_status: int | None = None
    # How to handle it now; not recorded in status, so not part of its identity.
    retryable: bool = field(default=False, compare=False)
    retry_after: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PlannedChange:
    """What the run promotes (or, for a dry run, would promote)."""

    action: ActionKind  # CREATE or UPDATE
    source_spec_hash: str
    images: tuple[str, ...] = ()
    model_uris: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()  # the writes and waits, in order, for a person to read
    source_generation: int | None = None  # the source's metadata.generation when planned


@dataclass(frozen=True)
class PreviousTarget:
    """The target as it was before this run wrote it, for rollback."""

    existed: bool
    spec_hash: str | None = None
    deployment: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Dependency:
    """A Model a promoted Pipeline's steps name, as the run found it beside the target.

    ``action`` is None when the target namespace already has it at the promoted spec.
    ``written`` turns true once the run's write of it landed, so a rollback knows
    what to undo even if the Pipeline was never written.
    """

    name: str
    action: ActionKind | None
    previous: PreviousTarget
    written: bool = False


class Verdict(enum.StrEnum):
    """How one measurement of an analysis template came out."""

    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    SAMPLED = "Sampled"  # one sample of a test judged once all are in (Mann-Whitney)


@dataclass(frozen=True)
class Measurement:
    """One measured value of an analysis template, as status shows it."""

    template: str
    verdict: Verdict
    at: datetime.datetime
    value: float | None = None  # a comparison: the challenger's value
    min: float | None = None  # the band ``value`` (a comparison: ``score``) must lie in
    max: float | None = None
    message: str = ""
    champion: float | None = None  # a comparison: the champion's value
    score: float | None = None  # a comparison: its ratio, difference, p-value or PSI


@dataclass(frozen=True)
class TemplateProgress:
    """Where one template of the current analysis step stands."""

    template: str
    due_at: datetime.datetime  # when it is measured next
    taken: int = 0  # conclusive measurements
    failed: int = 0
    inconclusive: int = 0
    # A test judged over all the measurements (Mann-Whitney): the samples so far.
    champion_samples: tuple[float, ...] = ()
    challenger_samples: tuple[float, ...] = ()


@dataclass(frozen=True)
class CanaryState:
    """Where a canary run stands: its step, the weight on the target, the measurements."""

    step: int  # index into the spec's steps; len(steps) is the final promotion
    step_started_at: datetime.datetime
    weight: int = 0  # the canary predictor's traffic on the target now
    canary_predictor: str = ""
    stable_predictor: str = ""
    pause_until: datetime.datetime | None = None
    analysis: tuple[TemplateProgress, ...] = ()
    measurements: tuple[Measurement, ...] = ()  # the most recent, oldest first

    @property
    def written(self) -> bool:
        """Whether a write of this canary is on the target: the first step (always a
        write, a shadow's at weight 0) was verified, or the canary takes traffic."""
        return self.step > 0 or self.weight > 0


@dataclass(frozen=True)
class FiringAlert:
    """An alert seen firing during a bake: its ``alertname`` and its other labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BakeState:
    """Where a bake stands: when it started and ends, its templates' progress and
    measurements (as an analysis step's), the alerts seen firing (which end it), the
    predictor keeping the previous version warm on the target, and when it passed."""

    started_at: datetime.datetime
    ends_at: datetime.datetime
    analysis: tuple[TemplateProgress, ...] = ()
    measurements: tuple[Measurement, ...] = ()  # the most recent, oldest first
    alerts: tuple[FiringAlert, ...] = ()
    warm: str = ""  # the warm copy's predictor ("": none, or a switch to it was refused)
    # The bake passed: the warm copy's removal is written, then verified, then Succeeded.
    passed_at: datetime.datetime | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One finished run, as ``status.history`` keeps it."""

    generation: int
    retry: int
    outcome: str  # the final phase
    reason: str  # the final Ready reason
    started_at: datetime.datetime
    finished_at: datetime.datetime
    source: str = ""
    target: str = ""
    source_generation: int | None = None
    target_generation: int | None = None
    images: tuple[str, ...] = ()
    model_uris: tuple[str, ...] = ()
    approved_by: str | None = None


@dataclass(frozen=True)
class Run:
    """The state of the run for one generation of a ModelPromotion."""

    generation: int
    phase: Phase
    started_at: datetime.datetime
    phase_since: datetime.datetime
    source: str = ""
    target: str = ""
    attempts: int = 0
    finished_at: datetime.datetime | None = None
    plan: PlannedChange | None = None
    previous: PreviousTarget | None = None
    applied_generation: int | None = None
    applied_at: datetime.datetime | None = None
    last_error: Failure | None = None
    error_since: datetime.datetime | None = None
    outcome: Failure | None = None  # why a run failed or was rolled back
    canary: CanaryState | None = None
    bake: BakeState | None = None  # spec.bake: from the last write's verification on
    models: tuple[Dependency, ...] = ()  # a Pipeline's: in the order they are written
    retry: int = 0  # 0 for a generation's first run, then one more per retry request
    approved_by: str | None = None
    approved_at: datetime.datetime | None = None
    # The approve, abort and resume requests used whose annotations may still be on the
    # resource, as (name, value): kept until a pass finds them gone (requests.py).
    consumed: tuple[tuple[str, str], ...] = ()
    # Kept from run to run: the last retry request handled, and the finished runs.
    last_retry: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    conditions: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """The run's name in messages and metrics: ``3``, or ``3.1`` for its first retry."""
        return f"{self.generation}.{self.retry}" if self.retry else str(self.generation)

    def moved_to(self, phase: Phase, now: datetime.datetime) -> Run:
        """This run in ``phase`` (a no-op for the phase clock if it is already there)."""
        if phase == self.phase:
            return self
        finished = now if phase in FINISHED else None
        # An error belongs to the phase that met it; moving on means it was overcome.
        return replace(
            self,
            phase=phase,
            phase_since=now,
            finished_at=finished,
            last_error=None,
            error_since=None,
        )


def consumed_cleared() -> dict[str, Any]:
    """The status patch that clears ``consumedRequests``: written once the annotations of
    the requests it records are removed."""
    return {"consumedRequests": None}


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, seconds precision, as Kubernetes writes times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    """A time as :func:`format_time` writes it, or any RFC 3339 / ISO 8601 form
    (fractional seconds, offsets, lower case); None stays None.

    A time without an offset is taken as UTC. Raises ValueError if unreadable.
    """
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a timestamp")
    moment = datetime.datetime.fromisoformat(text.strip().upper())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def _failure_to_status(failure: Failure | None, since: datetime.datetime | None) -> Any:
    if failure is None:
        return None
    out: dict[str, Any] = {"reason": failure.reason, "message": failure.message}
    if failure.http_status is not None:
        out["httpStatus"] = failure.http_status
    if since is not None:
        out["since"] = format_time(since)
    return out


def to_status(run: Run) -> dict[str, Any]:
    """The run as the ``status`` of the resource (keys as the CRD declares them).

    Absent values are written as ``None`` so that a merge patch removes what a
    previous run left behind.
    """
    plan = run.plan
    previous = run.previous
    return {
        "phase": str(run.phase),
        "observedGeneration": run.generation,
        "source": run.source,
        "target": run.target,
        "attempts": run.attempts,
        "startedAt": format_time(run.started_at),
        "phaseSince": format_time(run.phase_since),
        "finishedAt": format_time(run.finished_at) if run.finished_at else None,
        "plan": None
        if plan is None
        else {
            "action": str(plan.action),
            "sourceSpecHash": plan.source_spec_hash,
            "images": list(plan.images),
            "modelUris": list(plan.model_uris),
            "steps": list(plan.steps) or None,
            "sourceGeneration": plan.source_generation,
        },
        "previous": None if previous is None else _previous_to_status(previous),
        "appliedGeneration": run.applied_generation,
        "appliedAt": format_time(run.applied_at) if run.applied_at else None,
        "lastError": _failure_to_status(run.last_error, run.error_since),
        "outcome": _failure_to_status(run.outcome, None),
        "canary": None if run.canary is None else _canary_to_status(run.canary),
        "bake": None if run.bake is None else _bake_to_status(run.bake),
        "models": [_dependency_to_status(d) for d in run.models] or None,
        "retry": run.retry,
        "approval": None
        if run.approved_by is None
        else {
            "by": run.approved_by,
            "at": format_time(run.approved_at) if run.approved_at else None,
        },
        # A list, not a map, so that a merge patch replaces it whole.
        "consumedRequests": [{"name": n, "value": v} for n, v in run.consumed] or None,
        "lastRetry": run.last_retry,
        "history": [_history_to_status(entry) for entry in run.history],
        "conditions": [dict(c) for c in run.conditions],
    }


def _previous_to_status(previous: PreviousTarget) -> dict[str, Any]:
    return {
        "existed": previous.existed,
        "specHash": previous.spec_hash,
        "deployment": dict(previous.deployment) if previous.deployment else None,
    }


def _dependency_to_status(dependency: Dependency) -> dict[str, Any]:
    return {
        "name": dependency.name,
        "action": str(dependency.action) if dependency.action else "Unchanged",
        "written": dependency.written,
        "previous": _previous_to_status(dependency.previous),
    }


def _history_to_status(entry: HistoryEntry) -> dict[str, Any]:
    out = {
        "generation": entry.generation,
        "retry": entry.retry,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "startedAt": format_time(entry.started_at),
        "finishedAt": format_time(entry.finished_at),
        "source": entry.source,
        "target": entry.target,
        "sourceGeneration": entry.source_generation,
        "targetGeneration": entry.target_generation,
        "images": list(entry.images),
        "modelUris": list(entry.model_uris),
        "approvedBy": entry.approved_by,
    }
    return {key: value for key, value in out.items() if value is not None}


def _canary_to_status(canary: CanaryState) -> dict[str, Any]:
    return {
        "step": canary.step,
        "stepStartedAt": format_time(canary.step_started_at),
        "weight": canary.weight,
        "canaryPredictor": canary.canary_predictor,
        "stablePredictor": canary.stable_predictor,
        "pauseUntil": format_time(canary.pause_until) if canary.pause_until else None,
        "analysis": [_progress_to_status(p) for p in canary.analysis],
        "measurements": [_measurement_to_status(m) for m in canary.measurements],
    }


def _bake_to_status(bake: BakeState) -> dict[str, Any]:
    return {
        "startedAt": format_time(bake.started_at),
        "endsAt": format_time(bake.ends_at),
        "analysis": [_progress_to_status(p) for p in bake.analysis],
        "measurements": [_measurement_to_status(m) for m in bake.measurements],
        "alerts": [{"alertname": a.name, "labels": dict(a.labels)} for a in bake.alerts],
        "warmPredictor": bake.warm or None,
        "passedAt": format_time(bake.passed_at) if bake.passed_at else None,
    }


def _progress_to_status(progress: TemplateProgress) -> dict[str, Any]:
    out: dict[str, Any] = {
        "template": progress.template,
        "dueAt": format_time(progress.due_at),
        "taken": progress.taken,
        "failed": progress.failed,
        "inconclusive": progress.inconclusive,
    }
    if progress.champion_samples or progress.challenger_samples:
        out["championSamples"] = list(progress.champion_samples)
        out["challengerSamples"] = list(progress.challenger_samples)
    return out


def _measurement_to_status(measurement: Measurement) -> dict[str, Any]:
    out = {
        "template": measurement.template,
        "result": str(measurement.verdict),
        "at": format_time(measurement.at),
        "value": measurement.value,
        "min": measurement.min,
        "max": measurement.max,
        "message": measurement.message,
        "champion": measurement.champion,
        "score": measurement.score,
    }
    return {key: value for key, value in out.items() if value is not None}


def from_status(status: Mapping[str, Any]) -> Run | None:
    """The run recorded in ``status``, or None if no run was recorded yet.

    Raises :class:`UnreadableStatus` naming every field that cannot be read.
    """
    if not status.get("phase") and not status.get("startedAt"):
        return None
    reader = _StatusReader(status)
    run = Run(
        generation=reader.integer("observedGeneration", required=True) or 0,
        phase=reader.phase(),
        started_at=reader.time("startedAt", required=True) or _EPOCH,
        phase_since=reader.time("phaseSince") or reader.time("startedAt") or _EPOCH,
        source=reader.text("source"),
        target=reader.text("target"),
        attempts=reader.integer("attempts") or 0,
        finished_at=reader.time("finishedAt"),
        plan=reader.plan(),
        previous=reader.previous(),
        applied_generation=reader.integer("appliedGeneration"),
        applied_at=reader.time("appliedAt"),
        last_error=reader.failure("lastError"),
        error_since=reader.time("lastError.since"),
        outcome=reader.failure("outcome"),
        canary=reader.canary(),
        bake=reader.bake(),
        models=reader.models(),
        retry=reader.integer("retry") or 0,
        approved_by=reader.text("approval.by") or None,
        approved_at=reader.time("approval.at"),
        consumed=reader.consumed(),
        last_retry=reader.text("lastRetry") or None,
        history=reader.history(),
        conditions=reader.conditions(),
    )
    if reader.problems:
        raise UnreadableStatus(reader.problems)
    return run


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class _StatusReader:
    """Reads fields of a recorded status, collecting every problem instead of stopping."""

    def __init__(self, status: Mapping[str, Any]) -> None:
        self.status = status
        self.problems: list[str] = []

    def _get(self, path: str) -> Any:
        value: Any = self.status
        for key in path.split("."):
            if isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                value = value.get(key) if isinstance(value, Mapping) else None
        return value

    def _problem(self, path: str, value: Any, expected: str) -> None:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        self.problems.append(f"status.{path} is {shown}, not {expected}")

    def time(self, path: str, *, required: bool = False) -> datetime.datetime | None:
        value = self._get(path)
        try:
            moment = parse_time(value)
        except ValueError:
            self._problem(path, value, "an RFC 3339 time")
            return None
        if moment is None and required:
            self._problem(path, value, "an RFC 3339 time")
        return moment

    def integer(self, path: str, *, required: bool = False) -> int | None:
        value = self._get(path)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self._problem(path, value, "an integer")
            return None
        return value

    def text(self, path: str) -> str:
        value = self._get(path)
        if value is None:
            return ""
        if not isinstance(value, str):
            self._problem(path, value, "a string")
            return ""
        return value

    def phase(self) -> Phase:
        value = self._get("phase")
        try:
            return Phase(value)
        except ValueError:
            self._problem("phase", value, f"one of {', '.join(p.value for p in Phase)}")
            return Phase.PENDING

    def plan(self) -> PlannedChange | None:
        plan = self._get("plan")
        if not plan:
            return None
        try:
            action = ActionKind(self._get("plan.action"))
            if action not in (ActionKind.CREATE, ActionKind.UPDATE):
                raise ValueError(action)
        except ValueError:
            self._problem("plan.action", self._get("plan.action"), "Create or Update")
            return None
        return PlannedChange(
            action,
            self.text("plan.sourceSpecHash"),
            tuple(self._strings("plan.images")),
            tuple(self._strings("plan.modelUris")),
            tuple(self._strings("plan.steps")),
            self.integer("plan.sourceGeneration"),
        )

    def _strings(self, path: str) -> list[str]:
        value = self._get(path) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._problem(path, value, "a list of strings")
            return []
        return value

    def previous(self, path: str = "previous") -> PreviousTarget | None:
        previous = self._get(path)
        if not previous:
            return None
        deployment = self._get(f"{path}.deployment")
        if deployment is not None and not isinstance(deployment, Mapping):
            self._problem(f"{path}.deployment", deployment, "an object")
            deployment = None
        spec_hash = self._get(f"{path}.specHash")
        return PreviousTarget(
            bool(self._get(f"{path}.existed")),
            spec_hash if isinstance(spec_hash, str) else None,
            deployment,
        )

    def models(self) -> tuple[Dependency, ...]:
        models = []
        for i, _ in enumerate(self._list("models")):
            at = f"models.{i}"
            name = self.text(f"{at}.name")
            action_text = self._get(f"{at}.action")
            action = None
            if action_text in (ActionKind.CREATE, ActionKind.UPDATE):
                action = ActionKind(action_text)
            elif action_text != "Unchanged":
                self._problem(f"{at}.action", action_text, "Create, Update or Unchanged")
            if not name:
                self._problem(f"{at}.name", name, "a model name")
            previous = self.previous(f"{at}.previous") or PreviousTarget(existed=False)
            models.append(Dependency(name, action, previous, self._get(f"{at}.written") is True))
        return tuple(models)

    def failure(self, path: str) -> Failure | None:
        if not self._get(path):
            return None
        reason = self._get(f"{path}.reason")
        if not isinstance(reason, str) or not reason:
            self._problem(f"{path}.reason", reason, "a reason")
            return None
        return Failure(reason, self.text(f"{path}.message"), self.integer(f"{path}.httpStatus"))

    def number(self, path: str) -> float | None:
        value = self._get(path)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._problem(path, value, "a number")
            return None
        return float(value)

    def numbers(self, path: str) -> tuple[float, ...]:
        values = []
        for i, _ in enumerate(self._list(path)):
            value = self.number(f"{path}.{i}")
            if value is not None:
                values.append(value)
        return tuple(values)

    def canary(self) -> CanaryState | None:
        if not self._get("canary"):
            return None
        started = self.time("canary.stepStartedAt", required=True) or _EPOCH
        return CanaryState(
            step=self.integer("canary.step", required=True) or 0,
            step_started_at=started,
            weight=self.integer("canary.weight") or 0,
            canary_predictor=self.text("canary.canaryPredictor"),
            stable_predictor=self.text("canary.stablePredictor"),
            pause_until=self.time("canary.pauseUntil"),
            analysis=self.progress("canary.analysis"),
            measurements=self.measurements("canary.measurements"),
        )

    def bake(self) -> BakeState | None:
        if not self._get("bake"):
            return None
        alerts = []
        for i, _ in enumerate(self._list("bake.alerts")):
            at = f"bake.alerts.{i}"
            labels = self._get(f"{at}.labels") or {}
            if not isinstance(labels, Mapping) or not all(
                isinstance(value, str) for value in labels.values()
            ):
                self._problem(f"{at}.labels", labels, "a map of label values")
                labels = {}
            alerts.append(FiringAlert(self.text(f"{at}.alertname"), dict(labels)))
        return BakeState(
            started_at=self.time("bake.startedAt", required=True) or _EPOCH,
            ends_at=self.time("bake.endsAt", required=True) or _EPOCH,
            analysis=self.progress("bake.analysis"),
            measurements=self.measurements("bake.measurements"),
            alerts=tuple(alerts),
            warm=self.text("bake.warmPredictor"),
            passed_at=self.time("bake.passedAt"),
        )

    def progress(self, path: str) -> tuple[TemplateProgress, ...]:
        """The templates' progress at ``path`` (an analysis step's, or a bake's)."""
        analysis = []
        for i, _ in enumerate(self._list(path)):
            at = f"{path}.{i}"
            analysis.append(
                TemplateProgress(
                    self.text(f"{at}.template"),
                    self.time(f"{at}.dueAt", required=True) or _EPOCH,
                    self.integer(f"{at}.taken") or 0,
                    self.integer(f"{at}.failed") or 0,
                    self.integer(f"{at}.inconclusive") or 0,
                    self.numbers(f"{at}.championSamples"),
                    self.numbers(f"{at}.challengerSamples"),
                )
            )
        return tuple(analysis)

    def measurements(self, path: str) -> tuple[Measurement, ...]:
        """The recent measurements at ``path`` (a canary's, or a bake's)."""
        measurements = []
        for i, _ in enumerate(self._list(path)):
            at = f"{path}.{i}"
            try:
                verdict = Verdict(self._get(f"{at}.result"))
            except ValueError:
                self._problem(f"{at}.result", self._get(f"{at}.result"), "a result")
                continue
            measurements.append(
                Measurement(
                    self.text(f"{at}.template"),
                    verdict,
                    self.time(f"{at}.at", required=True) or _EPOCH,
                    self.number(f"{at}.value"),
                    self.number(f"{at}.min"),
                    self.number(f"{at}.max"),
                    self.text(f"{at}.message"),
                    self.number(f"{at}.champion"),
                    self.number(f"{at}.score"),
                )
            )
        return tuple(measurements)

    def history(self) -> tuple[HistoryEntry, ...]:
        entries = []
        for i, _ in enumerate(self._list("history")):
            at = f"history.{i}"
            entries.append(
                HistoryEntry(
                    generation=self.integer(f"{at}.generation", required=True) or 0,
                    retry=self.integer(f"{at}.retry") or 0,
                    outcome=self.text(f"{at}.outcome"),
                    reason=self.text(f"{at}.reason"),
                    started_at=self.time(f"{at}.startedAt", required=True) or _EPOCH,
                    finished_at=self.time(f"{at}.finishedAt", required=True) or _EPOCH,
                    source=self.text(f"{at}.source"),
                    target=self.text(f"{at}.target"),
                    source_generation=self.integer(f"{at}.sourceGeneration"),
                    target_generation=self.integer(f"{at}.targetGeneration"),
                    images=tuple(self._strings(f"{at}.images")),
                    model_uris=tuple(self._strings(f"{at}.modelUris")),
                    approved_by=self.text(f"{at}.approvedBy") or None,
                )
            )
        return tuple(entries)

    def _list(self, path: str) -> list[Any]:
        value = self._get(path) or []
        if not isinstance(value, list):
            self._problem(path, value, "a list")
            return []
        return value

    def consumed(self) -> tuple[tuple[str, str], ...]:
        entries = []
        for i, _ in enumerate(self._list("consumedRequests")):
            at = f"consumedRequests.{i}"
            name, value = self.text(f"{at}.name"), self.text(f"{at}.value")
            if name and value:
                entries.append((name, value))
            else:
                self._problem(at, self._get(at), "a name and a value")
        return tuple(entries)

    def conditions(self) -> tuple[dict[str, Any], ...]:
        value = self._get("conditions") or []
        if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
            self._problem("conditions", value, "a list of conditions")
            return ()
        return tuple(value)
