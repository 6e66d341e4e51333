"""A PromotionPath's decisions: plain data in, decisions out.

Given the path's spec, what its status recorded, the source and each stage's
target as Seldon Deploy has them, and the stage runs (ModelPromotions owned by
the path), :func:`decide` says which freight is new, which stage starts which
freight now, what each stage's status is, and when to look again.

The rules (docs/contract.md, "Promotion paths"):

- a new version of the source (another generation, or other images or model
  URIs) is a new freight; its ID is derived from what it is, so finding it
  again after a crash gives the same ID;
- the *upstream* of a stage is the previous stage's target (the source, for
  the first stage). It carries a freight while its last successful run wrote
  that freight and the target is still at the generation the run wrote;
- a stage starts the freight its upstream carries once the upstream has been
  healthy (ready at its generation) for the stage's soak, and, for a manual
  stage, once a person asked for that freight;
- a running stage is never interrupted; a stage waiting for a freight simply
  takes the newer one its upstream carries (the older one is superseded);
- a held stage (a person's ``hold-<stage>`` annotation) starts no run, whatever its
  policy, until the hold is released; a run already going is not interrupted, and
  the soak goes on while held;
- a run's name is derived from the path, the stage and the freight, so
  creating it again after a crash finds it already there.
"""

from __future__ import annotations

import copy
import datetime
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from promotion_operator.core.durations import parse_duration
from promotion_operator.core.kinds import KINDS, readiness
from promotion_operator.core.promotion import ANNOTATION_PREFIX
from promotion_operator.core.spec import DeploymentRef, Kind, Overrides

#: Labels on a stage run, naming its path, stage and freight.
PATH_LABEL = f"{ANNOTATION_PREFIX}/path"
STAGE_LABEL = f"{ANNOTATION_PREFIX}/stage"
FREIGHT_LABEL = f"{ANNOTATION_PREFIX}/freight"
#: A person's promotion of a manual stage: ``promote-<stage>: <freight ID>``.
PROMOTE_PREFIX = f"{ANNOTATION_PREFIX}/promote-"
#: A person's hold on a stage: ``hold-<stage>: {"by": ..., "reason": ..., "at": ...}``
#: (JSON; any other text is read as the reason).
HOLD_PREFIX = f"{ANNOTATION_PREFIX}/hold-"
#: Runs kept in ``status.history``.
PATH_HISTORY_LENGTH = 20
#: Phases of a ModelPromotion that end its run (``core/run.py``'s FINISHED).
RUN_SUCCEEDED = "Succeeded"
RUN_ENDED = frozenset({"Succeeded", "Failed", "RolledBack", "Aborted"})
_NAME_LIMIT = 253


class StagePhase(enum.StrEnum):
    """Where a stage is."""

    IDLE = "Idle"  # nothing newer to promote
    SOAKING = "Soaking"  # the freight waits for the previous stage to soak
    WAITING = "WaitingForPromotion"  # manual: soaked, waits for a person
    BLOCKED = "Blocked"  # the previous stage does not carry the freight that passed it
    HELD = "Held"  # a person holds the stage: no run starts until released
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Policy(enum.StrEnum):
    """How a stage starts: by itself, or when a person promotes it."""

    AUTO = "auto"
    MANUAL = "manual"


class PathSpecError(ValueError):
    """The path's spec cannot be used (the API server's schema normally prevents it)."""


@dataclass(frozen=True)
class Stage:
    """One stage of the spec, its target resolved."""

    name: str
    target: DeploymentRef
    template: Mapping[str, Any]
    policy: Policy
    soak: float  # seconds


@dataclass(frozen=True)
class PathSpec:
    """A PromotionPath's spec, read."""

    source: DeploymentRef
    stages: tuple[Stage, ...]
    poll_interval: float
    freight_history: int


@dataclass(frozen=True)
class Freight:
    """One version of the source."""

    id: str
    source_generation: int
    images: tuple[str, ...]
    model_uris: tuple[str, ...]
    discovered_at: datetime.datetime


@dataclass(frozen=True)
class Observed:
    """A source or target as read from Seldon Deploy, reduced to what a path needs."""

    generation: int
    healthy: bool  # ready (Available, or Ready for Core v2) at this generation
    images: tuple[str, ...] = ()
    model_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hold:
    """A person's hold on a stage: who (as they wrote it), why, and since when."""

    by: str = ""
    reason: str = ""
    at: datetime.datetime | None = None

    @property
    def described(self) -> str:
        """``held by alice since 2026-01-01T12:00:00Z: incident INC-42``."""
        text = "held"
        if self.by:
            text += f" by {self.by}"
        if self.at is not None:
            text += f" since {_stamp(self.at)}"
        return f"{text}: {self.reason}" if self.reason else text


@dataclass(frozen=True)
class StageRun:
    """A ModelPromotion the path created for a stage, as the API server has it."""

    name: str
    stage: str
    freight: str
    phase: str  # "" until its first pass
    applied_generation: int | None  # the target generation the run wrote and verified
    created_at: datetime.datetime

    @property
    def ended(self) -> bool:
        """Whether the run has ended (its phase is one that ends a run)."""
        return self.phase in RUN_ENDED

    @property
    def succeeded(self) -> bool:
        """Whether the run ended with the freight promoted."""
        return self.phase == RUN_SUCCEEDED


@dataclass(frozen=True)
class StageStatus:
    """One stage as ``status.stages`` shows it."""

    name: str
    phase: StagePhase
    since: datetime.datetime
    freight: str = ""  # waiting for, running, or last run
    promoted: str = ""  # the freight the stage's target carries
    run: str = ""
    reason: str = ""
    message: str = ""
    soak_until: datetime.datetime | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """Which freight reached (or failed to reach) which stage, through which run."""

    stage: str
    freight: str
    run: str
    phase: str
    started_at: datetime.datetime
    finished_at: datetime.datetime | None = None


@dataclass(frozen=True)
class Recorded:
    """What the path's status recorded, read back."""

    freight: tuple[Freight, ...] = ()
    stages: Mapping[str, StageStatus] = field(default_factory=dict)
    history: tuple[HistoryEntry, ...] = ()


@dataclass(frozen=True)
class Start:
    """Create this stage's run: the ModelPromotion ``name`` promoting ``source`` to the
    stage's target with the stage's template."""

    stage: Stage
    freight: Freight
    name: str
    source: DeploymentRef
    soak_until: datetime.datetime | None = None  # when the freight's soak ended
    # The source's generation that carries the freight: the run promotes that one or
    # nothing (the source may change between this pass and the run's first read).
    source_generation: int | None = None


@dataclass(frozen=True)
class Decision:
    """What a pass over the path decided."""

    freight: tuple[Freight, ...]
    stages: tuple[StageStatus, ...]
    history: tuple[HistoryEntry, ...]
    starts: tuple[Start, ...]
    requeue_after: float


# -- reading ---------------------------------------------------------------------------------------


def parse_path_spec(spec: Mapping[str, Any]) -> PathSpec:
    """The spec as plain data; :class:`PathSpecError` names the field that is wrong."""
    try:
        raw_source = spec["source"]
        source = DeploymentRef(
            str(raw_source["namespace"]),
            str(raw_source["name"]),
            raw_source.get("instance") or None,
            Kind(raw_source.get("kind") or Kind.SELDON_DEPLOYMENT),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise PathSpecError(f"spec.source is incomplete or wrong: {error}") from None
    stages: list[Stage] = []
    upstream = source
    for index, raw in enumerate(spec.get("stages") or ()):
        at = f"spec.stages[{index}]"
        try:
            target = raw["target"]
            ref = DeploymentRef(
                str(target["namespace"]),
                str(target.get("name") or source.name),
                target.get("instance") or upstream.instance,
                source.kind,
            )
            stage = Stage(
                name=str(raw["name"]),
                target=ref,
                template=dict(raw.get("template") or {}),
                policy=Policy(raw.get("policy") or Policy.AUTO),
                soak=parse_duration(str(raw.get("soak") or "0s")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PathSpecError(f"{at} is incomplete or wrong: {error}") from None
        if stage.target == upstream:
            raise PathSpecError(f"{at}.target is the previous stage's target (or the source)")
        stages.append(stage)
        upstream = ref
    if not stages:
        raise PathSpecError("spec.stages needs at least one stage")
    try:
        poll = parse_duration(str(spec.get("pollInterval") or "30s"))
    except ValueError as error:
        raise PathSpecError(f"spec.pollInterval: {error}") from None
    return PathSpec(source, tuple(stages), max(poll, 1.0), int(spec.get("freightHistory") or 10))


def observe(kind: Kind, deployment: Mapping[str, Any] | None) -> Observed | None:
    """A Seldon Deploy resource as a path sees it (None: it does not exist)."""
    if deployment is None:
        return None
    metadata = deployment.get("metadata") or {}
    generation = metadata.get("generation")
    generation = generation if isinstance(generation, int) else 0
    ready = readiness(kind, deployment)
    at_generation = ready.observed_generation in (None, generation)
    # What it serves, as a promotion without overrides would record it.
    carried = KINDS[kind].apply_overrides(
        copy.deepcopy(dict(deployment.get("spec") or {})), Overrides()
    )
    return Observed(generation, ready.ready and at_generation, carried.images, carried.model_uris)


def freight_id(generation: int, images: Sequence[str], model_uris: Sequence[str]) -> str:
    """A freight's ID: the source generation and a digest of what it serves."""
    digest = hashlib.sha256("\n".join([*images, "", *model_uris]).encode()).hexdigest()
    return f"{generation}-{digest[:6]}"


def run_name(path: str, stage: str, freight: str) -> str:
    """The name of the ModelPromotion that runs ``freight`` through ``stage``: the same
    every time, so that a second create after a crash finds the first."""
    name = f"{path}-{stage}-{freight}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: _NAME_LIMIT - 11]}-{digest}"


def promote_annotation(stage: str) -> str:
    """The annotation with which a person promotes a manual stage."""
    return f"{PROMOTE_PREFIX}{stage}"


# -- deciding --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Upstream:
    """What a stage's upstream carries: a freight (or none, with a reason), and whether
    it is healthy now."""

    freight: Freight | None
    healthy: bool
    ref: DeploymentRef
    reason: str = ""
    message: str = ""
    generation: int | None = None  # the upstream's generation that carries the freight


def decide(
    name: str,
    spec: PathSpec,
    recorded: Recorded,
    source: Observed | None,
    targets: Sequence[Observed | None],
    runs: Sequence[StageRun],
    promotions: Mapping[str, str],
    now: datetime.datetime,
    holds: Mapping[str, Hold] | None = None,
) -> Decision:
    """One pass over the path ``name`` (see the module docstring); ``promotions`` and
    ``holds`` are the people's requests by stage name."""
    holds = holds or {}
    freight = _with_new_freight(recorded.freight, source, spec.freight_history, now)
    by_id = {item.id: item for item in (*freight, *recorded.freight)}
    newest = freight[0] if freight else None
    upstream = _Upstream(
        newest,
        source is not None and source.healthy,
        spec.source,
        generation=newest.source_generation if newest is not None else None,
    )
    if source is None:
        upstream = _Upstream(
            None, False, spec.source, "SourceMissing", f"{spec.source.noun} does not exist"
        )
    stages: list[StageStatus] = []
    starts: list[Start] = []
    waits: list[float] = [spec.poll_interval]
    for index, stage in enumerate(spec.stages):
        own = sorted((r for r in runs if r.stage == stage.name), key=lambda r: r.created_at)
        latest = own[-1] if own else None
        target = targets[index] if index < len(targets) else None
        previous = recorded.stages.get(stage.name)
        carried = _carried(stage, own, target, by_id)
        status, start = _stage(name, stage, upstream, latest, carried, previous, promotions, now)
        hold = holds.get(stage.name)
        if hold is not None:
            status, start = _since(_held(name, status, start, latest, hold, now), previous), None
        if start is not None:
            starts.append(start)
        if status.soak_until is not None and status.soak_until > now:
            # A soak that has ended (a stage waiting for a person, or held) wakes nothing.
            waits.append((status.soak_until - now).total_seconds())
        stages.append(status)
        upstream = carried
        if start is not None:  # as the next pass will see it: this stage running
            upstream = _Upstream(
                None,
                False,
                stage.target,
                "PreviousStageRunning",
                f"stage {stage.name} is running freight {start.freight.id} (run {start.name})",
            )
    history = _history(recorded.history, runs, starts, now)
    return Decision(freight, tuple(stages), history, tuple(starts), min(waits))


def _with_new_freight(
    known: tuple[Freight, ...], source: Observed | None, keep: int, now: datetime.datetime
) -> tuple[Freight, ...]:
    if source is None:
        return known
    found = freight_id(source.generation, source.images, source.model_uris)
    if known and known[0].id == found:
        return known
    new = Freight(found, source.generation, source.images, source.model_uris, now)
    return (new, *(item for item in known if item.id != found))[:keep]


def _carried(
    stage: Stage,
    own: Sequence[StageRun],
    target: Observed | None,
    by_id: Mapping[str, Freight],
) -> _Upstream:
    """What ``stage``'s target carries, as the next stage's upstream."""
    healthy = target is not None and target.healthy
    if own and not own[-1].ended:
        return _Upstream(
            None,
            healthy,
            stage.target,
            "PreviousStageRunning",
            f"stage {stage.name} is running freight {own[-1].freight} (run {own[-1].name})",
        )
    succeeded = [run for run in own if run.succeeded]
    if not succeeded:
        failed = own[-1] if own and own[-1].ended else None
        if failed is not None:
            return _Upstream(
                None,
                healthy,
                stage.target,
                "PreviousStageFailed",
                f"stage {stage.name} did not promote freight {failed.freight} "
                f"({failed.phase}, run {failed.name})",
            )
        return _Upstream(None, healthy, stage.target, "", "")
    last = succeeded[-1]
    if own[-1] is not last and own[-1].ended:
        return _Upstream(
            None,
            healthy,
            stage.target,
            "PreviousStageFailed",
            f"stage {stage.name} did not promote freight {own[-1].freight} "
            f"({own[-1].phase}, run {own[-1].name})",
        )
    freight = by_id.get(last.freight)
    if target is None or last.applied_generation != target.generation or freight is None:
        now_at = (
            "it does not exist" if target is None else f"it is at generation {target.generation}"
        )
        return _Upstream(
            None,
            healthy,
            stage.target,
            "FreightNotCarried",
            f"{stage.target.noun} no longer carries freight {last.freight} "
            f"(run {last.name} wrote generation {last.applied_generation}; {now_at})",
        )
    return _Upstream(freight, healthy, stage.target, generation=target.generation)


def _stage(
    path: str,
    stage: Stage,
    upstream: _Upstream,
    latest: StageRun | None,
    carried: _Upstream,
    previous: StageStatus | None,
    promotions: Mapping[str, str],
    now: datetime.datetime,
) -> tuple[StageStatus, Start | None]:
    promoted = carried.freight.id if carried.freight is not None else ""
    base = StageStatus(stage.name, StagePhase.IDLE, now, promoted=promoted)
    if latest is not None:
        base = replace(base, freight=latest.freight, run=latest.name)
    if latest is not None and not latest.ended:
        running = replace(
            base,
            phase=StagePhase.RUNNING,
            reason="Running",
            message=f"run {latest.name} promotes freight {latest.freight}"
            + (f" ({latest.phase})" if latest.phase else ""),
        )
        return _since(running, previous), None
    settled = base
    if latest is not None:
        ok = latest.succeeded
        settled = replace(
            base,
            phase=StagePhase.SUCCEEDED if ok else StagePhase.FAILED,
            reason=latest.phase,
            message=f"freight {latest.freight}: run {latest.name} {latest.phase}",
        )
    waiting = upstream.freight
    if waiting is None:
        if upstream.reason:
            blocked = replace(
                settled,
                phase=StagePhase.BLOCKED
                if upstream.reason == "FreightNotCarried"
                else settled.phase,
                reason=upstream.reason,
                message=upstream.message,
            )
            return _since(blocked, previous), None
        return _since(settled, previous), None
    if latest is not None and latest.freight == waiting.id:
        return _since(settled, previous), None
    if not upstream.healthy:
        unhealthy = replace(
            settled,
            phase=StagePhase.SOAKING,
            freight=waiting.id,
            reason="PreviousStageUnhealthy",
            message=f"{upstream.ref.noun} is not ready at its generation; the soak starts "
            "once it is",
        )
        return _since(unhealthy, previous), None
    soak_until = now + datetime.timedelta(seconds=stage.soak)
    if (
        previous is not None
        and previous.phase in (StagePhase.SOAKING, StagePhase.WAITING, StagePhase.HELD)
        and previous.freight == waiting.id
        and previous.soak_until is not None
    ):
        soak_until = previous.soak_until  # soaking since an earlier pass
    if now < soak_until:
        soaking = replace(
            settled,
            phase=StagePhase.SOAKING,
            freight=waiting.id,
            soak_until=soak_until,
            reason="Soaking",
            message=f"freight {waiting.id} soaks in {upstream.ref.described} until "
            f"{_stamp(soak_until)}",
        )
        return _since(soaking, previous), None
    if stage.policy is Policy.MANUAL and promotions.get(stage.name) != waiting.id:
        manual = replace(
            settled,
            phase=StagePhase.WAITING,
            freight=waiting.id,
            soak_until=soak_until,
            reason="WaitingForPromotion",
            message=f"freight {waiting.id} has soaked; promote it with: kubectl promotion "
            f"path promote {path} {stage.name}",
        )
        return _since(manual, previous), None
    name = run_name(path, stage.name, waiting.id)
    # As the next pass will see it (the run, not started yet), so it writes nothing new.
    started = replace(
        settled,
        phase=StagePhase.RUNNING,
        freight=waiting.id,
        run=name,
        soak_until=None,
        reason="Running",
        message=f"run {name} promotes freight {waiting.id}",
    )
    start = Start(stage, waiting, name, upstream.ref, soak_until, upstream.generation)
    return _since(started, previous), start


def _held(
    path: str,
    status: StageStatus,
    start: Start | None,
    latest: StageRun | None,
    hold: Hold,
    now: datetime.datetime,
) -> StageStatus:
    """``status`` of a held stage: a running run goes on (the message says no new one
    will start); otherwise the stage is ``Held``, and a run it would start now waits."""
    if status.phase is StagePhase.RUNNING and start is None:
        return replace(status, message=f"{status.message}; {hold.described}; no new run starts")
    release = f"release with: kubectl promotion path release {path} {status.name}"
    shown = f"{hold.described}; {status.message}" if status.message else hold.described
    held = replace(status, phase=StagePhase.HELD, since=now, reason="Held")
    if start is None:
        return replace(held, message=f"{shown}; {release}")
    # It would start now: the run it showed stays, and the ended soak is kept, so a
    # release starts the freight at once.
    return replace(
        held,
        run=latest.name if latest is not None else "",
        soak_until=start.soak_until,
        message=f"{hold.described}; freight {start.freight.id} is ready and waits for "
        f"the release; {release}",
    )


def _since(status: StageStatus, previous: StageStatus | None) -> StageStatus:
    """Keep the previous ``since`` while the stage stays in its phase with its freight."""
    if previous is not None and (previous.phase, previous.freight) == (
        status.phase,
        status.freight,
    ):
        return replace(status, since=previous.since)
    return status


def _history(
    recorded: tuple[HistoryEntry, ...],
    runs: Sequence[StageRun],
    starts: Sequence[Start],
    now: datetime.datetime,
) -> tuple[HistoryEntry, ...]:
    entries = {entry.run: entry for entry in recorded}
    for run in runs:
        entry = entries.get(run.name) or HistoryEntry(
            run.stage, run.freight, run.name, run.phase or "Pending", run.created_at
        )
        if run.ended and entry.finished_at is None:
            entry = replace(entry, finished_at=now)
        entries[run.name] = replace(entry, phase=run.phase or entry.phase)
    for start in starts:
        entries.setdefault(
            start.name, HistoryEntry(start.stage.name, start.freight.id, start.name, "Pending", now)
        )
    newest = sorted(entries.values(), key=lambda e: (e.started_at, e.run), reverse=True)
    return tuple(newest[:PATH_HISTORY_LENGTH])


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the status round trip -------------------------------------------------------------------------


def status_of(decision: Decision, spec: PathSpec, generation: int) -> dict[str, Any]:
    """``decision`` as the path's ``status``."""
    return {
        "observedGeneration": generation,
        "source": str(spec.source),
        "freight": [
            {
                "id": item.id,
                "sourceGeneration": item.source_generation,
                "images": list(item.images),
                "modelUris": list(item.model_uris),
                "discoveredAt": _stamp(item.discovered_at),
            }
            for item in decision.freight
        ],
        "stages": [_stage_status(stage) for stage in decision.stages],
        "history": [
            {
                "stage": entry.stage,
                "freight": entry.freight,
                "run": entry.run,
                "phase": entry.phase,
                "startedAt": _stamp(entry.started_at),
                **({"finishedAt": _stamp(entry.finished_at)} if entry.finished_at else {}),
            }
            for entry in decision.history
        ],
    }


def _stage_status(stage: StageStatus) -> dict[str, Any]:
    written: dict[str, Any] = {
        "name": stage.name,
        "phase": str(stage.phase),
        "since": _stamp(stage.since),
    }
    for key, value in (
        ("freight", stage.freight),
        ("promoted", stage.promoted),
        ("run", stage.run),
        ("reason", stage.reason),
        ("message", stage.message),
    ):
        if value:
            written[key] = value
    if stage.soak_until is not None:
        written["soakUntil"] = _stamp(stage.soak_until)
    return written


def recorded_from(status: Mapping[str, Any]) -> Recorded:
    """What an earlier pass recorded in ``status`` (what cannot be read is left out)."""
    freight: list[Freight] = []
    for item in status.get("freight") or ():
        moment = _time(item.get("discoveredAt"))
        generation = item.get("sourceGeneration")
        if isinstance(item.get("id"), str) and isinstance(generation, int) and moment:
            freight.append(
                Freight(
                    item["id"],
                    generation,
                    tuple(map(str, item.get("images") or ())),
                    tuple(map(str, item.get("modelUris") or ())),
                    moment,
                )
            )
    stages: dict[str, StageStatus] = {}
    for item in status.get("stages") or ():
        since = _time(item.get("since"))
        try:
            phase = StagePhase(item.get("phase"))
        except ValueError:
            continue
        if isinstance(item.get("name"), str) and since is not None:
            stages[item["name"]] = StageStatus(
                item["name"],
                phase,
                since,
                freight=str(item.get("freight") or ""),
                promoted=str(item.get("promoted") or ""),
                run=str(item.get("run") or ""),
                reason=str(item.get("reason") or ""),
                message=str(item.get("message") or ""),
                soak_until=_time(item.get("soakUntil")),
            )
    history: list[HistoryEntry] = []
    for item in status.get("history") or ():
        started = _time(item.get("startedAt"))
        if started is not None and all(
            isinstance(item.get(key), str) for key in ("stage", "freight", "run", "phase")
        ):
            history.append(
                HistoryEntry(
                    item["stage"],
                    item["freight"],
                    item["run"],
                    item["phase"],
                    started,
                    _time(item.get("finishedAt")),
                )
            )
    return Recorded(tuple(freight), stages, tuple(history))


def stage_run_from(body: Mapping[str, Any]) -> StageRun | None:
    """A ModelPromotion the path created, or None if it is not one (no stage labels)."""
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    created = _time(metadata.get("creationTimestamp"))
    if STAGE_LABEL not in labels or FREIGHT_LABEL not in labels or created is None:
        return None
    status = body.get("status") or {}
    applied = status.get("appliedGeneration")
    generation = metadata.get("generation")
    # A run's status belongs to the generation it observed; an unobserved spec is pending.
    current = status.get("observedGeneration") == generation
    return StageRun(
        name=str(metadata.get("name")),
        stage=str(labels[STAGE_LABEL]),
        freight=str(labels[FREIGHT_LABEL]),
        phase=str(status.get("phase") or "") if current else "",
        applied_generation=applied if isinstance(applied, int) and current else None,
        created_at=created,
    )


def promotions_from(annotations: Mapping[str, str]) -> dict[str, str]:
    """The manual promotions people asked for: stage name -> freight ID."""
    return {
        key[len(PROMOTE_PREFIX) :]: str(value)
        for key, value in annotations.items()
        if key.startswith(PROMOTE_PREFIX)
    }


def holds_from(annotations: Mapping[str, str]) -> dict[str, Hold]:
    """The holds people put on stages: stage name -> hold. The value is JSON with
    ``by``, ``reason`` and ``at`` (what ``kubectl promotion path hold`` writes); any
    other text (``kubectl annotate ... hold-production="INC-42"``) is the reason."""
    holds: dict[str, Hold] = {}
    for key, value in annotations.items():
        if not key.startswith(HOLD_PREFIX):
            continue
        try:
            parsed = json.loads(value)
        except (TypeError, ValueError):
            parsed = None
        if isinstance(parsed, Mapping):
            holds[key[len(HOLD_PREFIX) :]] = Hold(
                str(parsed.get("by") or ""),
                str(parsed.get("reason") or ""),
                _time(parsed.get("at")),
            )
        else:
            holds[key[len(HOLD_PREFIX) :]] = Hold(reason=str(value).strip())
    return holds


def run_body(path: Mapping[str, Any], start: Start, *, api_version: str) -> dict[str, Any]:
    """The ModelPromotion that runs ``start``: the stage's template with the source and
    target filled in, owned by the path (the garbage collector deletes it with the path)."""
    metadata = path["metadata"]
    target = start.stage.target
    source: dict[str, Any] = {"namespace": start.source.namespace, "name": start.source.name}
    if start.source.kind is not Kind.SELDON_DEPLOYMENT:
        source["kind"] = str(start.source.kind)
    if start.source.instance:
        source["instance"] = start.source.instance
    if start.source_generation is not None:
        source["generation"] = start.source_generation
    written_target: dict[str, Any] = {"namespace": target.namespace, "name": target.name}
    if target.instance:
        written_target["instance"] = target.instance
    return {
        "apiVersion": api_version,
        "kind": "ModelPromotion",
        "metadata": {
            "name": start.name,
            "namespace": metadata["namespace"],
            "labels": {
                PATH_LABEL: metadata["name"],
                STAGE_LABEL: start.stage.name,
                FREIGHT_LABEL: start.freight.id,
            },
            "ownerReferences": [
                {
                    "apiVersion": api_version,
                    "kind": "PromotionPath",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {**dict(start.stage.template), "source": source, "target": written_target},
    }


def _time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)
