"""Paired significance tests for two runs scored on the same documents (pure functions).

Scores are per-document numbers (0/1 for exact match). scipy does the statistics: exact McNemar
through ``binomtest`` on the discordant pairs, ``bootstrap`` (paired) for the CI of the accuracy
difference, ``permutation_test`` (paired sign flips) for a second p-value; Holm corrects across
tasks. Every random procedure takes a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 10_000


def _mean_difference(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def accuracy_ci(scores, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson interval for 0/1 scores; a percentile bootstrap for anything else."""
    scores = np.asarray(scores, dtype=float)
    if len(scores) == 0:
        return (float("nan"), float("nan"))
    if np.isin(scores, (0.0, 1.0)).all():
        ci = stats.binomtest(int(scores.sum()), len(scores)).proportion_ci(confidence, method="wilson")
        return (float(ci.low), float(ci.high))
    return bootstrap_ci(scores, np.zeros_like(scores), confidence=confidence)


def bootstrap_ci(a, b, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap CI of mean(a) - mean(b), resampling documents."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = a - b
    if len(diff) < 2 or np.all(diff == diff[0]):
        return (float(diff.mean()) if len(diff) else float("nan"),) * 2
    result = stats.bootstrap((a, b), _mean_difference, paired=True, vectorized=True, confidence_level=confidence,
                             n_resamples=resamples, method="percentile", random_state=np.random.default_rng(seed))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def mcnemar_exact(a, b) -> tuple[float, int, int]:
    """Exact two-sided McNemar p-value, with the discordant counts (a right only, b right only)."""
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue), only_a, only_b


def permutation_p(a, b, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided paired permutation test of the mean difference (exact when 2^n <= resamples)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or np.all(a == b):
        return 1.0  # one pair: flipping its sign is as extreme as itself, so exactly 1
    result = stats.permutation_test((a, b), _mean_difference, permutation_type="samples", vectorized=True,
                                    n_resamples=resamples, alternative="two-sided",
                                    random_state=np.random.default_rng(seed))
    return float(result.pvalue)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class PairedResult:
    name: str
    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    mcnemar_p: float
    only_a: int
    only_b: int
    permutation_p: float
    holm_p: float | None = None
    scored_by: str = ""  # "metric,filter" read from the runs

    def to_dict(self) -> dict:
        return asdict(self)


def paired_result(name: str, a, b, seed: int = 0, resamples: int = RESAMPLES) -> PairedResult:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    low, high = bootstrap_ci(a, b, resamples=resamples, seed=seed)
    p, only_a, only_b = mcnemar_exact(a, b)
    return PairedResult(name, len(a), float(a.mean()), float(b.mean()), float(a.mean() - b.mean()), low, high,
                        p, only_a, only_b, permutation_p(a, b, resamples, seed))
