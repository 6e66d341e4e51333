"""What people ask of a run, through annotations on the ModelPromotion.

Requests are annotations, not spec fields, because a spec change starts a new
run (and fights GitOps tools that own the spec), while a request acts on the
run that exists. The operator removes ``approve``, ``abort`` and ``resume`` once
it acted on them (and any left from before a run started, so they never carry
over to the next run). ``retry`` stays: its value is a token, and the run it
started records that token in ``status.lastRetry``, in the same status write,
so each retry request is acted on exactly once, also across restarts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
