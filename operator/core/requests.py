"""What people ask of a run, through annotations on the ModelPromotion.

Requests are annotations, not spec fields, because a spec change starts a new
run (and fights GitOps tools that own the spec), while a request acts on the
run that exists. ``retry`` stays: its value is a token, and the run it started
records that token in ``status.lastRetry``, in the same status write, so each
retry request is acted on exactly once, also across restarts.

``approve``, ``abort`` and ``resume`` are removed once used (acted on, or left
from before a run started, so they never carry over to the next run). Their
values are not unique (alice approves as ``alice`` every time), so a value alone
cannot tell an old request from a new one. The pass that uses one records its
value in ``status.consumedRequests``, in the same status write that records what
it led to; only then is the annotation removed, and once it is gone the record
is cleared. A pass that finds an annotation its status records as used
(:func:`used_before`) does not act on it again: it only removes it. A record
whose annotation is gone (or now holds another value) is cleared, so it never
stands for a later request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from promotion_operator.core.promotion import ANNOTATION_PREFIX

APPROVE_ANNOTATION = f"{ANNOTATION_PREFIX}/approve"  # the approver's user name
ABORT_ANNOTATION = f"{ANNOTATION_PREFIX}/abort"
RETRY_ANNOTATION = f"{ANNOTATION_PREFIX}/retry"  # a token, new for every request
RESUME_ANNOTATION = f"{ANNOTATION_PREFIX}/resume"  # ends a canary pause without duration

#: The requests the operator removes once used, by name.
CONSUMED = {"approve": APPROVE_ANNOTATION, "abort": ABORT_ANNOTATION, "resume": RESUME_ANNOTATION}


@dataclass(frozen=True)
class Requests:
    """The requests set on the resource now (None: not asked)."""

    approve: str | None = None
    abort: str | None = None
    retry: str | None = None
    resume: str | None = None

    def present(self) -> tuple[str, ...]:
        """The names of the consumed-once requests that are set."""
        return tuple(name for name in CONSUMED if getattr(self, name) is not None)

    def values(self, names: tuple[str, ...]) -> dict[str, str]:
        """The values of the consumed-once requests ``names`` that are set, by name."""
        return {name: value for name in names if (value := getattr(self, name)) is not None}

    def without(self, names: tuple[str, ...]) -> Requests:
        """These requests with ``names`` taken as not asked."""
        return replace(self, **dict.fromkeys(names))


def used_before(requests: Requests, consumed: Mapping[str, str]) -> tuple[str, ...]:
    """The requests set now that ``consumed`` (the recorded ``consumedRequests``) says
    were used already: the same value, still there because the pass that used them
    stopped before it removed their annotation. They are removed, not acted on."""
    return tuple(
        name for name in requests.present() if consumed.get(name) == getattr(requests, name)
    )


def consumed_by(requests: Requests, used: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """What ``consumedRequests`` records after a pass that used ``used`` of ``requests``
    (as read from the annotations): each one's name and value, in a fixed order."""
    names = set(used)
    return tuple(
        (name, value) for name, value in requests.values(tuple(CONSUMED)).items() if name in names
    )


def requests_from(annotations: Mapping[str, str] | None) -> Requests:
    """The requests in a resource's annotations (empty values count as not set)."""
    annotations = annotations or {}

    def value(key: str) -> str | None:
        found = annotations.get(key)
        return found.strip() or None if isinstance(found, str) else None

    return Requests(
        approve=value(APPROVE_ANNOTATION),
        abort=value(ABORT_ANNOTATION),
        retry=value(RETRY_ANNOTATION),
        resume=value(RESUME_ANNOTATION),
    )
