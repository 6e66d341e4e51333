"""Promotion windows and freezes: may a run's first write to a target happen now, and
if not, when next.

A ``PromotionPolicy`` (its own resource, in the namespace of the ModelPromotions it
governs) selects target namespaces and holds windows in Argo CD's sync-window form
(allow or deny, a cron schedule, a duration, a time zone) and a freeze switch. The
rules are Argo CD's:

- no window selects the target: writes are allowed at any time;
- a deny window that is active closes the target, whatever allow windows say;
- if any allow window selects the target, it is open only while one of them is active;
- a freeze closes the target until it is lifted (it has no next allowed time).

:func:`gate` decides from plain data (the policies as read, the target namespace and
the time) and returns one :data:`Gate` value; nothing here reads a clock or an API.
Cron schedules are evaluated by ``cronsim`` in the window's time zone, so a daily
window at 02:30 follows daylight saving time as cron does; durations are absolute
time.
"""

from __future__ import annotations

import datetime
import enum
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cronsim import CronSim, CronSimError

from promotion_operator.core.durations import parse_duration

#: How far ahead the next allowed time is looked for; beyond it, none is named.
HORIZON = datetime.timedelta(days=366)
#: At most this many window edges are stepped over while looking for it.
_MAX_EDGES = 10_000

#: Ready reasons of a run held before its first write (contract 15).
FROZEN = "Frozen"
OUTSIDE_WINDOW = "OutsidePromotionWindow"
POLICY_INVALID = "PromotionPolicyInvalid"
POLICIES_UNREADABLE = "PromotionPoliciesUnreadable"


class WindowKind(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class PolicyError(ValueError):
    """A policy the gate cannot use; the message names the policy and the field."""


@dataclass(frozen=True)
class Window:
    """One window: from each time ``schedule`` fires (in ``time_zone``) for ``duration``."""

    kind: WindowKind
    schedule: str
    duration: datetime.timedelta
    time_zone: str = "UTC"
    policy: str = ""  # the PromotionPolicy that holds it, for messages

    def active_until(self, now: datetime.datetime) -> datetime.datetime | None:
        """The end of the occurrence that covers ``now``, or None if none does."""
        # The latest start at or before now: cronsim steps strictly before its origin,
        # and schedules fire on whole minutes.
        start = next(self._starts(now + datetime.timedelta(microseconds=1), reverse=True))
        end = start + self.duration
        return end if start <= now < end else None

    def next_start(self, after: datetime.datetime) -> datetime.datetime:
        """The first start strictly after ``after``."""
        return next(self._starts(after, reverse=False))

    def _starts(self, origin: datetime.datetime, *, reverse: bool) -> Iterator[datetime.datetime]:
        local = origin.astimezone(zoneinfo.ZoneInfo(self.time_zone))
        for start in CronSim(self.schedule, local, reverse=reverse):
            yield start.astimezone(datetime.UTC)  # so that a duration is absolute time


@dataclass(frozen=True)
class Freeze:
    reason: str
    policy: str


@dataclass(frozen=True)
class PromotionPolicy:
    """A policy as the gate uses it."""

    name: str
    target_namespaces: tuple[str, ...] = ()  # empty: every target namespace
    windows: tuple[Window, ...] = ()
    freeze: Freeze | None = None

    def selects(self, namespace: str) -> bool:
        return not self.target_namespaces or namespace in self.target_namespaces


@dataclass(frozen=True)
class Policies:
    """The PromotionPolicies of the ModelPromotion's namespace, as read; ``error``: they
    could not be read, so the gate stays closed (a freeze may be among them)."""

    items: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Open:
    """The first write may happen now."""


@dataclass(frozen=True)
class Closed:
    """The first write must wait: ``reason`` is the Ready reason, ``message`` says why,
    ``opens_at`` is the next allowed time (None: none known, as for a freeze)."""

    reason: str
    message: str
    opens_at: datetime.datetime | None = None

    def recheck_after(self, now: datetime.datetime, ceiling: float) -> float:
        """Seconds to the next look: the next allowed time, but at least every
        ``ceiling`` seconds, so a policy changed meanwhile is seen."""
        if self.opens_at is None:
            return ceiling
        return max(0.0, min(ceiling, (self.opens_at - now).total_seconds()))


Gate = Open | Closed


def gate(policies: Policies, target_namespace: str, now: datetime.datetime) -> Gate:
    """Whether a run's first write to ``target_namespace`` may happen at ``now``."""
    if policies.error is not None:
        return Closed(
            POLICIES_UNREADABLE,
            f"waiting before the first write: the PromotionPolicies could not be read "
            f"({policies.error})",
        )
    try:
        parsed = [parse_policy(item) for item in policies.items]
    except PolicyError as error:
        return Closed(POLICY_INVALID, f"waiting before the first write: {error}")
    selecting = [p for p in parsed if p.selects(target_namespace)]
    freezes = [p.freeze for p in selecting if p.freeze is not None]
    if freezes:
        freeze = freezes[0]
        return Closed(
            FROZEN,
            f"waiting before the first write: {target_namespace} is frozen by "
            f"PromotionPolicy {freeze.policy}: {freeze.reason}",
        )
    windows = [w for p in selecting for w in p.windows]
    try:
        if is_open(windows, now):
            return Open()
        opens_at = next_open(windows, now)
    except (CronSimError, zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        return Closed(POLICY_INVALID, f"waiting before the first write: {error}")
    when = (
        f"the next allowed time is {_format(opens_at)}"
        if opens_at is not None
        else f"no window opens within {HORIZON.days} days"
    )
    return Closed(
        OUTSIDE_WINDOW,
        f"waiting before the first write: {target_namespace} is outside its promotion "
        f"windows ({_naming(windows, now)}); {when}",
        opens_at,
    )


def is_open(windows: Sequence[Window], now: datetime.datetime) -> bool:
    """Argo CD's rule: no active deny window, and an active allow window if there are any."""
    if any(w.kind is WindowKind.DENY and w.active_until(now) for w in windows):
        return False
    allows = [w for w in windows if w.kind is WindowKind.ALLOW]
    return not allows or any(w.active_until(now) for w in allows)


def next_open(windows: Sequence[Window], now: datetime.datetime) -> datetime.datetime | None:
    """The first moment at or after ``now`` when :func:`is_open` holds, within
    :data:`HORIZON`; None if there is none."""
    moment = now
    for _ in range(_MAX_EDGES):
        if is_open(windows, moment):
            return moment
        # Openness changes only where a window starts or ends: step to the next edge.
        edges = [w.next_start(moment) for w in windows]
        edges += [end for w in windows if (end := w.active_until(moment)) is not None]
        moment = min(edge for edge in edges if edge > moment)
        if moment - now > HORIZON:
            return None
    return None


def parse_policy(item: Mapping[str, Any]) -> PromotionPolicy:
    """A PromotionPolicy resource as the gate uses it; :class:`PolicyError` names the
    policy and the field when it cannot be used (the CRD refuses most such input)."""
    metadata = item.get("metadata") or {}
    name = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
    spec = item.get("spec") or {}

    def problem(field: str, what: str) -> PolicyError:
        return PolicyError(f"PromotionPolicy {name}: spec.{field} {what}")

    namespaces = spec.get("targetNamespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise problem("targetNamespaces", "must be a list of namespace names")
    windows = []
    for index, entry in enumerate(spec.get("windows") or []):
        field = f"windows[{index}]"
        if not isinstance(entry, Mapping):
            raise problem(field, "must be an object")
        windows.append(_window(entry, name, f"spec.{field}"))
    freeze = spec.get("freeze") or {}
    frozen = None
    if isinstance(freeze, Mapping) and freeze.get("enabled") is True:
        frozen = Freeze(str(freeze.get("reason") or "no reason given"), name)
    return PromotionPolicy(name, tuple(namespaces), tuple(windows), frozen)


def _window(entry: Mapping[str, Any], policy: str, at: str) -> Window:
    def problem(field: str, what: str) -> PolicyError:
        return PolicyError(f"PromotionPolicy {policy}: {at}.{field} {what}")

    try:
        kind = WindowKind(str(entry.get("kind")))
    except ValueError:
        raise problem("kind", f"is {entry.get('kind')!r}, not allow or deny") from None
    schedule = entry.get("schedule")
    if not isinstance(schedule, str) or len(schedule.split()) != 5:
        raise problem("schedule", "must be a cron schedule of five fields, such as '0 22 * * *'")
    try:
        CronSim(schedule, datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
    except CronSimError as error:
        raise problem("schedule", f"{schedule!r} is not a cron schedule: {error}") from None
    try:
        seconds = parse_duration(str(entry.get("duration", "")))
    except ValueError as error:
        raise problem("duration", str(error)) from None
    if seconds <= 0:
        raise problem("duration", "must be longer than 0s")
    time_zone = str(entry.get("timeZone") or "UTC")
    try:
        zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise problem("timeZone", f"{time_zone!r} is not an IANA time zone") from None
    return Window(kind, schedule, datetime.timedelta(seconds=seconds), time_zone, policy)


def _naming(windows: Sequence[Window], now: datetime.datetime) -> str:
    denying = [w for w in windows if w.kind is WindowKind.DENY and w.active_until(now)]
    if denying:
        return "; ".join(f"deny '{w.schedule}' {w.time_zone} of {w.policy}" for w in denying)
    return "no allow window is active"


def _format(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
