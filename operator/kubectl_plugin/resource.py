"""A ModelPromotion as the plugin reads it, and what the plugin decides from it.

Pure functions only (no API calls, no clock): the lenient view of an object
(:class:`Promotion`), whether the run of the current generation has finished
and with which exit code (:func:`run_outcome`), and what each request writes
(:func:`decide_approve`, :func:`decide_abort`, :func:`decide_retry`,
:func:`decide_resume`). The status fields are the operator's (docs/contract.md);
a missing or malformed field reads as absent, never as an error, so the plugin
works on objects written by older or newer operators.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GROUP = "deploy.mlops.dev"
VERSION = "v1alpha1"
PLURAL = "modelpromotions"
KIND = "ModelPromotion"
#: The kinds the plugin reads, by plural (for messages).
KINDS = {
    PLURAL: KIND,
    "promotionpaths": "PromotionPath",
    "promotionpolicies": "PromotionPolicy",
}

# The requests, as annotations (the operator's promotion_operator.core.requests).
APPROVE_ANNOTATION = f"{GROUP}/approve"  # the approver's own user name
ABORT_ANNOTATION = f"{GROUP}/abort"  # when it was asked, RFC 3339
RETRY_ANNOTATION = f"{GROUP}/retry"  # a token, new for every request
RESUME_ANNOTATION = f"{GROUP}/resume"  # ends a canary pause without duration
RESUME_VALUE = "true"

FINISHED_PHASES = frozenset({"Succeeded", "Failed", "RolledBack", "Aborted"})
AWAITING_APPROVAL = "AwaitingApproval"
PAUSED = "Paused"
BAKING = "Baking"  # the last write is Available and watched a while (spec.bake)


class ExitCode(enum.IntEnum):
    """The plugin's exit codes: ``watch`` maps the run's outcome; every command uses
    ``NOT_FOUND`` and ``ERROR``."""

    SUCCEEDED = 0  # also: a command that did what was asked, or found it already done
    FAILED = 1
    ROLLED_BACK = 2
    ABORTED = 3
    TIMED_OUT = 4
    NOT_FOUND = 5  # no such ModelPromotion, or a usage error
    ERROR = 6  # refused (by the API server or by the run's state), or the API unreachable
    BLOCKED = 7  # path watch: a stage is Blocked, and nothing before it moves


OK = ExitCode.SUCCEEDED


def exit_code_for(phase: str, outcome_reason: str = "") -> ExitCode | None:
    """The exit code of a finished run (None while it has not finished).

    A run aborted after its write ends ``RolledBack`` (or ``Failed`` when the
    rollback failed) with outcome reason ``Aborted``: that is an abort too.
    """
    if phase not in FINISHED_PHASES:
        return None
    if phase == "Aborted" or outcome_reason == "Aborted":
        return ExitCode.ABORTED
    return {
        "Succeeded": ExitCode.SUCCEEDED,
        "Failed": ExitCode.FAILED,
        "RolledBack": ExitCode.ROLLED_BACK,
    }[phase]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else ()


def _int(value: Any) -> int | None:
    # bool is an int in Python, never in the API.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_time(text: Any) -> datetime.datetime | None:
    """An RFC 3339 time as the API writes it (None when absent or malformed)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC, seconds precision, as Kubernetes writes times."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment_ref(ref: Mapping[str, Any], default_name: str = "", instance: str = "") -> str:
    """``[instance:]namespace/name`` of a spec's source or target, as the status writes it."""
    name = _text(ref.get("name")) or default_name
    where = _text(ref.get("instance")) or instance
    text = f"{_text(ref.get('namespace'))}/{name}"
    return f"{where}:{text}" if where else text


@dataclass(frozen=True)
class Condition:
    """One of the status conditions."""

    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class RetryWait:
    """A retry that ``watch`` waits for: the token, and the run it was asked of."""

    token: str
    run_before: tuple[int | None, int]  # (observedGeneration, retry) when asked
    finished_before: bool  # whether that run had finished


class Promotion:
    """A lenient, read-only view of one ModelPromotion object."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.metadata = _map(body.get("metadata"))
        self.spec = _map(body.get("spec"))
        self.status = _map(body.get("status"))

    # --- metadata ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return _text(self.metadata.get("name"))

    @property
    def namespace(self) -> str:
        return _text(self.metadata.get("namespace"))

    @property
    def generation(self) -> int | None:
        return _int(self.metadata.get("generation"))

    @property
    def resource_version(self) -> str:
        return _text(self.metadata.get("resourceVersion"))

    @property
    def created(self) -> datetime.datetime | None:
        return parse_time(self.metadata.get("creationTimestamp"))

    @property
    def annotations(self) -> Mapping[str, Any]:
        return _map(self.metadata.get("annotations"))

    def request(self, annotation: str) -> str | None:
        """A request annotation's value (empty counts as not set, as for the operator)."""
        value = self.annotations.get(annotation)
        return value.strip() or None if isinstance(value, str) else None

    # --- spec ---------------------------------------------------------------------
    @property
    def source(self) -> str:
        """``status.source``, or the spec's source before the operator wrote a status."""
        if written := _text(self.status.get("source")):
            return written
        source = _map(self.spec.get("source"))
        return deployment_ref(source) if source else ""

    @property
    def target(self) -> str:
        """``status.target``, or the spec's target (with the spec's defaults)."""
        if written := _text(self.status.get("target")):
            return written
        source, target = _map(self.spec.get("source")), _map(self.spec.get("target"))
        if not target:
            return ""
        return deployment_ref(target, _text(source.get("name")), _text(source.get("instance")))

    @property
    def strategy(self) -> str:
        return _text(self.spec.get("strategy")) or "Replace"

    @property
    def canary_steps(self) -> int | None:
        steps = _map(self.spec.get("canary")).get("steps")
        return len(steps) if isinstance(steps, list) else None

    @property
    def approval_required(self) -> bool:
        return _map(self.spec.get("approval")).get("required") is True

    @property
    def approval_groups(self) -> tuple[str, ...]:
        groups = _list(_map(self.spec.get("approval")).get("groups"))
        return tuple(g for g in groups if isinstance(g, str))

    # --- status -------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return _text(self.status.get("phase"))

    @property
    def observed_generation(self) -> int | None:
        return _int(self.status.get("observedGeneration"))

    @property
    def retry(self) -> int:
        """The run number within the generation: 0, then one more per retry."""
        return _int(self.status.get("retry")) or 0

    @property
    def last_retry(self) -> str | None:
        return _text(self.status.get("lastRetry")) or None

    def being_removed(self, annotation: str) -> str | None:
        """The value of a used request of this annotation that the operator is still
        removing (``status.consumedRequests``), or None."""
        name = annotation.removeprefix(f"{GROUP}/")
        for entry in _list(self.status.get("consumedRequests")):
            if _map(entry).get("name") == name:
                return _text(_map(entry).get("value")) or None
        return None

    @property
    def run_id(self) -> tuple[int | None, int]:
        """Which run the status is of: (generation, retry)."""
        return (self.observed_generation, self.retry)

    @property
    def run_label(self) -> str:
        """The run as ``generation.retry`` (``-`` before the operator wrote a status)."""
        generation = self.observed_generation
        return "-" if generation is None else f"{generation}.{self.retry}"

    def condition(self, kind: str) -> Condition | None:
        for item in _list(self.status.get("conditions")):
            item = _map(item)
            if item.get("type") == kind:
                return Condition(
                    _text(item.get("status")), _text(item.get("reason")), _text(item.get("message"))
                )
        return None

    @property
    def ready_reason(self) -> str:
        ready = self.condition("Ready")
        return ready.reason if ready else ""

    @property
    def message(self) -> str:
        ready = self.condition("Ready")
        return ready.message if ready else ""

    @property
    def outcome(self) -> tuple[str, str]:
        """(reason, message) of why the run failed or was rolled back."""
        outcome = _map(self.status.get("outcome"))
        return _text(outcome.get("reason")), _text(outcome.get("message"))

    @property
    def last_error(self) -> tuple[str, str]:
        error = _map(self.status.get("lastError"))
        return _text(error.get("reason")), _text(error.get("message"))

    @property
    def canary(self) -> Mapping[str, Any]:
        return _map(self.status.get("canary"))

    @property
    def canary_step(self) -> int | None:
        return _int(self.canary.get("step"))

    @property
    def canary_weight(self) -> int | None:
        return _int(self.canary.get("weight"))

    @property
    def bake(self) -> Mapping[str, Any]:
        """``status.bake``: the bake after the last write (spec.bake), once it started."""
        return _map(self.status.get("bake"))

    @property
    def bake_window(self) -> tuple[str, str]:
        """(startedAt, endsAt) of the bake, "" when absent."""
        return _text(self.bake.get("startedAt")), _text(self.bake.get("endsAt"))

    @property
    def bake_progress(self) -> list[tuple[str, int]]:
        """(template, conclusive measurements taken) for each of the bake's templates."""
        entries = (_map(e) for e in _list(self.bake.get("analysis")))
        return [(_text(e.get("template")), _int(e.get("taken")) or 0) for e in entries]

    @property
    def bake_alerts(self) -> list[str]:
        """The names of the alerts seen firing during the bake."""
        return [_text(_map(a).get("alertname")) for a in _list(self.bake.get("alerts"))]

    @property
    def measurements(self) -> list[Mapping[str, Any]]:
        """The recent measurements, oldest first: the canary's, then the bake's."""
        recorded = [*_list(self.canary.get("measurements")), *_list(self.bake.get("measurements"))]
        return [_map(m) for m in recorded]

    @property
    def comparisons(self) -> dict[str, Mapping[str, Any]]:
        """The ``compare`` of each analysis template that judges the challenger against
        the champion, by template name."""
        templates = _list(_map(self.spec.get("analysis")).get("templates"))
        return {
            _text(t.get("name")): _map(t.get("compare"))
            for t in map(_map, templates)
            if isinstance(t.get("compare"), Mapping)
        }

    @property
    def approved(self) -> tuple[str, str] | None:
        """(by, at) of the current run's approval, if it was approved."""
        approval = _map(self.status.get("approval"))
        by = _text(approval.get("by"))
        return (by, _text(approval.get("at"))) if by else None

    @property
    def history(self) -> list[Mapping[str, Any]]:
        """``status.history``, newest first (sorted by run, whatever the stored order)."""
        entries = [_map(e) for e in _list(self.status.get("history"))]

        def key(entry: Mapping[str, Any]) -> tuple[int, int, str]:
            return (
                _int(entry.get("generation")) or 0,
                _int(entry.get("retry")) or 0,
                _text(entry.get("startedAt")),
            )

        return sorted(entries, key=key, reverse=True)

    # --- the run ------------------------------------------------------------------
    @property
    def current(self) -> bool:
        """Whether the status is of the current generation's run."""
        return self.generation is not None and self.observed_generation == self.generation

    @property
    def pending_retry(self) -> str | None:
        """A retry token set and not handled yet (the operator records the handled one)."""
        token = self.request(RETRY_ANNOTATION)
        return token if token is not None and token != self.last_retry else None

    @property
    def started(self) -> bool:
        """Whether the run the next request acts on exists: the current generation's,
        with no retry about to replace it."""
        return self.current and self.pending_retry is None

    @property
    def finished(self) -> bool:
        return self.started and self.phase in FINISHED_PHASES

    def change_key(self) -> tuple[Any, ...]:
        """What ``watch`` prints a line for when it changes."""
        return (
            self.observed_generation,
            self.retry,
            self.phase,
            self.ready_reason,
            self.canary_step,
            self.canary_weight,
            self.pending_retry,
        )


def run_outcome(promotion: Promotion, waiting_for: RetryWait | None = None) -> ExitCode | None:
    """The exit code once the run of the current generation has finished, else None.

    Not finished: the status is of an earlier generation, a retry is pending
    (its token differs from ``status.lastRetry``), or (``waiting_for``) the
    operator has not handled the retry this command asked for: until
    ``status.lastRetry`` is that token, and, when the run it was asked of had
    finished, until a new run (another ``generation.retry``) has replaced it.
    So the previous run's final phase is never taken for the new run's.
    """
    if not promotion.started:
        return None
    if waiting_for is not None:
        if promotion.last_retry != waiting_for.token:
            return None
        if waiting_for.finished_before and promotion.run_id == waiting_for.run_before:
            return None
    return exit_code_for(promotion.phase, promotion.outcome[0])


@dataclass(frozen=True)
class Decision:
    """What a request command does: write ``value`` (or nothing) and say ``message``."""

    value: str | None
    message: str
    exit_code: ExitCode = OK
    watch: RetryWait | None = None


def _ended(promotion: Promotion) -> str:
    return f"{promotion.run_label} ended {promotion.phase}"


def _not_started(promotion: Promotion) -> str:
    if promotion.pending_retry is not None:
        return f"a retry ({promotion.pending_retry}) is about to start a new run"
    return f"the run of generation {promotion.generation} has not started yet"


def still_removing(promotion: Promotion, annotation: str) -> Decision | None:
    """Refuse to set a request while the operator is still removing the one before it
    of the same name: the operator would take a new one with the same value for it
    (docs/contract.md 9.1). It lasts only until the operator's next pass. (While the
    annotation is still set, the request's own decision says it waits.)"""
    value = promotion.being_removed(annotation)
    if value is None or promotion.request(annotation) is not None:
        return None
    return Decision(
        None,
        f"the operator is still removing the previous {annotation}={value} request "
        "it acted on; try again in a moment (once it runs)",
        ExitCode.ERROR,
    )


def decide_approve(promotion: Promotion, user: str) -> Decision:
    """Approve as ``user`` (the caller, from a SelfSubjectReview); never replace
    another person's approval that the operator has not acted on yet."""
    existing = promotion.request(APPROVE_ANNOTATION)
    if not promotion.approval_required:
        return Decision(None, "it does not require approval (spec.approval.required is not true)")
    if existing == user:
        return Decision(None, f"already approved by you ({user}); waiting for the operator")
    if existing is not None:
        return Decision(None, f"already approved by {existing}; waiting for the operator")
    if not promotion.started:
        return Decision(
            None,
            f"{_not_started(promotion)}: approve once it waits for approval",
            ExitCode.ERROR,
        )
    if approved := promotion.approved:
        return Decision(None, f"run {promotion.run_label} was already approved by {approved[0]}")
    if promotion.finished:
        return Decision(
            None, f"nothing to approve: run {promotion.run_label} ended {promotion.phase}"
        )
    note = (
        ""
        if promotion.phase == AWAITING_APPROVAL
        else f" (the run is {promotion.phase or 'starting'}: the approval counts at the gate)"
    )
    return Decision(user, f"approved as {user}{note}")


def decide_abort(promotion: Promotion, now: datetime.datetime) -> Decision:
    """Abort the current run; aborting twice, or a finished run, does nothing."""
    if (existing := promotion.request(ABORT_ANNOTATION)) is not None:
        return Decision(None, f"abort already requested at {existing}; waiting for the operator")
    if not promotion.started:
        return Decision(None, f"{_not_started(promotion)}: nothing to abort yet", ExitCode.ERROR)
    if promotion.finished:
        return Decision(
            None, f"nothing to abort: run {promotion.run_label} ended {promotion.phase}"
        )
    return Decision(
        format_time(now),
        f"abort requested for run {promotion.run_label} ({promotion.phase})",
    )


def decide_retry(promotion: Promotion, token: str) -> Decision:
    """Ask for a new run with ``token``; join a retry already asked for rather than
    replacing it (whoever asked for it waits for its token)."""
    if (pending := promotion.pending_retry) is not None:
        return Decision(
            None,
            f"a retry is already requested ({pending}); waiting for the operator to start it",
            watch=RetryWait(pending, promotion.run_id, promotion.phase in FINISHED_PHASES),
        )
    if not promotion.current:
        return Decision(
            None,
            f"generation {promotion.generation} has not run yet: its run starts without a retry",
        )
    if not promotion.finished:
        return Decision(
            None,
            f"run {promotion.run_label} is still {promotion.phase or 'starting'}: "
            "retry once it has ended (or abort it first)",
            ExitCode.ERROR,
        )
    return Decision(
        token,
        f"retry requested ({token}) of run {promotion.run_label} ({promotion.phase})",
        watch=RetryWait(token, promotion.run_id, True),
    )


def decide_resume(promotion: Promotion) -> Decision:
    """End a canary pause; only a paused run can be resumed."""
    if promotion.request(RESUME_ANNOTATION) is not None:
        return Decision(None, "resume already requested; waiting for the operator")
    if not promotion.started or promotion.phase != PAUSED:
        phase = promotion.phase or "not started"
        return Decision(
            None, f"nothing to resume: run {promotion.run_label} is {phase}, not Paused"
        )
    return Decision(RESUME_VALUE, f"resume requested for run {promotion.run_label}")
