"""toolkit.bench.baseline: the performance-CI comparison, cell by cell, on synthetic reports.

The verdict rules themselves (size and bootstrap confidence) are in test_bench.py; these tests pin
what each row reports and which cells are not compared, and why."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toolkit import bench
from toolkit.errors import InputError


def cell(backend, precision, variant, batch_size, median_us=None, status="ok", seed=0, n=300):
    if status != "ok" or median_us is None:
        return bench.BenchCell(backend, precision, variant, batch_size, bench.scenario_for(batch_size), status=status,
                               message="" if status == "ok" else "boom")
    seconds = median_us * 1e-6 * np.random.default_rng(seed).lognormal(0.0, 0.03, n)
    return bench.BenchCell(
        backend, precision, variant, batch_size, bench.scenario_for(batch_size),
        latency=bench.LatencyStats.from_seconds(seconds), images_per_second=bench.images_per_second(batch_size, seconds),
        images_per_second_p50=batch_size / float(np.median(seconds)), warmup_calls=1, timed_seconds=float(seconds.sum()),
        samples_ns=[int(round(s * 1e9)) for s in seconds],
    )


def report(*cells, date="2026-01-01T00:00:00+00:00"):
    env = bench.Environment("CPU", 2, 2, None, "Linux", "3.11", "0.1.0", {}, date, "toolkit bench", None, None)
    settings = bench.BenchSettings([1], "0 calls", 10, 0.1, 2, True, "mnist", "perf_counter_ns", [])
    return bench.BenchReport(environment=env, settings=settings,
                             pairs=[bench.PairInfo(c.backend, c.precision, c.variant, "ok") for c in cells], cells=list(cells))


def test_each_row_names_its_cell_and_the_baseline():
    base = report(cell("openvino", "int8-cpu", "direct", 32, 100.0), date="2026-02-03T04:05:06+00:00")
    cur = report(cell("openvino", "int8-cpu", "direct", 32, 100.0, seed=1))
    cmp = bench.compare_to_baseline(cur, base, threshold=0.2, confidence=0.9, baseline_name="old/bench.json")
    (row,) = cmp.cells
    assert (row.backend, row.precision, row.variant, row.batch_size) == ("openvino", "int8-cpu", "direct", 32)
    assert row.label == bench.row_label("openvino", "int8-cpu", "direct")
    assert (cmp.baseline, cmp.baseline_date, cmp.threshold, cmp.confidence) == ("old/bench.json", "2026-02-03T04:05:06+00:00", 0.2, 0.9)
    assert row.baseline_median_us == base.cells[0].latency.median_us and row.current_median_us == cur.cells[0].latency.median_us
    assert row.verdict == "unchanged" and row.ci_low < 1 < row.ci_high


@pytest.mark.parametrize("current, baseline, reason", [
    (cell("onnxruntime", "fp32", "", 8, 50.0), cell("onnxruntime", "fp32", "", 1, 50.0), "not in the baseline"),
    (cell("onnxruntime", "fp32", "", 1, status="failed"), cell("onnxruntime", "fp32", "", 1, 50.0), "failed in this run"),
    (cell("onnxruntime", "fp32", "", 1, 50.0), cell("onnxruntime", "fp32", "", 1, status="failed"), "failed in the baseline"),
    (cell("onnxruntime", "fp32", "", 1, status="failed"), cell("onnxruntime", "fp32", "", 1, status="failed"), "failed in this run"),
    (cell("onnxruntime", "fp32", "", 1, 50.0), cell("onnxruntime", "fp32", "", 1, None), "no per-call samples"),
])
def test_cells_that_cannot_be_compared_say_why_and_do_not_fail_the_run(current, baseline, reason):
    cmp = bench.compare_to_baseline(report(current), report(baseline))
    (row,) = cmp.cells
    assert (row.verdict, row.reason) == ("not compared", reason)
    assert row.ratio is None and cmp.passed and cmp.regressions == []


def test_a_zero_threshold_is_allowed_and_nonsense_is_refused():
    base = report(cell("pytorch", "fp32", "", 1, 100.0))
    slower = report(cell("pytorch", "fp32", "", 1, 103.0, seed=2))
    assert bench.compare_to_baseline(slower, base, threshold=0.0).cells[0].verdict == "regressed"
    assert bench.compare_to_baseline(slower, base, threshold=0.1).cells[0].verdict == "unchanged"
    for bad in (-0.01, math.nan, math.inf):
        with pytest.raises(InputError, match="--threshold"):
            bench.compare_to_baseline(slower, base, threshold=bad)


def test_regressions_list_only_the_regressed_cells():
    base = report(cell("pytorch", "fp32", "", 1, 100.0), cell("pytorch", "fp32", "", 8, 400.0, seed=3),
                  cell("pytorch", "fp32", "", 32, 900.0, seed=4))
    cur = report(cell("pytorch", "fp32", "", 1, 150.0, seed=5), cell("pytorch", "fp32", "", 8, 200.0, seed=6),
                 cell("pytorch", "fp32", "", 32, 900.0, seed=7))
    cmp = bench.compare_to_baseline(cur, base)
    assert [c.verdict for c in cmp.cells] == ["regressed", "improved", "unchanged"]
    assert [c.batch_size for c in cmp.regressions] == [1] and not cmp.passed


def test_the_interval_has_the_requested_confidence():
    base = report(cell("pytorch", "fp32", "", 1, 100.0, n=60))
    cur = report(cell("pytorch", "fp32", "", 1, 100.0, seed=9, n=60))
    narrow = bench.compare_to_baseline(cur, base, confidence=0.5).cells[0]
    wide = bench.compare_to_baseline(cur, base, confidence=0.99).cells[0]
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high


def test_a_faster_median_without_confidence_is_not_an_improvement():
    def few(samples_us):
        c = cell("pytorch", "fp32", "", 1, 1.0)
        seconds = np.asarray(samples_us, dtype=np.float64) * 1e-6
        c.latency, c.samples_ns = bench.LatencyStats.from_seconds(seconds), [int(v * 1000) for v in samples_us]
        return c

    cmp = bench.compare_to_baseline(report(few([40, 66, 33, 45, 58])), report(few([50, 80, 40, 55, 70])))
    row = cmp.cells[0]
    assert row.ratio < 1 / 1.1 and 1 < row.ci_high < 2  # 18% faster by the median, but 5 calls prove nothing
    assert row.verdict == "unchanged"
