"""toolkit.stats checked against independent computations.

- the exact McNemar test against a brute-force enumeration of every way the discordant pairs could
  have fallen (no binomial formula involved), and for large counts against a float binomial in log
  space (math.lgamma, a different route from the module's exact integer arithmetic);
- the bootstrap interval against a plain resampling loop written with Python's `random` and
  `statistics` (another generator, another median, another loop);
- the percentile against interpolation written out by hand.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics

import numpy as np
import pytest

from toolkit.stats import bootstrap_ratio_ci, mcnemar_exact, percentile


def paired(b: int, c: int, both: int = 0, neither: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness flags for the reference and the candidate: b images only the reference got right,
    c only the candidate, `both` and `neither` the rest; shuffled so order cannot matter."""
    ref = [True] * b + [False] * c + [True] * both + [False] * neither
    cand = [False] * b + [True] * c + [True] * both + [False] * neither
    order = np.random.default_rng(seed).permutation(len(ref))
    return np.array(ref, dtype=bool)[order], np.array(cand, dtype=bool)[order]


def p_by_enumeration(b: int, c: int) -> float:
    """Under the null hypothesis each discordant pair goes either way with probability 1/2: the
    two-sided p-value is the share of the 2**n equally likely outcomes at least as unbalanced."""
    n = b + c
    observed = abs(b - c)
    extreme = sum(1 for signs in itertools.product((0, 1), repeat=n) if abs(2 * sum(signs) - n) >= observed)
    return extreme / 2**n


def p_by_log_binomial(b: int, c: int) -> float:
    """Two-sided binomial test (outcomes no more likely than the observed one), pmf in log space."""
    n = b + c

    def log_pmf(x: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) - n * math.log(2)

    observed = log_pmf(b)
    return min(1.0, sum(math.exp(log_pmf(x)) for x in range(n + 1) if log_pmf(x) <= observed + 1e-9))


@pytest.mark.parametrize("b, c", [(0, 0), (1, 0), (0, 1), (2, 0), (3, 3), (5, 1), (1, 5), (10, 2), (2, 10), (7, 8), (0, 12), (9, 4)])
def test_mcnemar_matches_enumeration_of_every_outcome(b, c):
    ref, cand = paired(b, c, both=40, neither=3, seed=b * 31 + c)
    result = mcnemar_exact(ref, cand)
    assert (result.reference_only_correct, result.candidate_only_correct, result.discordant) == (b, c, b + c)
    assert result.p_value == pytest.approx(p_by_enumeration(b, c), rel=1e-12, abs=0.0)


@pytest.mark.parametrize("b, c", [(30, 70), (400, 600), (1500, 1400), (1000, 1000), (2000, 2200), (40, 1)])
def test_mcnemar_matches_a_float_binomial_for_large_counts(b, c):
    ref, cand = paired(b, c, both=500, seed=b + c)
    result = mcnemar_exact(ref, cand)
    assert result.p_value == pytest.approx(p_by_log_binomial(b, c), rel=1e-9, abs=1e-300)
    assert 0.0 <= result.p_value <= 1.0


def test_mcnemar_agreement_only_is_p_one_and_order_free():
    ref, cand = paired(0, 0, both=30, neither=5)
    assert mcnemar_exact(ref, cand).p_value == 1.0
    ref, cand = paired(6, 1, both=20, neither=2, seed=1)
    perm = np.random.default_rng(7).permutation(len(ref))
    assert mcnemar_exact(ref, cand) == mcnemar_exact(ref[perm], cand[perm])
    # swapping the roles swaps the counts and keeps the (two-sided) p-value
    swapped = mcnemar_exact(cand, ref)
    assert (swapped.reference_only_correct, swapped.candidate_only_correct) == (1, 6)
    assert swapped.p_value == mcnemar_exact(ref, cand).p_value


def test_mcnemar_reads_any_dtype_as_truth_values():
    # Flags arrive as bool from `pred == labels`, but 0/1 floats (e.g. a saved mean-able array) mean the same.
    ref, cand = paired(4, 9, both=10, neither=1, seed=3)
    expected = mcnemar_exact(ref, cand)
    assert mcnemar_exact(ref.astype(np.float64), cand.astype(np.float32)) == expected
    assert mcnemar_exact(list(ref.astype(int) * 3), list(cand.astype(int) * 5)) == expected


def test_mcnemar_refuses_unpaired_arrays():
    with pytest.raises(ValueError, match="shape"):
        mcnemar_exact(np.ones(5, bool), np.ones(6, bool))


def bootstrap_by_loop(baseline, candidate, n_resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """The textbook bootstrap: resample each set with replacement, take the ratio of medians, read
    the interval off the sorted ratios (linear interpolation between order statistics)."""
    rng = random.Random(seed)
    ratios = sorted(
        statistics.median(rng.choices(candidate, k=len(candidate))) / statistics.median(rng.choices(baseline, k=len(baseline)))
        for _ in range(n_resamples)
    )

    def quantile(q: float) -> float:
        pos = q * (len(ratios) - 1)
        lo, frac = int(math.floor(pos)), pos - math.floor(pos)
        return ratios[lo] + frac * (ratios[min(lo + 1, len(ratios) - 1)] - ratios[lo])

    tail = (1 - confidence) / 2
    return quantile(tail), quantile(1 - tail)


@pytest.mark.parametrize("slowdown, confidence", [(1.0, 0.95), (1.25, 0.95), (0.8, 0.9)])
def test_bootstrap_agrees_with_a_direct_resampling_loop(slowdown, confidence):
    rng = np.random.default_rng(11)
    baseline = list(rng.lognormal(mean=4.0, sigma=0.25, size=300))
    candidate = list(slowdown * rng.lognormal(mean=4.0, sigma=0.25, size=250))
    lo, hi = bootstrap_ratio_ci(baseline, candidate, n_resamples=3000, confidence=confidence, seed=0)
    ref_lo, ref_hi = bootstrap_by_loop(baseline, candidate, n_resamples=3000, confidence=confidence, seed=12345)
    # Two independent Monte Carlo runs: the endpoints agree to within resampling noise (~1% here),
    # far tighter than any plausible bug (a swapped ratio, a wrong tail, one-sided resampling).
    assert lo == pytest.approx(ref_lo, rel=0.02)
    assert hi == pytest.approx(ref_hi, rel=0.02)
    assert lo < hi
    observed = statistics.median(candidate) / statistics.median(baseline)
    assert lo <= observed <= hi


def test_bootstrap_ratio_is_candidate_over_baseline():
    assert bootstrap_ratio_ci([2.0] * 40, [3.0] * 30) == (1.5, 1.5)
    assert bootstrap_ratio_ci([3.0] * 40, [2.0] * 30) == pytest.approx((2 / 3, 2 / 3))


def test_bootstrap_is_reproducible_and_wider_at_higher_confidence():
    rng = np.random.default_rng(5)
    a, b = rng.normal(100, 10, 200), rng.normal(104, 10, 200)
    assert bootstrap_ratio_ci(a, b, seed=3) == bootstrap_ratio_ci(a, b, seed=3)
    lo50, hi50 = bootstrap_ratio_ci(a, b, confidence=0.5)
    lo99, hi99 = bootstrap_ratio_ci(a, b, confidence=0.99)
    assert lo99 < lo50 < hi50 < hi99


def test_bootstrap_and_percentile_refuse_empty_samples():
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([], [1.0])
    with pytest.raises(ValueError):
        bootstrap_ratio_ci([1.0], [])
    with pytest.raises(ValueError):
        percentile([], 50)


@pytest.mark.parametrize("q, expected", [(0, 1.0), (50, 2.5), (90, 3.7), (100, 4.0), (25, 1.75)])
def test_percentile_interpolates_linearly(q, expected):
    # sorted [1, 2, 3, 4]: position q/100 * 3, linear between neighbours
    assert percentile([4, 1, 3, 2], q) == pytest.approx(expected, rel=1e-12)


def test_bootstrap_draws_every_sample_and_reads_the_requested_quantiles():
    # Two baseline samples: a resampled median is 1, 1.5 or 2 with probabilities 1/4, 1/2, 1/4, so the
    # ratio is 1, 2/3 or 1/2; the interval's ends are known quantiles of that distribution.
    assert bootstrap_ratio_ci([1.0, 2.0], [1.0], confidence=0.6) == pytest.approx((0.5, 1.0))
    assert bootstrap_ratio_ci([1.0, 2.0], [1.0], confidence=0.4) == pytest.approx((2 / 3, 2 / 3))
    assert bootstrap_ratio_ci([1.0], [1.0, 2.0], confidence=0.6) == pytest.approx((1.0, 2.0))
