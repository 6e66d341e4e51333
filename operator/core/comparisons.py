"""How an analysis template judges the challenger against the champion.

A template with ``compare`` runs its query twice per measurement, once with
``{{predictor}}`` filled in with the champion (the target's serving predictor)
and once with the challenger (the canary, or the shadow), both on the same
traffic. What it then checks is one of these types, each owning how it is read
from its CRD entry and how it judges; every judgement is a *score* that passes
inside its ``[min, max]`` band, so status, messages and plots show all of them
alike:

- :class:`Ratio`: challenger / champion, per measurement;
- :class:`Difference`: challenger - champion, per measurement;
- :class:`MannWhitney`: the p-value of a one-sided Mann-Whitney U test over all
  ``count`` measurements, judged once the last one is in (Kayenta's judge);
- :class:`Distribution`: the predictions by label, per measurement, by a
  chi-square test of homogeneity (the p-value) or the population stability
  index. On mirrored traffic both see the same inputs, so a shift is the model's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, Self

from promotion_operator.core.run import Verdict
from promotion_operator.core.statistics import (
    chi_square_homogeneity,
    mann_whitney_greater,
    population_stability_index,
)

#: What one side's query gives: one number, or numbers by label (a distribution).
Value = float | Mapping[str, float]

DEFAULT_SIGNIFICANCE = 0.05


class Samples(NamedTuple):
    """The values a test judged over all measurements has taken so far, per side."""

    champion: tuple[float, ...] = ()
    challenger: tuple[float, ...] = ()


NO_SAMPLES = Samples()


class Judged(NamedTuple):
    """One comparison's result: its verdict, score and band, and how to say it."""

    verdict: Verdict
    score: float | None
    min: float | None
    max: float | None
    says: str  # "ratio 1.05 (challenger 0.105, champion 0.1)"


def _within(score: float, low: float | None, high: float | None) -> Verdict:
    inside = (low is None or score >= low) and (high is None or score <= high)
    return Verdict.PASSED if inside else Verdict.FAILED


def _number(value: Value) -> float:
    assert not isinstance(value, Mapping), "a scalar comparison reads one number per side"
    return value


@dataclass(frozen=True)
class _Banded:
    """A score of the two values per measurement, which must lie in [min, max]."""

    min: float | None = None
    max: float | None = None

    key: ClassVar[str]

    @classmethod
    def parse(cls, entry: Mapping[str, Any]) -> Self:
        return cls(_float(entry.get("min")), _float(entry.get("max")))

    @property
    def by(self) -> str | None:
        return None  # one number per side

    @staticmethod
    def score(champion: float, challenger: float) -> float | None:
        """The score, or None where there is none."""
        raise NotImplementedError

    def judge(
        self, champion: Value, challenger: Value, earlier: Samples, last: bool
    ) -> tuple[Judged, Samples]:
        base, new = _number(champion), _number(challenger)
        values = f"challenger {new:g}, champion {base:g}"
        score = self.score(base, new)
        if score is None:
            says = f"no {self.key} to a champion at 0 ({values}): use difference"
            return Judged(Verdict.INCONCLUSIVE, None, self.min, self.max, says), NO_SAMPLES
        verdict = _within(score, self.min, self.max)
        says = f"{self.key} {score:g} ({values})"
        return Judged(verdict, score, self.min, self.max, says), NO_SAMPLES


@dataclass(frozen=True)
class Ratio(_Banded):
    """Challenger / champion must lie in [min, max] (both at 0: a ratio of 1)."""

    key: ClassVar[str] = "ratio"

    @staticmethod
    def score(champion: float, challenger: float) -> float | None:
        if champion == 0:
            return 1.0 if challenger == 0 else None
        return challenger / champion


@dataclass(frozen=True)
class Difference(_Banded):
    """Challenger - champion must lie in [min, max]."""

    key: ClassVar[str] = "difference"

    @staticmethod
    def score(champion: float, challenger: float) -> float | None:
        return challenger - champion


@dataclass(frozen=True)
class MannWhitney:
    """Fail only when the challenger's values are significantly worse than the
    champion's over all the measurements: a one-sided Mann-Whitney U test whose
    p-value must be at least ``significance``. ``worse``: which way is worse."""

    worse: Literal["Higher", "Lower"] = "Higher"
    significance: float = DEFAULT_SIGNIFICANCE

    key: ClassVar[str] = "mannWhitney"

    @classmethod
    def parse(cls, entry: Mapping[str, Any]) -> MannWhitney:
        worse: Literal["Higher", "Lower"] = "Lower" if entry.get("worse") == "Lower" else "Higher"
        significance = _float(entry.get("significance"))
        return cls(worse, DEFAULT_SIGNIFICANCE if significance is None else significance)

    @property
    def by(self) -> str | None:
        return None

    def judge(
        self, champion: Value, challenger: Value, earlier: Samples, last: bool
    ) -> tuple[Judged, Samples]:
        base, new = _number(champion), _number(challenger)
        samples = Samples((*earlier.champion, base), (*earlier.challenger, new))
        if not last:
            says = f"sample {len(samples.challenger)} (challenger {new:g}, champion {base:g})"
            return Judged(Verdict.SAMPLED, None, self.significance, None, says), samples
        return self._test(samples.champion, samples.challenger), samples

    def _test(self, champion: Sequence[float], challenger: Sequence[float]) -> Judged:
        if self.worse == "Higher":
            test = mann_whitney_greater(champion, challenger)
        else:
            # Lower is worse: is the champion's tendency greater than the challenger's?
            test = mann_whitney_greater(challenger, champion)
        says = (
            f"Mann-Whitney p={test.p_value:.3g} that the challenger is not "
            f"{self.worse.lower()} ({len(challenger)} samples each)"
        )
        verdict = _within(test.p_value, self.significance, None)
        return Judged(verdict, test.p_value, self.significance, None, says)


@dataclass(frozen=True)
class Distribution:
    """The predictions by label ``by``: a chi-square test of homogeneity whose p-value
    must be at least ``significance``, or a population stability index of at most
    ``max_psi`` (the champion's distribution is the expected one)."""

    by: str  # the label the query's series are told apart by
    significance: float | None = None
    max_psi: float | None = None

    key: ClassVar[str] = "distribution"

    @classmethod
    def parse(cls, entry: Mapping[str, Any]) -> Distribution:
        significance, max_psi = _float(entry.get("significance")), _float(entry.get("maxPSI"))
        return cls(str(entry.get("by") or ""), significance, max_psi)

    def judge(
        self, champion: Value, challenger: Value, earlier: Samples, last: bool
    ) -> tuple[Judged, Samples]:
        assert isinstance(champion, Mapping) and isinstance(challenger, Mapping)
        return self._test(champion, challenger), NO_SAMPLES

    def _test(self, champion: Mapping[str, float], challenger: Mapping[str, float]) -> Judged:
        if self.max_psi is not None:
            psi = population_stability_index(champion, challenger)
            says = f"PSI {psi:.3g} of the predictions by {self.by}"
            return Judged(_within(psi, None, self.max_psi), psi, None, self.max_psi, says)
        test = chi_square_homogeneity(champion, challenger)
        significance = DEFAULT_SIGNIFICANCE if self.significance is None else self.significance
        says = (
            f"chi-square p={test.p_value:.3g} that the predictions by {self.by} are "
            f"alike (statistic {test.statistic:.3g}, {test.dof} degrees of freedom)"
        )
        verdict = _within(test.p_value, significance, None)
        return Judged(verdict, test.p_value, significance, None, says)


Comparison = Ratio | Difference | MannWhitney | Distribution

#: How each kind is read from its ``compare`` entry, by its CRD key.
COMPARISON_KINDS: Mapping[str, Callable[[Mapping[str, Any]], Comparison]] = {
    kind.key: kind.parse for kind in (Ratio, Difference, MannWhitney, Distribution)
}


def parse_comparison(entry: Mapping[str, Any]) -> Comparison | None:
    """The comparison a template's ``compare`` entry (exactly one key) asks for."""
    key = next((key for key in COMPARISON_KINDS if key in entry), None)
    return None if key is None else COMPARISON_KINDS[key](entry.get(key) or {})


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
