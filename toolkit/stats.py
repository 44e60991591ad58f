"""Small, dependency-free statistics: exact McNemar test, percentiles, bootstrap intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class McNemarResult:
    """Paired predictions on the same images: b = only the reference right, c = only the candidate right."""

    reference_only_correct: int
    candidate_only_correct: int
    p_value: float  # exact two-sided binomial test on the discordant pairs

    @property
    def discordant(self) -> int:
        return self.reference_only_correct + self.candidate_only_correct


def mcnemar_exact(reference_correct: np.ndarray, candidate_correct: np.ndarray) -> McNemarResult:
    ref = np.asarray(reference_correct, dtype=bool)
    cand = np.asarray(candidate_correct, dtype=bool)
    if ref.shape != cand.shape:
        raise ValueError(f"paired arrays differ in shape: {ref.shape} vs {cand.shape}")
    b = int(np.sum(ref & ~cand))
    c = int(np.sum(~ref & cand))
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 1.0)
    k = min(b, c)
    # P(X <= k) for X ~ Binomial(n, 1/2), doubled for two sides, capped at 1.
    # Exact integer arithmetic: 2**n overflows a float beyond n ~ 1000 discordant pairs.
    tail = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n)
    return McNemarResult(b, c, min(1.0, float(2 * tail)))


def percentile(samples, q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no samples")
    return float(np.percentile(arr, q))


def bootstrap_ratio_ci(baseline, candidate, stat=np.median, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Confidence interval of stat(candidate) / stat(baseline) by resampling each sample set."""
    rng = np.random.default_rng(seed)
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("no samples")
    ia = rng.integers(0, a.size, size=(n_resamples, a.size))
    ib = rng.integers(0, b.size, size=(n_resamples, b.size))
    ratios = stat(b[ib], axis=1) / stat(a[ia], axis=1)
    lo = (1.0 - confidence) / 2.0
    return float(np.quantile(ratios, lo)), float(np.quantile(ratios, 1.0 - lo))
