"""Performance CI: compare a run with an earlier bench.json cell by cell; a regression must
exceed the threshold and lie outside what noise explains (bootstrap interval)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from toolkit.bench.schema import DEFAULT_THRESHOLD, BenchReport, row_label
from toolkit.errors import InputError
from toolkit.stats import bootstrap_ratio_ci


@dataclass
class CellComparison:
    backend: str
    precision: str
    variant: str
    batch_size: int
    verdict: str  # "regressed" | "improved" | "unchanged" | "not compared"
    baseline_median_us: float | None = None
    current_median_us: float | None = None
    ratio: float | None = None  # current median / baseline median (> 1: slower)
    ci_low: float | None = None
    ci_high: float | None = None
    reason: str = ""

    @property
    def label(self) -> str:
        return row_label(self.backend, self.precision, self.variant)


@dataclass
class BaselineComparison:
    baseline: str  # the file
    baseline_date: str
    threshold: float
    confidence: float
    cells: list[CellComparison]
    rule: str = ("regressed: median latency ratio (current / baseline) above 1 + threshold AND the lower end "
                 "of its bootstrap confidence interval (per-call samples of both runs) above 1")

    @property
    def regressions(self) -> list[CellComparison]:
        return [c for c in self.cells if c.verdict == "regressed"]

    @property
    def passed(self) -> bool:
        return not self.regressions


def compare_to_baseline(current: BenchReport, baseline: BenchReport, threshold: float = DEFAULT_THRESHOLD,
                        confidence: float = 0.95, baseline_name: str = "", n_resamples: int = 2000) -> BaselineComparison:
    """Compare each cell present in both runs by its median latency (for offline cells, the same as
    comparing median-call throughput); see BaselineComparison.rule."""
    if not math.isfinite(threshold) or threshold < 0:
        raise InputError(f"--threshold must be zero or more, got {threshold}", "pass e.g. --threshold 0.1 for 10%")
    base = {c.key: c for c in baseline.cells}
    out: list[CellComparison] = []
    for cur in current.cells:
        old = base.get(cur.key)
        row = CellComparison(cur.backend, cur.precision, cur.variant, cur.batch_size, "not compared")
        if old is None:
            row.reason = "not in the baseline"
        elif cur.status != "ok" or old.status != "ok":
            row.reason = "failed in " + ("this run" if cur.status != "ok" else "the baseline")
        elif not cur.samples_ns or not old.samples_ns:
            row.reason = "no per-call samples"
        else:
            row.baseline_median_us, row.current_median_us = old.latency.median_us, cur.latency.median_us
            row.ratio = cur.latency.median_us / old.latency.median_us
            row.ci_low, row.ci_high = bootstrap_ratio_ci(old.samples_ns, cur.samples_ns, n_resamples=n_resamples, confidence=confidence)
            if row.ratio > 1 + threshold and row.ci_low > 1:
                row.verdict = "regressed"
            elif row.ratio < 1 / (1 + threshold) and row.ci_high < 1:
                row.verdict = "improved"
            else:
                row.verdict = "unchanged"
        out.append(row)
    return BaselineComparison(baseline_name, baseline.environment.date, threshold, confidence, out)
