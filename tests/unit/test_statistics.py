"""The tests that judge a challenger against the champion, checked against textbook values
and against R's ``wilcox.test`` outputs (the reference values scipy's own tests of
``scipy.stats.mannwhitneyu`` use; ``mannwhitneyu(x, y, alternative="greater")`` is
``mann_whitney_greater(champion=y, challenger=x)``)."""

from __future__ import annotations

import itertools
import math

import pytest

from promotion_operator.core.statistics import (
    EXACT_LIMIT,
    chi_square_homogeneity,
    chi_square_sf,
    mann_whitney_greater,
    normal_sf,
    population_stability_index,
)

# Hollander & Wolfe (1973), p. 69, the example of R's ?wilcox.test: permeability constants
# of the human chorioamnion at term (greater, the alternative) and at 12 to 26 weeks.
AT_TERM = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
EARLY = [1.15, 0.88, 0.90, 0.74, 1.21]

# scipy's test_mannwhitneyu.py `x` and `y` (gh-4933), checked against R there.
THREE = [210.052110, 110.190630, 307.918612]
THIRTEEN = [
    436.08811482466416,
    416.37397329768191,
    179.96975939463582,
    197.8118754228619,
    34.038757281225756,
    138.54220550921517,
    128.7769351470246,
    265.92721427951852,
    275.6617533155341,
    592.34083395416258,
    448.73177590617018,
    300.61495185038905,
    187.97508449019588,
]


def samples_with_u(n_champion: int, n_challenger: int, u: int) -> tuple[list[float], list[float]]:
    """Tie-free samples whose challenger U is ``u``: each challenger value sits above as
    many champion values (1, 2, ...) as it still needs."""
    champion = [float(value) for value in range(1, n_champion + 1)]
    challenger = []
    for j in range(n_challenger):
        below = min(n_champion, u)
        u -= below
        challenger.append(below + 0.5 + 0.01 * j)
    return champion, challenger


# --- Mann-Whitney U ---


def test_mann_whitney_fully_separated_samples_give_u_9_and_p_one_twentieth() -> None:
    result = mann_whitney_greater([1, 2, 3], [4, 5, 6])

    assert result.u == 9
    assert result.p_value == pytest.approx(1 / 20, abs=1e-12)
    assert result.exact


# Mann & Whitney (1947), Table I, p. 52: P(U <= u) for u = 0, 1, ... (3 decimals).
MANN_WHITNEY_TABLE = {
    (3, 3): [0.05, 0.1, 0.2, 0.35, 0.5, 0.65],
    (4, 3): [0.028, 0.057, 0.114, 0.2, 0.314, 0.429, 0.571],
    (5, 5): [0.004, 0.008, 0.016, 0.028, 0.048, 0.075, 0.111, 0.155, 0.21, 0.274, 0.345],
    (6, 4): [0.005, 0.01, 0.019, 0.033, 0.057, 0.086, 0.129, 0.176, 0.238, 0.305, 0.381],
}


@pytest.mark.parametrize(
    ("sizes", "u", "cdf"),
    [(sizes, u, cdf) for sizes, row in MANN_WHITNEY_TABLE.items() for u, cdf in enumerate(row)],
)
def test_mann_whitney_exact_p_values_match_mann_and_whitneys_table(
    sizes: tuple[int, int], u: int, cdf: float
) -> None:
    # By symmetry, P(U >= n1·n2 - u) = P(U <= u).
    n1, n2 = sizes
    champion, challenger = samples_with_u(n1, n2, n1 * n2 - u)

    result = mann_whitney_greater(champion, challenger)

    assert result.exact
    assert result.u == n1 * n2 - u
    assert result.p_value == pytest.approx(cdf, abs=1e-3)


def test_mann_whitney_exact_distribution_matches_counting_every_ordering() -> None:
    n1, n2 = 4, 5
    orderings = list(itertools.combinations(range(n1 + n2), n2))
    for u in range(n1 * n2 + 1):
        # The challenger at sorted positions p_0 < p_1 < ... beats p_i - i champions.
        at_least = sum(sum(p - i for i, p in enumerate(ps)) >= u for ps in orderings)
        champion, challenger = samples_with_u(n1, n2, u)

        assert mann_whitney_greater(champion, challenger).p_value == pytest.approx(
            at_least / len(orderings), abs=1e-15
        )


def test_mann_whitney_textbook_example_matches_r_exact_p_value() -> None:
    # wilcox.test(x, y, alternative = "greater"): W = 35, p-value = 0.1272.
    result = mann_whitney_greater(champion=EARLY, challenger=AT_TERM)

    assert result.exact
    assert result.u == 35
    assert result.p_value == pytest.approx(0.1272061272061, rel=1e-10)


def test_mann_whitney_exact_matches_scipy_for_unequal_sizes() -> None:
    result = mann_whitney_greater(champion=THIRTEEN, challenger=THREE)

    assert result.exact
    assert result.u == 16
    assert result.p_value == pytest.approx(0.6946428571429, rel=1e-10)


def test_mann_whitney_single_values_each_give_p_half_or_one() -> None:
    greater = mann_whitney_greater([1.0], [2.0])
    smaller = mann_whitney_greater([2.0], [1.0])

    assert (greater.u, greater.p_value, greater.exact) == (1.0, 0.5, True)
    assert (smaller.u, smaller.p_value, smaller.exact) == (0.0, 1.0, True)


@pytest.mark.parametrize(
    ("champion", "challenger", "u", "p_value"),
    [
        (EARLY, AT_TERM, 35, 0.1223118025635),
        (THIRTEEN, THREE, 16, 0.7047591913255),
        (THREE, THIRTEEN, 23, 0.3432520908938),
        ([2.0], [1.0], 0, 0.977249868052),
    ],
)
def test_mann_whitney_normal_approximation_matches_scipy_with_continuity_correction(
    champion: list[float], challenger: list[float], u: float, p_value: float
) -> None:
    result = mann_whitney_greater(champion, challenger, method="asymptotic")

    assert not result.exact
    assert result.u == u
    assert result.p_value == pytest.approx(p_value, rel=1e-10)


def test_mann_whitney_ties_use_normal_approximation_with_tie_corrected_variance() -> None:
    # R: wilcox.test(c(1, 2, 3, 4), c(1, 2, 3, 4, 5), exact = FALSE) gives the two-sided
    # p-value 0.7086240584439, twice the one-sided one for the larger U.
    result = mann_whitney_greater([1, 2, 3, 4], [1, 2, 3, 4, 5])

    assert not result.exact
    assert result.u == 12
    assert result.p_value == pytest.approx(0.7086240584439 / 2, rel=1e-10)


@pytest.mark.parametrize(
    ("champion", "challenger", "u", "p_value"),
    [
        ([1.5, 2.5], [1, 2, 3], 3, 0.6135850036578),
        ([2], [1, 2, 3], 1.5, 0.681324055883),
        ([1, 2], [1, 2], 2, 0.667497228949),
    ],
)
def test_mann_whitney_u_at_its_mean_gives_p_above_half_as_r_does(
    champion: list[float], challenger: list[float], u: float, p_value: float
) -> None:
    # scipy gh-2118: the continuity correction at U = n1·n2/2, checked there against R.
    result = mann_whitney_greater(champion, challenger, method="asymptotic")

    assert result.u == u
    assert result.p_value == pytest.approx(p_value, rel=1e-10)


def test_mann_whitney_all_equal_values_give_p_one() -> None:
    result = mann_whitney_greater([0.3] * 4, [0.3] * 6)

    assert result.u == 12
    assert result.p_value == 1.0
    assert not result.exact


def test_mann_whitney_large_samples_use_normal_approximation() -> None:
    champion = [float(value) for value in range(EXACT_LIMIT + 1)]
    challenger = [value + 0.5 for value in champion]

    assert not mann_whitney_greater(champion, challenger).exact
    assert mann_whitney_greater(champion, challenger, method="exact").exact


def test_mann_whitney_normal_approximation_is_close_to_exact_for_larger_samples() -> None:
    champion = [float(value) for value in range(20)]
    challenger = [value + 3.5 for value in champion]

    exact = mann_whitney_greater(champion, challenger, method="exact")
    approximate = mann_whitney_greater(champion, challenger, method="asymptotic")

    assert exact.u == approximate.u == 264  # 16 values beat 4..19 champions, 4 beat all 20
    assert approximate.p_value == pytest.approx(exact.p_value, abs=2e-3)


@pytest.mark.parametrize(("champion", "challenger"), [([], [1.0]), ([1.0], []), ([], [])])
def test_mann_whitney_empty_sample_raises(champion: list[float], challenger: list[float]) -> None:
    with pytest.raises(ValueError, match="needs values from both models"):
        mann_whitney_greater(champion, challenger)


def test_mann_whitney_nan_raises() -> None:
    with pytest.raises(ValueError, match="NaN"):
        mann_whitney_greater([1.0, math.nan], [2.0])


def test_mann_whitney_exact_method_refuses_ties() -> None:
    with pytest.raises(ValueError, match="assumes no ties"):
        mann_whitney_greater([1.0, 2.0], [2.0, 3.0], method="exact")


# --- the normal and chi-square tails ---


@pytest.mark.parametrize(
    ("z", "tail"), [(0.0, 0.5), (1.6449, 0.05), (1.96, 0.025), (2.3263, 0.01), (-1.96, 0.975)]
)
def test_normal_sf_matches_table_values(z: float, tail: float) -> None:
    assert normal_sf(z) == pytest.approx(tail, abs=1e-5)


@pytest.mark.parametrize(
    ("x", "dof", "tail"),
    [
        (3.841, 1, 0.05),
        (5.991, 2, 0.05),
        (7.815, 3, 0.05),
        (9.488, 4, 0.05),
        (11.070, 5, 0.05),
        (18.307, 10, 0.05),
        (124.342, 100, 0.05),
        (6.635, 1, 0.01),
        (0.455, 1, 0.5),
        (4.351, 5, 0.5),
    ],
)
def test_chi_square_sf_matches_table_critical_values(x: float, dof: int, tail: float) -> None:
    # The tables round x to 3 decimals; the last two are medians (the series branch).
    assert chi_square_sf(x, dof) == pytest.approx(tail, abs=2e-4)


@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 2.5, 4.0, 10.0, 40.0])
def test_chi_square_sf_matches_closed_forms_for_one_two_and_four_dof(x: float) -> None:
    assert chi_square_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-12)
    assert chi_square_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)
    assert chi_square_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-12)


@pytest.mark.parametrize("dof", [1, 2, 7, 50])
def test_chi_square_sf_of_zero_is_one(dof: int) -> None:
    assert chi_square_sf(0.0, dof) == 1.0


def test_chi_square_sf_refuses_zero_degrees_of_freedom() -> None:
    with pytest.raises(ValueError, match="at least 1 degree of freedom"):
        chi_square_sf(1.0, 0)


# --- chi-square test of homogeneity ---


def test_chi_square_homogeneity_matches_worked_two_by_three_table() -> None:
    # Row totals 100 and 100, column totals 50, 60, 90: expected 25, 30, 45 in each row,
    # X² = 2·(5²/25) + 0 + 2·(5²/45) = 28/9 on 2 dof, P = exp(-14/9).
    result = chi_square_homogeneity({"a": 20, "b": 30, "c": 50}, {"a": 30, "b": 30, "c": 40})

    assert result.statistic == pytest.approx(28 / 9, rel=1e-12)
    assert result.dof == 2
    assert result.p_value == pytest.approx(math.exp(-14 / 9), rel=1e-12)


def test_chi_square_homogeneity_matches_worked_two_by_two_table() -> None:
    # 2 x 2 without Yates's correction: X² = N(ad - bc)² / (r1·r2·c1·c2)
    # = 200·(60·20 - 40·80)² / (100·100·140·60) = 800/84 on 1 dof.
    result = chi_square_homogeneity({"yes": 60, "no": 40}, {"yes": 80, "no": 20})

    assert result.statistic == pytest.approx(800 / 84, rel=1e-12)
    assert result.dof == 1
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(400 / 84)), rel=1e-12)


def test_chi_square_homogeneity_identical_distributions_give_statistic_0_and_p_1() -> None:
    counts = {"cat": 12.0, "dog": 30.0, "bird": 7.0}

    result = chi_square_homogeneity(counts, dict(counts))

    assert result.statistic == pytest.approx(0.0, abs=1e-12)
    assert result.p_value == pytest.approx(1.0, abs=1e-12)


def test_chi_square_homogeneity_proportional_counts_give_statistic_0() -> None:
    result = chi_square_homogeneity({"a": 10, "b": 30}, {"a": 100, "b": 300})

    assert result.statistic == pytest.approx(0.0, abs=1e-12)


def test_chi_square_homogeneity_drops_label_with_zero_total_and_its_dof() -> None:
    with_empty = chi_square_homogeneity(
        {"a": 20, "b": 30, "c": 50, "d": 0}, {"a": 30, "b": 30, "c": 40, "d": 0}
    )

    assert with_empty.dof == 2
    assert with_empty.statistic == pytest.approx(28 / 9, rel=1e-12)


def test_chi_square_homogeneity_missing_label_counts_zero() -> None:
    missing = chi_square_homogeneity({"a": 20, "b": 30}, {"a": 30, "b": 30, "c": 40})
    explicit = chi_square_homogeneity({"a": 20, "b": 30, "c": 0}, {"a": 30, "b": 30, "c": 40})

    assert missing == explicit
    assert missing.dof == 2


def test_chi_square_homogeneity_single_label_gives_dof_0_and_p_1() -> None:
    result = chi_square_homogeneity({"a": 5, "b": 0}, {"a": 9})

    assert (result.statistic, result.dof, result.p_value) == (0.0, 0, 1.0)


@pytest.mark.parametrize(
    ("champion", "challenger"), [({}, {"a": 1}), ({"a": 0}, {"a": 1}), ({"a": 1}, {})]
)
def test_chi_square_homogeneity_empty_row_raises(
    champion: dict[str, float], challenger: dict[str, float]
) -> None:
    with pytest.raises(ValueError, match="no counts"):
        chi_square_homogeneity(champion, challenger)


def test_chi_square_homogeneity_negative_count_raises() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        chi_square_homogeneity({"a": 5, "b": -1}, {"a": 5, "b": 1})


# --- population stability index ---


def test_psi_identical_distributions_is_zero() -> None:
    counts = {"a": 10.0, "b": 25.0, "c": 65.0}

    assert population_stability_index(counts, {"a": 1, "b": 2.5, "c": 6.5}) == pytest.approx(
        0.0, abs=1e-12
    )


def test_psi_matches_worked_two_bin_example() -> None:
    # 50/50 -> 60/40: 0.1·ln(0.6/0.5) + (-0.1)·ln(0.4/0.5) = 0.1·ln(1.5) ≈ 0.0405.
    psi = population_stability_index({"a": 50, "b": 50}, {"a": 60, "b": 40})

    assert psi == pytest.approx(0.1 * math.log(1.5), rel=1e-12)


def test_psi_matches_worked_three_bin_example() -> None:
    # 20/30/50 -> 10/30/60: (-0.1)·ln(0.5) + 0 + 0.1·ln(1.2).
    psi = population_stability_index({"a": 20, "b": 30, "c": 50}, {"a": 10, "b": 30, "c": 60})

    assert psi == pytest.approx(0.1 * math.log(2) + 0.1 * math.log(1.2), rel=1e-12)


def test_psi_is_symmetric() -> None:
    expected = {"a": 20, "b": 30, "c": 50}
    actual = {"a": 35, "b": 25, "c": 40}

    assert population_stability_index(expected, actual) == pytest.approx(
        population_stability_index(actual, expected), rel=1e-12
    )


def test_psi_empty_bin_is_finite_and_large() -> None:
    # The empty bin's proportion is floored at 1e-4:
    # (0.5 - 1)·ln(0.5 / 1) + (0.5 - 1e-4)·ln(0.5 / 1e-4).
    psi = population_stability_index({"a": 10, "b": 0}, {"a": 5, "b": 5})

    assert math.isfinite(psi)
    assert psi > 0.25
    assert psi == pytest.approx(0.5 * math.log(2) + (0.5 - 1e-4) * math.log(5000), rel=1e-12)


def test_psi_missing_label_counts_as_empty_bin() -> None:
    assert population_stability_index({"a": 10}, {"a": 5, "b": 5}) == pytest.approx(
        population_stability_index({"a": 10, "b": 0}, {"a": 5, "b": 5}), rel=1e-12
    )


@pytest.mark.parametrize(("expected", "actual"), [({}, {"a": 1}), ({"a": 1}, {"a": 0})])
def test_psi_zero_total_raises(expected: dict[str, float], actual: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="has no counts"):
        population_stability_index(expected, actual)


def test_psi_non_positive_epsilon_raises() -> None:
    with pytest.raises(ValueError, match="epsilon must be positive"):
        population_stability_index({"a": 1}, {"a": 1}, epsilon=0.0)
