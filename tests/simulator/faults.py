"""Faults injected in front of the API, as a flaky ingress or overloaded server would.

A rule has a kind, an optional scope (method and path regexes, `re.search` on
the full request path), a probability and an optional count of triggers after
which it disappears. Per request, every matching latency rule adds its delay,
then the first matching failing rule (error, rate_limit, drop, malformed) in
insertion order decides the outcome.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from tests.simulator.records import FaultKind, FaultRecord, MalformedBody

FAULT_KINDS: frozenset[str] = frozenset({"latency", "error", "rate_limit", "drop", "malformed"})
MALFORMED_BODIES: frozenset[str] = frozenset(
    {"not-json", "wrong-content-type", "huge", "missing-fields"}
)


@dataclass
class FaultRule:
    """One installed fault."""

    id: str
    kind: FaultKind
    method: re.Pattern[str] | None
    path: re.Pattern[str] | None
    probability: float
    remaining: int | None
    status_codes: tuple[int, ...]
    latency_ms: int
    retry_after_seconds: int | None  # sent with 429 (default 1 s), and with errors if set
    body: MalformedBody = "not-json"

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule's scope covers this request."""
        if self.method is not None and not self.method.fullmatch(method.upper()):
            return False
        return self.path is None or self.path.search(path) is not None

    def record(self) -> FaultRecord:
        """The control API's view of the rule."""
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method.pattern if self.method else None,
            "path": self.path.pattern if self.path else None,
            "probability": self.probability,
            "remaining": self.remaining,
            "status_codes": list(self.status_codes),
            "latency_ms": self.latency_ms,
            "retry_after_seconds": self.retry_after_seconds,
            "body": self.body,
        }


@dataclass(frozen=True)
class Decision:
    """What to do to one request: delay it, then maybe fail it."""

    latency_ms: int = 0
    failure: FaultRule | None = None
    status: int | None = None


def parse_rule(spec: Mapping[str, Any]) -> FaultRule:
    """Build a rule from the control API's JSON, raising ValueError on nonsense."""
    kind = spec.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}")
    probability = float(spec.get("probability", 1.0))
    if not 0.0 <= probability <= 1.0:
        raise ValueError("probability must be within 0..1")
    count = spec.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer")
    codes = tuple(int(c) for c in spec.get("status_codes") or [503])
    if kind == "error" and not all(400 <= c <= 599 for c in codes):
        raise ValueError("status_codes must be HTTP error codes")
    latency_ms = int(spec.get("latency_ms", 0))
    if kind == "latency" and latency_ms <= 0:
        raise ValueError("latency_ms must be positive for a latency fault")
    retry_after: int | None = None
    if spec.get("retry_after_seconds") is not None:
        retry_after = int(spec["retry_after_seconds"])
    elif kind == "rate_limit":
        retry_after = 1
    if retry_after is not None and retry_after < 0:
        raise ValueError("retry_after_seconds must not be negative")
    body = spec.get("body", "not-json")
    if body not in MALFORMED_BODIES:
        raise ValueError(f"body must be one of {sorted(MALFORMED_BODIES)}")
    method = spec.get("method")
    path = spec.get("path")
    try:
        method_re = re.compile(str(method).upper()) if method else None
        path_re = re.compile(str(path)) if path else None
    except re.error as exc:
        raise ValueError(f"bad scope regex: {exc}") from exc
    return FaultRule(
        id=uuid.uuid4().hex[:12],
        kind=cast(FaultKind, kind),
        method=method_re,
        path=path_re,
        probability=probability,
        remaining=count,
        status_codes=codes,
        latency_ms=latency_ms,
        retry_after_seconds=retry_after,
        body=cast(MalformedBody, body),
    )


class FaultInjector:
    """The installed rules and the random source that decides probabilistic ones."""

    def __init__(self, seed: int | None = None) -> None:
        self.rules: list[FaultRule] = []
        self._random = random.Random(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        """Install a rule after the existing ones."""
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        """Remove one rule; False if there was none with that id."""
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        """Remove every rule."""
        self.rules.clear()

    def reseed(self, seed: int | None) -> None:
        """Make probabilistic faults reproducible (or random again with None)."""
        self._random = random.Random(seed)

    def decide(self, method: str, path: str) -> Decision:
        """Pick the faults for one request, spending counted triggers."""
        latency = 0
        failure: FaultRule | None = None
        for rule in list(self.rules):
            if not rule.matches(method, path):
                continue
            if rule.kind != "latency" and failure is not None:
                continue
            if self._random.random() >= rule.probability:
                continue
            self._spend(rule)
            if rule.kind == "latency":
                latency += rule.latency_ms
            else:
                failure = rule
        status: int | None = None
        if failure is not None and failure.kind == "error":
            status = self._random.choice(failure.status_codes)
        elif failure is not None and failure.kind == "rate_limit":
            status = 429
        return Decision(latency_ms=latency, failure=failure, status=status)

    def _spend(self, rule: FaultRule) -> None:
        if rule.remaining is None:
            return
        rule.remaining -= 1
        if rule.remaining <= 0:
            self.rules.remove(rule)
