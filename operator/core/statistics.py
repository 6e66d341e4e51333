"""The tests that judge a challenger model against the champion on the same (mirrored)
traffic: is a metric of the challenger's stochastically greater (Mann-Whitney U), do the
two predict labels in the same proportions (Pearson's chi-square test of homogeneity),
and how far has the challenger's label distribution moved (population stability index).

The standard library only, so the core stays free of dependencies: no numpy, no scipy.
Each function names the textbook it follows; the unit tests check it against that
book's values and against the outputs of R's ``wilcox.test`` that scipy's own tests use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

#: Both samples at most this large, and no ties: the exact null distribution of U.
EXACT_LIMIT = 20

_EPS = 1e-15  # relative precision of the incomplete gamma's series and fraction
_TINY = 1e-300  # Lentz's stand-in for a zero denominator
_MAX_ITERATIONS = 10_000


@dataclass(frozen=True)
class MannWhitney:
    """The challenger's U (pairs where it is greater, ties counting a half) and the
    one-sided p-value; ``exact`` tells whether it came from the exact null distribution."""

    u: float
    p_value: float
    exact: bool


@dataclass(frozen=True)
class ChiSquare:
    """Pearson's X² of a 2 x k table, its degrees of freedom and p-value."""

    statistic: float
    dof: int
    p_value: float


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z, as ½·erfc(z/√2): erfc keeps the upper tail
    accurate where 1 - Φ(z) would cancel (Abramowitz & Stegun, *Handbook of Mathematical
    Functions*, 1964, ch. 26)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def chi_square_sf(x: float, dof: int) -> float:
    """P(X > x) for X ~ χ²(dof): the regularized upper incomplete gamma Q(dof/2, x/2),
    by its series below a + 1 and its continued fraction above, where each converges
    fast (Press et al., *Numerical Recipes*, 2nd ed., 1992, §6.2, ``gammq``)."""
    if dof < 1:
        raise ValueError(f"a chi-square distribution needs at least 1 degree of freedom, not {dof}")
    if x <= 0.0:
        return 1.0
    a, half = dof / 2.0, x / 2.0
    if half < a + 1.0:
        return max(0.0, 1.0 - _gamma_series(a, half))
    return min(1.0, _gamma_continued_fraction(a, half))


def _gamma_series(a: float, x: float) -> float:
    """P(a, x), the regularized lower incomplete gamma, by its series (NR ``gser``)."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPS:
            return total * math.exp(-x + a * math.log(x) - math.lgamma(a))
    raise ArithmeticError(f"the incomplete gamma series did not converge (a={a}, x={x})")


def _gamma_continued_fraction(a: float, x: float) -> float:
    """Q(a, x), the regularized upper incomplete gamma, by its continued fraction with
    the modified Lentz method (NR ``gcf``)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h
    raise ArithmeticError(f"the incomplete gamma fraction did not converge (a={a}, x={x})")


def mann_whitney_greater(
    champion: Sequence[float],
    challenger: Sequence[float],
    method: Literal["auto", "exact", "asymptotic"] = "auto",
) -> MannWhitney:
    """One-sided Mann-Whitney U test of "the challenger's values tend to be greater than
    the champion's" (swap the arguments where lower is better). A rank test: it assumes
    no distribution of the metric, which latencies and scores rarely follow.

    Midranks for ties. ``auto`` takes the exact null distribution of U when there are no
    ties and both samples have at most ``EXACT_LIMIT`` values (Mann & Whitney, *Ann. Math.
    Statist.* 18, 1947), and otherwise the normal approximation with the tie-corrected
    variance and a continuity correction (Lehmann, *Nonparametrics: Statistical Methods
    Based on Ranks*, 1975, ch. 1), as ``scipy.stats.mannwhitneyu(challenger, champion,
    alternative="greater")`` and R's ``wilcox.test`` compute it. All values equal: no
    evidence either way, p-value 1.
    """
    n1, n2 = len(champion), len(challenger)
    if n1 == 0 or n2 == 0:
        raise ValueError(
            f"the Mann-Whitney test needs values from both models "
            f"(champion: {n1}, challenger: {n2})"
        )
    values = [*champion, *challenger]
    if any(math.isnan(value) for value in values):
        raise ValueError("the Mann-Whitney test cannot rank NaN")
    ranks, tie_sizes = _midranks(values)
    u = sum(ranks[n1:]) - n2 * (n2 + 1) / 2.0
    tied = any(size > 1 for size in tie_sizes)
    if method == "exact" and tied:
        raise ValueError("the exact Mann-Whitney distribution assumes no ties")
    if method == "exact" or (method == "auto" and not tied and max(n1, n2) <= EXACT_LIMIT):
        counts = _u_counts(n1, n2)
        return MannWhitney(u, sum(counts[round(u) :]) / sum(counts), exact=True)
    n = n1 + n2
    tie_term = sum(size**3 - size for size in tie_sizes)
    if tie_term == n**3 - n:  # every value the same: no spread to compare
        return MannWhitney(u, 1.0, exact=False)
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    z = (u - n1 * n2 / 2.0 - 0.5) / sigma
    return MannWhitney(u, normal_sf(z), exact=False)


def _midranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks from 1 (tied values share the mean of their ranks) and the tie groups' sizes."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    sizes: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2.0 + 1.0
        sizes.append(end - start + 1)
        start = end + 1
    return ranks, sizes


def _u_counts(n1: int, n2: int) -> list[int]:
    """How many of the C(n1 + n2, n1) equally likely orderings give U = 0, 1, ..., n1·n2.

    They are the coefficients of the Gaussian binomial [n1 + n2 choose n2]_q, the
    generating function of Mann & Whitney's recurrence (Andrews, *The Theory of
    Partitions*, 1976, Thm 3.1), built as ∏ (1 - q^(n1+j)) / (1 - q^j) for j = 1..n2,
    each partial product a polynomial with integer coefficients: exact, and
    O(n1·n2²) steps.
    """
    counts = [1]
    for j in range(1, n2 + 1):
        counts += [0] * n1
        for k in range(len(counts) - 1, n1 + j - 1, -1):  # times (1 - q^(n1+j))
            counts[k] -= counts[k - n1 - j]
        for k in range(j, len(counts)):  # divided by (1 - q^j)
            counts[k] += counts[k - j]
    return counts


def chi_square_homogeneity(
    champion: Mapping[str, float], challenger: Mapping[str, float]
) -> ChiSquare:
    """Pearson's chi-square test that the two models give the labels in the same
    proportions, on the 2 x k table of their counts (Agresti, *Categorical Data
    Analysis*, 3rd ed., 2013, ch. 3).

    A label missing from one side counts 0 there; a label neither side has is dropped
    (it would divide by an expected count of 0) and takes a degree of freedom with it.
    One label left: nothing can differ, p-value 1.
    """
    for name, counts in (("champion", champion), ("challenger", challenger)):
        if any(count < 0.0 for count in counts.values()):
            raise ValueError(f"the {name}'s counts must not be negative")
        if sum(counts.values()) <= 0.0:
            raise ValueError(f"the {name} has no counts to compare")
    labels = [
        label
        for label in sorted(set(champion) | set(challenger))
        if champion.get(label, 0.0) + challenger.get(label, 0.0) > 0.0
    ]
    rows = [[row.get(label, 0.0) for label in labels] for row in (champion, challenger)]
    dof = len(labels) - 1
    if dof == 0:
        return ChiSquare(0.0, 0, 1.0)
    row_totals = [sum(row) for row in rows]
    column_totals = [rows[0][j] + rows[1][j] for j in range(len(labels))]
    total = sum(row_totals)
    statistic = 0.0
    for row, row_total in zip(rows, row_totals, strict=True):
        for observed, column_total in zip(row, column_totals, strict=True):
            expected = row_total * column_total / total
            statistic += (observed - expected) ** 2 / expected
    return ChiSquare(statistic, dof, chi_square_sf(statistic, dof))


def population_stability_index(
    expected: Mapping[str, float], actual: Mapping[str, float], epsilon: float = 1e-4
) -> float:
    """How far the ``actual`` label distribution has moved from the ``expected`` one:
    Σ (a - e)·ln(a / e) over the labels' proportions, a symmetrised Kullback-Leibler
    divergence; rules of thumb read < 0.1 as stable and > 0.25 as a shift (Siddiqi,
    *Credit Risk Scorecards*, 2006).

    A label missing from one side has proportion 0 there. Proportions are floored at
    ``epsilon``, the common convention, so an empty bin gives a large but finite value
    rather than infinity.
    """
    if epsilon <= 0.0:
        raise ValueError(f"epsilon must be positive, not {epsilon}")
    for name, counts in (("expected", expected), ("actual", actual)):
        if any(count < 0.0 for count in counts.values()):
            raise ValueError(f"the {name} counts must not be negative")
        if sum(counts.values()) <= 0.0:
            raise ValueError(f"the {name} distribution has no counts")
    expected_total, actual_total = sum(expected.values()), sum(actual.values())
    index = 0.0
    for label in sorted(set(expected) | set(actual)):
        e = max(expected.get(label, 0.0) / expected_total, epsilon)
        a = max(actual.get(label, 0.0) / actual_total, epsilon)
        index += (a - e) * math.log(a / e)
    return index
