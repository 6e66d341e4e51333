"""Promotion windows and freezes: whether a first write may happen now, and when next
(Argo CD's sync-window rules, cron in the window's time zone, DST)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from promotion_operator.core.windows import (
    FROZEN,
    OUTSIDE_WINDOW,
    POLICIES_UNREADABLE,
    POLICY_INVALID,
    Closed,
    Open,
    Policies,
    Window,
    WindowKind,
    gate,
    is_open,
    next_open,
    parse_policy,
)

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).astimezone(UTC)


def window(kind: str, schedule: str, minutes: float, zone: str = "UTC") -> Window:
    return Window(WindowKind(kind), schedule, datetime.timedelta(minutes=minutes), zone, "ns/p")


def policy(name: str = "p", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name}, "spec": spec}


NIGHTLY_DENY = {"kind": "deny", "schedule": "0 22 * * *", "duration": "8h"}


def test_no_window_is_always_open() -> None:
    assert is_open([], at("2026-01-01T03:00:00+00:00"))


def test_a_deny_window_closes_from_its_start_until_its_end() -> None:
    deny = [window("deny", "0 22 * * *", 60)]

    assert is_open(deny, at("2026-01-01T21:59:59+00:00"))
    assert not is_open(deny, at("2026-01-01T22:00:00+00:00"))
    assert not is_open(deny, at("2026-01-01T22:59:59+00:00"))
    assert is_open(deny, at("2026-01-01T23:00:00+00:00"))


def test_a_window_that_started_yesterday_still_covers_after_midnight() -> None:
    assert not is_open([window("deny", "0 22 * * *", 8 * 60)], at("2026-01-02T05:00:00+00:00"))


def test_with_allow_windows_outside_all_of_them_is_closed() -> None:
    allow = [window("allow", "0 9 * * 1-5", 8 * 60)]

    assert is_open(allow, at("2026-01-05T10:00:00+00:00"))  # a Monday
    assert not is_open(allow, at("2026-01-05T18:00:00+00:00"))
    assert not is_open(allow, at("2026-01-03T10:00:00+00:00"))  # a Saturday


def test_deny_wins_over_an_active_allow() -> None:
    windows = [window("allow", "0 9 * * *", 8 * 60), window("deny", "0 12 * * *", 60)]

    assert not is_open(windows, at("2026-01-05T12:30:00+00:00"))
    assert next_open(windows, at("2026-01-05T12:30:00+00:00")) == at("2026-01-05T13:00:00+00:00")


def test_the_next_allowed_time_is_the_end_of_the_deny_window() -> None:
    deny = [window("deny", "0 22 * * *", 60)]

    assert next_open(deny, at("2026-01-01T22:10:00+00:00")) == at("2026-01-01T23:00:00+00:00")


def test_back_to_back_deny_windows_are_stepped_over() -> None:
    windows = [window("deny", "0 22 * * *", 60), window("deny", "0 23 * * *", 60)]

    assert next_open(windows, at("2026-01-01T22:10:00+00:00")) == at("2026-01-02T00:00:00+00:00")


def test_the_next_allowed_time_is_the_next_allow_window_start() -> None:
    allow = [window("allow", "0 9 * * 1-5", 8 * 60)]

    # Saturday evening: the next allow window is Monday 09:00.
    assert next_open(allow, at("2026-01-03T18:00:00+00:00")) == at("2026-01-05T09:00:00+00:00")


def test_a_deny_window_at_the_start_of_the_allow_window_delays_the_opening() -> None:
    windows = [window("allow", "0 9 * * *", 8 * 60), window("deny", "0 9 * * *", 30)]

    assert next_open(windows, at("2026-01-05T08:00:00+00:00")) == at("2026-01-05T09:30:00+00:00")


def test_a_schedule_is_read_in_its_time_zone() -> None:
    berlin = [window("allow", "0 9 * * *", 60, "Europe/Berlin")]

    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    assert is_open(berlin, at("2026-01-05T08:30:00+00:00"))
    assert not is_open(berlin, at("2026-01-05T09:30:00+00:00"))
    assert is_open(berlin, at("2026-07-06T07:30:00+00:00"))


def test_a_daily_window_follows_the_spring_dst_change() -> None:
    berlin = [window("allow", "0 9 * * *", 60, "Europe/Berlin")]

    # Clocks go forward on 2026-03-29: Saturday's 09:00 is 08:00 UTC, Sunday's 07:00 UTC.
    assert next_open(berlin, at("2026-03-28T12:00:00+00:00")) == at("2026-03-29T07:00:00+00:00")


def test_a_start_in_the_skipped_hour_fires_when_the_clocks_have_moved_on() -> None:
    berlin = [window("deny", "30 2 * * *", 60, "Europe/Berlin")]

    # 02:30 does not exist on 2026-03-29 in Berlin; cron runs it at 03:00 (01:00 UTC).
    assert not is_open(berlin, at("2026-03-29T01:15:00+00:00"))
    assert next_open(berlin, at("2026-03-29T01:15:00+00:00")) == at("2026-03-29T02:00:00+00:00")


def test_a_duration_is_absolute_time_across_the_autumn_dst_change() -> None:
    berlin = [window("deny", "0 1 * * *", 3 * 60, "Europe/Berlin")]

    # Clocks go back on 2026-10-25: 01:00 CEST is 23:00 UTC, and three hours later is
    # 02:00 UTC, whatever the wall clock shows.
    assert next_open(berlin, at("2026-10-25T00:00:00+00:00")) == at("2026-10-25T02:00:00+00:00")


def test_an_allow_window_beyond_a_year_names_no_next_time() -> None:
    leap_day = [window("allow", "0 0 29 2 *", 60)]  # the next February 29th is in 2028

    assert next_open(leap_day, at("2026-01-01T00:00:00+00:00")) is None


def test_a_freeze_closes_with_its_reason_and_no_next_time() -> None:
    frozen = policy(freeze={"enabled": True, "reason": "year-end change freeze"})

    verdict = gate(Policies((frozen,)), "production", at("2026-01-01T12:00:00+00:00"))

    assert isinstance(verdict, Closed)
    assert verdict.reason == FROZEN and verdict.opens_at is None
    assert "frozen by PromotionPolicy ns/p: year-end change freeze" in verdict.message


def test_a_freeze_that_is_not_enabled_closes_nothing() -> None:
    lifted = policy(freeze={"enabled": False, "reason": "over"})

    assert gate(Policies((lifted,)), "production", at("2026-01-01T12:00:00+00:00")) == Open()


def test_a_policy_applies_only_to_the_target_namespaces_it_names() -> None:
    frozen = policy(targetNamespaces=["production"], freeze={"enabled": True, "reason": "r"})
    now = at("2026-01-01T12:00:00+00:00")

    assert gate(Policies((frozen,)), "staging", now) == Open()
    assert isinstance(gate(Policies((frozen,)), "production", now), Closed)


def test_outside_a_window_the_message_gives_the_next_allowed_time() -> None:
    verdict = gate(
        Policies((policy(windows=[NIGHTLY_DENY]),)), "production", at("2026-01-01T23:00:00+00:00")
    )

    assert isinstance(verdict, Closed)
    assert verdict.reason == OUTSIDE_WINDOW
    assert verdict.opens_at == at("2026-01-02T06:00:00+00:00")
    assert "the next allowed time is 2026-01-02T06:00:00Z" in verdict.message


def test_windows_of_several_policies_combine() -> None:
    allow = policy("a", windows=[{"kind": "allow", "schedule": "0 9 * * *", "duration": "8h"}])
    deny = policy("d", windows=[{"kind": "deny", "schedule": "0 12 * * *", "duration": "1h"}])

    verdict = gate(Policies((allow, deny)), "production", at("2026-01-01T12:15:00+00:00"))

    assert isinstance(verdict, Closed) and verdict.opens_at == at("2026-01-01T13:00:00+00:00")


def test_unreadable_policies_keep_the_gate_closed() -> None:
    verdict = gate(Policies(error="403 Forbidden"), "production", at("2026-01-01T12:00:00+00:00"))

    assert isinstance(verdict, Closed) and verdict.reason == POLICIES_UNREADABLE


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"kind": "sometimes", "schedule": "0 1 * * *", "duration": "1h"}, "windows[0].kind"),
        ({"kind": "deny", "schedule": "0 25 * * *", "duration": "1h"}, "windows[0].schedule"),
        ({"kind": "deny", "schedule": "0 0 1 * * *", "duration": "1h"}, "windows[0].schedule"),
        ({"kind": "deny", "schedule": "0 1 * * *", "duration": "1 hour"}, "windows[0].duration"),
        (
            {"kind": "deny", "schedule": "0 1 * * *", "duration": "1h", "timeZone": "Mars/Base"},
            "windows[0].timeZone",
        ),
    ],
    ids=["kind", "schedule", "six-fields", "duration", "time-zone"],
)
def test_a_policy_the_gate_cannot_use_keeps_it_closed_naming_the_field(
    entry: dict[str, Any], named: str
) -> None:
    verdict = gate(Policies((policy(windows=[entry]),)), "prod", at("2026-01-01T12:00:00+00:00"))

    assert isinstance(verdict, Closed) and verdict.reason == POLICY_INVALID
    assert f"PromotionPolicy ns/p: spec.{named}" in verdict.message


def test_the_recheck_is_at_the_next_allowed_time_but_never_later_than_the_ceiling() -> None:
    now = at("2026-01-01T12:00:00+00:00")
    soon = Closed(OUTSIDE_WINDOW, "", now + datetime.timedelta(seconds=4))
    later = Closed(OUTSIDE_WINDOW, "", now + datetime.timedelta(hours=4))

    assert soon.recheck_after(now, 10.0) == 4.0
    assert later.recheck_after(now, 10.0) == 10.0
    assert Closed(FROZEN, "").recheck_after(now, 10.0) == 10.0


def test_a_policy_is_read_with_its_defaults() -> None:
    read = parse_policy(policy(windows=[NIGHTLY_DENY]))

    assert read.target_namespaces == () and read.freeze is None
    assert read.windows[0].time_zone == "UTC"
    assert read.windows[0].duration == datetime.timedelta(hours=8)
