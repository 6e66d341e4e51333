"""``make demo``'s path round: the example path, made short enough for a demo."""

from __future__ import annotations

import yaml

from promotion_operator.core.durations import parse_duration
from promotion_operator.core.paths import Policy, parse_path_spec
from tests.harness.demo_path import EXAMPLE, short_path


def test_the_demo_path_is_the_example_with_soaks_of_seconds_on_one_instance() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    short = parse_path_spec(short_path(example)["spec"])
    original = parse_path_spec(example["spec"])
    assert [s.name for s in short.stages] == [s.name for s in original.stages]
    assert [s.policy for s in short.stages] == [Policy.AUTO, Policy.AUTO, Policy.MANUAL]
    assert all(s.soak <= 5 for s in short.stages)
    assert {s.target.instance for s in short.stages} == {None}
    assert all("canary" not in s.template for s in short.stages)
    assert short.poll_interval == parse_duration("1s")
    assert example["spec"]["stages"][1]["soak"] == "10m"  # the example itself is untouched
