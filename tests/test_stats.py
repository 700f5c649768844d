"""Statistics against closed forms and scipy's own reference computations."""

from math import comb

import numpy as np
import pytest
from scipy import stats

from symoe_eval.analysis.stats import accuracy_ci, bootstrap_ci, holm, mcnemar_exact, paired_result, permutation_p


def pairs(both, only_a, only_b, neither):
    a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
    b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
    return np.array(a), np.array(b)


@pytest.mark.parametrize("only_a,only_b", [(10, 2), (7, 7), (0, 5), (1, 0), (30, 12)])
def test_mcnemar_matches_the_binomial_formula(only_a, only_b):
    a, b = pairs(20, only_a, only_b, 15)
    p, got_a, got_b = mcnemar_exact(a, b)
    n, k = only_a + only_b, min(only_a, only_b)
    closed = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)
    assert (got_a, got_b) == (only_a, only_b)
    assert p == pytest.approx(closed, rel=1e-9)


def test_no_discordant_pairs_means_p_one():
    a, b = pairs(5, 0, 0, 5)
    assert mcnemar_exact(a, b) == (1.0, 0, 0)
    assert permutation_p(a, b) == 1.0 and bootstrap_ci(a, b) == (0.0, 0.0)


def test_bootstrap_matches_scipy_reference():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 80)
    b = (rng.random(80) < 0.4).astype(int)
    ours = bootstrap_ci(a, b, resamples=5000, seed=3)
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis), paired=True,
                          vectorized=True, n_resamples=5000, method="percentile",
                          random_state=np.random.default_rng(3)).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high))
    assert ours[0] <= a.mean() - b.mean() <= ours[1]


def test_permutation_is_exact_on_small_samples():
    a, b = pairs(0, 4, 0, 2)  # 6 docs, 4 discordant all favouring a
    # exact sign-flip distribution: only flips of the 4 discordant pairs matter; |mean| >= 4/6 in 2 of 16
    assert permutation_p(a, b, resamples=10_000) == pytest.approx(2 / 16)


def test_holm_against_the_definition():
    p = [0.01, 0.04, 0.03, 0.5]
    # sorted 0.01, 0.03, 0.04, 0.5 -> 4*0.01, 3*0.03, max(0.09, 2*0.04), max(.., 1*0.5)
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_accuracy_ci_wilson():
    low, high = accuracy_ci([1] * 30 + [0] * 70)
    ref = stats.binomtest(30, 100).proportion_ci(0.95, method="wilson")
    assert (low, high) == pytest.approx((ref.low, ref.high))


def test_paired_result_is_seeded():
    a, b = pairs(10, 8, 3, 9)
    one, two = paired_result("t", a, b, seed=5), paired_result("t", a, b, seed=5)
    assert one == two and one.n == 30 and one.difference == pytest.approx(5 / 30)
