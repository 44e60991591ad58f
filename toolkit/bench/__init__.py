"""Latency and throughput of every (backend, precision) pair over a batch-size sweep.

One timing definition for every backend: the wall time of one synchronous `backend.run(batch)`
call, numpy in on the host to numpy out on the host (what a user's own call costs, input checks
included), measured with `time.perf_counter_ns` around each call. Models are loaded, and each batch
size warmed up, before timing starts; every pair gets the same real MNIST test images.

Scenarios are named as MLPerf does: batch 1 is *single-stream* (one synchronous call after another;
read p50/p90/p99 latency), larger batches are *offline* (read images/s). Anything cheaper than the
end-to-end call (device-resident compute from CUDA events) is reported beside it, labelled as such.

Two kinds of reference rows make the numbers checkable:
- `direct`: the same runtime called directly (its own Python API, same model file, same settings,
  same data), timed in alternating blocks with the toolkit's wrapper, so the report states what
  the toolkit's backend layer costs;
- `compile`: PyTorch through `torch.compile`, beside eager PyTorch.

GPU hook (optional, for backends that can time the device): a backend may define

    def device_timings(self, batch: np.ndarray, iterations: int) -> dict[str, list[float]]

which runs `batch` (already validated, on the host) `iterations` times after its own warm-up and
returns per-iteration seconds under the keys "h2d" (host-to-device copy), "compute" (device
execution), "d2h" (device-to-host copy), all three from CUDA events, and "enqueue" (host time to
submit the work); a key the backend cannot measure is left out, except "compute", which is
required. The benchmark reports each component's statistics next to the end-to-end cell and flags
the cell as launch-bound when median enqueue time exceeds median compute time (CUDA graphs help
there), as trtexec does.

Modules: schema (configuration, results, JSON), timing, direct (reference rows), sweep, summary, peak
(roofline), profile (runtime profilers), tune (configuration search), tuned (tuned.json),
baseline, train (time to accuracy).
"""

from toolkit.bench.baseline import BaselineComparison, CellComparison, compare_to_baseline
from toolkit.bench.direct import DIRECT_PRECISIONS, DIRECT_RUNTIMES
from toolkit.bench.schema import (
    COMPILE,
    DEFAULT_BATCH_SIZES,
    DEFAULT_ITERATIONS,
    DEFAULT_MIN_SECONDS,
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP,
    DIRECT,
    END_TO_END,
    INT8_PRECISIONS,
    MAX_STORED_SAMPLES,
    OFFLINE,
    PAIRED_BLOCKS,
    QUICK_BATCH_SIZES,
    QUICK_ITERATIONS,
    QUICK_MIN_SECONDS,
    QUICK_WARMUP,
    REWARM_CALLS,
    SCHEMA,
    SCHEMA_VERSION,
    SINGLE_STREAM,
    TARGET_BATCH1_SPEEDUP,
    TARGET_INT8_SPEEDUP,
    TARGET_THROUGHPUT_SPEEDUP,
    TARGET_WRAPPER_OVERHEAD,
    TORCH_COMPILE_MODE,
    BenchCell,
    BenchConfig,
    BenchReport,
    BenchSettings,
    DeviceTiming,
    Environment,
    LatencyStats,
    PairInfo,
    Warmup,
    images_per_second,
    load_report,
    report_from_dict,
    report_to_dict,
    row_label,
    scenario_for,
    stored_samples,
)
from toolkit.bench.summary import BenchSummary, OverheadRow, Ratio, summarize
from toolkit.bench.sweep import benchmark_images, run_bench
from toolkit.bench.timing import Measurement, device_timing_from_hook, measure, time_calls, warm_up
from toolkit.bench.tune import tune_to_file
from toolkit.bench.tuned import load_tuned

__all__ = [
    "BaselineComparison",
    "BenchCell",
    "BenchConfig",
    "BenchReport",
    "BenchSettings",
    "BenchSummary",
    "COMPILE",
    "CellComparison",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_ITERATIONS",
    "DEFAULT_MIN_SECONDS",
    "DEFAULT_THRESHOLD",
    "DEFAULT_WARMUP",
    "DIRECT",
    "DIRECT_PRECISIONS",
    "DIRECT_RUNTIMES",
    "DeviceTiming",
    "END_TO_END",
    "Environment",
    "INT8_PRECISIONS",
    "LatencyStats",
    "MAX_STORED_SAMPLES",
    "Measurement",
    "OFFLINE",
    "OverheadRow",
    "PAIRED_BLOCKS",
    "PairInfo",
    "QUICK_BATCH_SIZES",
    "QUICK_ITERATIONS",
    "QUICK_MIN_SECONDS",
    "QUICK_WARMUP",
    "REWARM_CALLS",
    "Ratio",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SINGLE_STREAM",
    "TARGET_BATCH1_SPEEDUP",
    "TARGET_INT8_SPEEDUP",
    "TARGET_THROUGHPUT_SPEEDUP",
    "TARGET_WRAPPER_OVERHEAD",
    "TORCH_COMPILE_MODE",
    "Warmup",
    "benchmark_images",
    "compare_to_baseline",
    "device_timing_from_hook",
    "images_per_second",
    "load_report",
    "load_tuned",
    "measure",
    "report_from_dict",
    "report_to_dict",
    "row_label",
    "run_bench",
    "scenario_for",
    "stored_samples",
    "summarize",
    "time_calls",
    "tune_to_file",
    "warm_up",
]
