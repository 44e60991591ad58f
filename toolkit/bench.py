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
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from toolkit import paths
from toolkit.errors import InputError, ModelFileError, ToolkitError, UnavailableError
from toolkit.stats import bootstrap_ratio_ci, percentile

SCHEMA = "toolkit-bench"
SCHEMA_VERSION = 1

DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 256)
QUICK_BATCH_SIZES = (1, 32, 256)
DEFAULT_WARMUP = "0.2s"  # trtexec's default warm-up
DEFAULT_ITERATIONS = 100
DEFAULT_MIN_SECONDS = 1.0
QUICK_WARMUP = "0.05s"
QUICK_ITERATIONS = 20
QUICK_MIN_SECONDS = 0.15
DEFAULT_THRESHOLD = 0.10
TORCH_COMPILE_MODE = "default"

# Samples kept per cell in the JSON (an evenly strided, time-ordered subset beyond this); the
# statistics always use every sample.
MAX_STORED_SAMPLES = 2000
# Wrapper and direct runtime alternate in this many timed blocks, so a drift in machine load
# (other processes, frequency) lands on both instead of biasing their ratio.
PAIRED_BLOCKS = 10
# Untimed calls before each block of an alternating measurement: the other session's worker
# threads may still be spinning, and caches hold the other model.
REWARM_CALLS = 3

SINGLE_STREAM = "single-stream"
OFFLINE = "offline"
END_TO_END = "end-to-end"
DIRECT = "direct"
COMPILE = "compile"

# The project's speed targets on its 2-core CPU (issue 5), shown beside the measured ratios.
TARGET_BATCH1_SPEEDUP = 5.0  # best backend's batch-1 median vs PyTorch eager
TARGET_THROUGHPUT_SPEEDUP = 4.0  # best backend's largest-batch images/s vs PyTorch eager
TARGET_WRAPPER_OVERHEAD = 0.05  # toolkit backend vs the runtime called directly
TARGET_INT8_SPEEDUP = 1.3  # int8 vs fp32 images/s at the largest batch, same runtime
INT8_PRECISIONS = ("int8", "int8-cpu")


# --- configuration ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Warmup:
    """Untimed calls before each cell: a number of calls, or a number of seconds (at least one call
    unless both are zero)."""

    count: int = 0
    seconds: float = 0.0

    @classmethod
    def parse(cls, text: str | int | float) -> Warmup:
        raw = str(text).strip().lower()
        try:
            if raw.endswith("s"):
                seconds = float(raw[:-1])
                if not math.isfinite(seconds) or seconds < 0:
                    raise ValueError
                return cls(seconds=seconds)
            count = int(raw)
            if count < 0:
                raise ValueError
            return cls(count=count)
        except ValueError:
            raise InputError(f"--warmup {text!r} is neither a call count nor seconds", "pass e.g. --warmup 20 (calls) or --warmup 0.2s") from None

    def describe(self) -> str:
        return f"{self.seconds:g} s" if self.seconds else f"{self.count} calls"


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    warmup: Warmup = field(default_factory=lambda: Warmup.parse(DEFAULT_WARMUP))
    iterations: int = DEFAULT_ITERATIONS  # at least this many timed calls per cell ...
    min_seconds: float = DEFAULT_MIN_SECONDS  # ... and at least this long, whichever is longer
    threads: int | None = None  # per backend; None: every usable core
    torch_compile: bool = True  # add a torch.compile row beside eager PyTorch
    direct: bool = True  # add a direct-runtime reference row per runtime (fp32)
    quick: bool = False
    max_stored_samples: int = MAX_STORED_SAMPLES

    def __post_init__(self):
        if not self.batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b <= 0 for b in self.batch_sizes):
            raise InputError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}", "pass e.g. --batch-sizes 1,8,32")
        if self.iterations < 1:
            raise InputError(f"--iterations must be at least 1, got {self.iterations}", "pass e.g. --iterations 100")
        if not math.isfinite(self.min_seconds) or self.min_seconds < 0:
            raise InputError(f"--min-seconds must be zero or more, got {self.min_seconds}", "pass e.g. --min-seconds 1")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}", "omit it to use every core")
        if self.max_stored_samples < 1:
            raise InputError(f"max_stored_samples must be at least 1, got {self.max_stored_samples}")

    @classmethod
    def quick_defaults(cls, **overrides) -> BenchConfig:
        """A small sweep that finishes in well under a minute (no torch.compile: it compiles for seconds)."""
        base = dict(batch_sizes=QUICK_BATCH_SIZES, warmup=Warmup.parse(QUICK_WARMUP), iterations=QUICK_ITERATIONS,
                    min_seconds=QUICK_MIN_SECONDS, torch_compile=False, quick=True)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --- statistics ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in microseconds over `count` timed calls (std: sample standard deviation)."""

    count: int
    min_us: float
    mean_us: float
    median_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    max_us: float
    std_us: float

    @classmethod
    def from_seconds(cls, samples) -> LatencyStats:
        us = np.asarray(samples, dtype=np.float64) * 1e6
        if us.size == 0:
            raise ValueError("no samples")
        return cls(
            count=int(us.size), min_us=float(us.min()), mean_us=float(us.mean()), median_us=percentile(us, 50),
            p90_us=percentile(us, 90), p95_us=percentile(us, 95), p99_us=percentile(us, 99), max_us=float(us.max()),
            std_us=float(us.std(ddof=1)) if us.size > 1 else 0.0,
        )

    @classmethod
    def from_ns(cls, samples_ns) -> LatencyStats:
        return cls.from_seconds(np.asarray(samples_ns, dtype=np.float64) * 1e-9)


def images_per_second(batch_size: int, samples_s) -> float:
    """Throughput of back-to-back synchronous calls: images processed / seconds spent in the calls."""
    s = np.asarray(samples_s, dtype=np.float64)
    total = float(s.sum())
    if s.size == 0 or total <= 0:
        raise ValueError("no positive samples")
    return batch_size * s.size / total


def scenario_for(batch_size: int) -> str:
    return SINGLE_STREAM if batch_size == 1 else OFFLINE


def stored_samples(samples_ns: list[int], limit: int) -> tuple[list[int], int]:
    """(kept samples, stride): every sample up to `limit`, else every stride-th in time order."""
    stride = max(1, math.ceil(len(samples_ns) / limit))
    return list(samples_ns[::stride]), stride


# --- results ------------------------------------------------------------------------------------

@dataclass
class DeviceTiming:
    """Device-resident times from a backend's `device_timings` hook (cheaper than a user's call)."""

    compute: LatencyStats
    h2d: LatencyStats | None = None
    d2h: LatencyStats | None = None
    enqueue: LatencyStats | None = None
    launch_bound: bool = False  # median enqueue > median compute: CUDA graphs would help
    source: str = "CUDA events (enqueue: host clock)"


@dataclass
class BenchCell:
    backend: str
    precision: str
    variant: str  # "" (the toolkit backend), "direct" (runtime called directly), "compile" (torch.compile)
    batch_size: int
    scenario: str  # "single-stream" | "offline"
    timing: str = END_TO_END
    status: str = "ok"  # "ok" | "failed"
    message: str = ""
    latency: LatencyStats | None = None
    images_per_second: float | None = None  # images / seconds spent in the calls (mean-based)
    images_per_second_p50: float | None = None  # batch size / median latency: robust to a few slow calls
    warmup_calls: int = 0
    timed_seconds: float = 0.0  # wall time of the timed calls, loop included
    samples_ns: list[int] = field(default_factory=list)  # per-call latency, time order
    samples_stride: int = 1  # samples_ns holds every stride-th call
    device: DeviceTiming | None = None

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.backend, self.precision, self.variant, self.batch_size)

    @property
    def label(self) -> str:
        return row_label(self.backend, self.precision, self.variant)


def row_label(backend: str, precision: str, variant: str) -> str:
    return f"{backend}/{precision}" + (f" ({variant})" if variant else "")


@dataclass
class PairInfo:
    """One row of the sweep: how it was set up, or why it did not run."""

    backend: str
    precision: str
    variant: str
    status: str  # "ok" | "failed" (load or every cell failed) | "skipped" (unavailable here)
    message: str = ""
    device: str = ""
    runtime: str = ""
    model_path: str = ""
    model_sha256: str = ""
    threads: int | None = None
    settings: dict = field(default_factory=dict)
    load_seconds: float = 0.0

    @property
    def label(self) -> str:
        return row_label(self.backend, self.precision, self.variant)


@dataclass
class Environment:
    cpu_model: str
    cpu_count: int  # logical CPUs in the machine
    usable_cores: int  # CPUs this process may run on
    gpu: str | None
    platform: str
    python: str
    toolkit: str
    versions: dict  # runtime packages: torch, onnxruntime, openvino, tensorrt, numpy, ...
    date: str  # UTC, ISO 8601
    command: str
    load_average_start: list[float] | None = None  # 1/5/15-minute load when the run began
    load_average_end: list[float] | None = None


@dataclass
class BenchSettings:
    batch_sizes: list[int]
    warmup: str
    iterations: int
    min_seconds: float
    threads: int
    quick: bool
    input: str
    timer: str
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchReport:
    environment: Environment
    settings: BenchSettings
    pairs: list[PairInfo]
    cells: list[BenchCell]
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    @property
    def failed(self) -> list[BenchCell]:
        return [c for c in self.cells if c.status != "ok"]

    def ok_cells(self) -> list[BenchCell]:
        return [c for c in self.cells if c.status == "ok"]

    def cell(self, backend: str, precision: str, variant: str, batch_size: int) -> BenchCell | None:
        for c in self.cells:
            if c.key == (backend, precision, variant, batch_size) and c.status == "ok":
                return c
        return None


# --- environment --------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpu_description() -> str | None:
    from toolkit.backends.registry import cuda_available

    ok, _ = cuda_available()
    if not ok:
        return None
    import torch

    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{', '.join(names)} (CUDA {torch.version.cuda})"


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def command_line(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(("toolkit", "__main__.py", "-m")):
        argv[0] = "toolkit"
    return shlex.join(argv)


def capture_environment() -> Environment:
    from toolkit.artifacts import library_versions

    versions = library_versions()
    return Environment(
        cpu_model=cpu_model(), cpu_count=os.cpu_count() or 1, usable_cores=usable_cores(), gpu=_gpu_description(),
        platform=platform.platform(), python=versions.pop("python"), toolkit=versions.pop("toolkit"), versions=versions,
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), command=command_line(),
        load_average_start=_load_average(),
    )


# --- timing -------------------------------------------------------------------------------------

def warm_up(call: Callable, batch: np.ndarray, warmup: Warmup) -> int:
    """Untimed calls until both the count and the seconds of `warmup` are reached; returns the count."""
    count, start = 0, time.perf_counter_ns()
    limit_ns = warmup.seconds * 1e9
    while count < warmup.count or (time.perf_counter_ns() - start) < limit_ns:
        call(batch)
        count += 1
    return count


def time_calls(call: Callable, batch: np.ndarray, iterations: int, min_seconds: float) -> tuple[list[int], int]:
    """Time back-to-back calls until at least `iterations` calls AND `min_seconds` have passed.
    Returns (per-call nanoseconds, loop wall nanoseconds)."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    min_ns = min_seconds * 1e9
    start = clock()
    while True:
        t0 = clock()
        call(batch)
        t1 = clock()
        append(t1 - t0)
        if len(samples) >= iterations and t1 - start >= min_ns:
            return samples, t1 - start


@dataclass
class Measurement:
    samples_ns: list[int]
    wall_ns: int
    warmup_calls: int


def measure(calls: list[Callable], batch: np.ndarray, config: BenchConfig) -> list[Measurement]:
    """Warm up and time each call on `batch`. Several calls (wrapper and direct runtime) alternate in
    PAIRED_BLOCKS blocks, each block a share of the iterations and seconds, so both see the same
    machine. The garbage collector is paused while timing, as timeit does."""
    blocks = 1 if len(calls) == 1 else PAIRED_BLOCKS
    results = [Measurement([], 0, warm_up(call, batch, config.warmup)) for call in calls]
    iterations = math.ceil(config.iterations / blocks)
    seconds = config.min_seconds / blocks
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(blocks):
            for call, result in zip(calls, results, strict=True):
                if blocks > 1:
                    for _ in range(REWARM_CALLS):
                        call(batch)
                    result.warmup_calls += REWARM_CALLS
                samples, wall = time_calls(call, batch, iterations, seconds)
                result.samples_ns.extend(samples)
                result.wall_ns += wall
    finally:
        if gc_was_enabled:
            gc.enable()
    return results


def device_timing_from_hook(raw: dict) -> DeviceTiming:
    """Build DeviceTiming from a backend's `device_timings` result (see the module docstring)."""
    if not isinstance(raw, dict) or not raw.get("compute"):
        raise ValueError("device_timings must return a dict with per-iteration seconds under 'compute'")
    stats = {k: LatencyStats.from_seconds(raw[k]) for k in ("compute", "h2d", "d2h", "enqueue") if raw.get(k)}
    enqueue = stats.get("enqueue")
    return DeviceTiming(
        compute=stats["compute"], h2d=stats.get("h2d"), d2h=stats.get("d2h"), enqueue=enqueue,
        launch_bound=bool(enqueue and enqueue.median_us > stats["compute"].median_us),
    )


# --- direct runtime references ------------------------------------------------------------------

def _direct_onnxruntime(backend) -> tuple[Callable, str]:
    import onnxruntime as ort

    # The wrapper's own SessionOptions: same threads and optimisation level by construction.
    session = ort.InferenceSession(str(backend.model_path), sess_options=backend.session_options(), providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {"input": batch})[0]

    return run, f"onnxruntime {ort.__version__}: InferenceSession.run"


def _direct_openvino(backend) -> tuple[Callable, str]:
    import openvino as ov

    details = backend.details()
    config = {
        "INFERENCE_NUM_THREADS": int(details["threads"]),
        "PERFORMANCE_HINT": details["hint"],
        "INFERENCE_PRECISION_HINT": details["inference_precision"],
    }
    compiled = ov.Core().compile_model(str(backend.model_path), "CPU", config)

    def run(batch: np.ndarray) -> np.ndarray:
        # CompiledModel.__call__: the idiomatic synchronous call; it returns owned output arrays.
        return compiled(batch)[0]

    return run, f"openvino {ov.get_version()}: CompiledModel.__call__"


DIRECT_RUNTIMES: dict[str, Callable] = {"onnxruntime": _direct_onnxruntime, "openvino": _direct_openvino}
DIRECT_PRECISIONS = ("fp32",)


# --- the sweep ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedPair:
    backend: str
    precision: str
    model_path: Path
    available: bool
    reason: str


def plan_pairs(backends: list[str] | None, precisions: list[str] | None, checkpoint: str | Path, artifacts_dir: str | Path) -> list[PlannedPair]:
    """Every requested (backend, precision) pair, checked before any timing: unknown names and
    missing model files are bad input; an explicitly requested backend that can't run here is an
    UnavailableError; other unavailable backends are skipped with their reason."""
    from toolkit.backends import registry
    from toolkit.parity import select_pairs

    for name in backends or []:
        registry.get_spec(name)
        st = registry.status(name)
        if not st.available:
            raise UnavailableError(f"backend {name} was requested but is unavailable: {st.reason}")
    planned = []
    for name, precision in select_pairs(backends, precisions):
        spec = registry.get_spec(name)
        st = registry.status(name)
        path = Path(checkpoint) if spec.reads == "checkpoint" else registry.model_path_for(name, precision, artifacts_dir)
        if st.available and not path.is_file():
            how = (
                "train it with `toolkit train` or pass --checkpoint" if spec.reads == "checkpoint"
                else f"build it with `toolkit export --format tensorrt --precision {precision}`" if spec.reads == "engine"
                else f"export it with `toolkit export --format onnx --precision {precision}` or pass --artifacts"
            )
            raise ModelFileError(f"model file {path} for {name}/{precision} is missing", how)
        planned.append(PlannedPair(name, precision, path, st.available, st.reason))
    return planned


def benchmark_images(max_batch: int, data_dir=None) -> np.ndarray:
    """The first `max_batch` MNIST test images (repeated past 10,000), validated, C-contiguous."""
    from toolkit.backends.base import validate_batch
    from toolkit.data import load_split_uint8, to_model_input

    images, _ = load_split_uint8("test", data_dir)
    reps = math.ceil(max_batch / len(images))
    x = to_model_input(images if reps == 1 else np.concatenate([images] * reps))[:max_batch]
    return validate_batch(np.ascontiguousarray(x))


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ToolkitError):
        return " ".join(str(exc).split())
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _check_output(out, batch_size: int) -> None:
    if not isinstance(out, np.ndarray) or out.shape != (batch_size, 10):
        got = getattr(out, "shape", type(out).__name__)
        raise ToolkitError(f"output {got} at batch {batch_size}, expected ({batch_size}, 10)")


def _make_cell(info: PairInfo, batch_size: int, m: Measurement, config: BenchConfig) -> BenchCell:
    kept, stride = stored_samples(m.samples_ns, config.max_stored_samples)
    seconds = np.asarray(m.samples_ns, dtype=np.float64) * 1e-9
    return BenchCell(
        backend=info.backend, precision=info.precision, variant=info.variant, batch_size=batch_size,
        scenario=scenario_for(batch_size), latency=LatencyStats.from_seconds(seconds),
        images_per_second=images_per_second(batch_size, seconds), warmup_calls=m.warmup_calls,
        images_per_second_p50=batch_size / float(np.median(seconds)),
        timed_seconds=m.wall_ns * 1e-9, samples_ns=kept, samples_stride=stride,
    )


def _failed_cell(info: PairInfo, batch_size: int, message: str) -> BenchCell:
    return BenchCell(info.backend, info.precision, info.variant, batch_size, scenario_for(batch_size), status="failed", message=message)


def _bench_rows(planned: PlannedPair, images: np.ndarray, config: BenchConfig, threads: int, progress) -> tuple[list[PairInfo], list[BenchCell]]:
    """Benchmark one pair (and its direct/compile reference rows); never raises for the pair's own failures."""
    from toolkit.artifacts import sha256_file
    from toolkit.backends import registry

    variants = [""]
    if planned.backend == "pytorch" and config.torch_compile:
        variants.append(COMPILE)
    infos: list[PairInfo] = []
    cells: list[BenchCell] = []
    sha = sha256_file(planned.model_path)
    for variant in variants:
        info = PairInfo(planned.backend, planned.precision, variant, "ok", model_path=str(planned.model_path), model_sha256=sha, threads=threads)
        infos.append(info)
        options = {"compile": TORCH_COMPILE_MODE} if variant == COMPILE else {}
        backend = None
        try:
            t0 = time.perf_counter()
            backend = registry.create_backend(planned.backend, planned.precision, planned.model_path, threads=threads, **options)
            backend.load()
            info.load_seconds = time.perf_counter() - t0
            described = backend.describe()
            info.device, info.runtime, info.settings = described.device, described.runtime, dict(described.details)
        except Exception as exc:  # noqa: BLE001 - a pair that can't load fails alone
            info.status, info.message = "failed", _one_line(exc)
            cells += [_failed_cell(info, bs, info.message) for bs in config.batch_sizes]
            if backend is not None:
                backend.close()
            continue

        direct_info, direct_call = None, None
        if not variant and config.direct and planned.backend in DIRECT_RUNTIMES and planned.precision in DIRECT_PRECISIONS:
            direct_info = PairInfo(planned.backend, planned.precision, DIRECT, "ok", device=info.device, model_path=str(planned.model_path),
                                   model_sha256=sha, threads=threads, settings=dict(info.settings))
            infos.append(direct_info)
            try:
                t0 = time.perf_counter()
                direct_call, direct_info.runtime = DIRECT_RUNTIMES[planned.backend](backend)
                direct_info.load_seconds = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001
                direct_info.status, direct_info.message = "failed", _one_line(exc)
                cells += [_failed_cell(direct_info, bs, direct_info.message) for bs in config.batch_sizes]
                direct_info = None

        try:
            for bs in config.batch_sizes:
                if progress:
                    progress(f"{row_label(planned.backend, planned.precision, variant)} batch {bs}")
                batch = images[:bs]
                rows = []
                for row_info, call in [(info, backend.run)] + ([(direct_info, direct_call)] if direct_info else []):
                    try:
                        _check_output(call(batch), bs)
                        rows.append((row_info, call))
                    except Exception as exc:  # noqa: BLE001 - one failing cell doesn't stop the others
                        cells.append(_failed_cell(row_info, bs, _one_line(exc)))
                if not rows:
                    continue
                try:
                    measured = measure([call for _, call in rows], batch, config)
                except Exception as exc:  # noqa: BLE001
                    cells += [_failed_cell(i, bs, _one_line(exc)) for i, _ in rows]
                    continue
                for (row_info, _), m in zip(rows, measured, strict=True):
                    cells.append(_make_cell(row_info, bs, m, config))
                hook = getattr(backend, "device_timings", None)
                if callable(hook) and any(i is info for i, _ in rows):
                    cell = next(c for c in reversed(cells) if c.key == (info.backend, info.precision, info.variant, bs))
                    try:
                        cell.device = device_timing_from_hook(hook(batch, max(config.iterations, 10)))
                    except Exception as exc:  # noqa: BLE001 - the end-to-end number stands without it
                        cell.message = f"device timing unavailable: {_one_line(exc)}"
        finally:
            backend.close()
    for i in infos:
        own = [c for c in cells if (c.backend, c.precision, c.variant) == (i.backend, i.precision, i.variant)]
        if i.status == "ok" and own and all(c.status != "ok" for c in own):
            i.status, i.message = "failed", own[0].message
    return infos, cells


def run_bench(
    config: BenchConfig,
    backends: list[str] | None = None,
    precisions: list[str] | None = None,
    checkpoint: str | Path | None = None,
    artifacts_dir: str | Path = paths.ARTIFACTS_DIR,
    data_dir=None,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Benchmark every requested, available pair over `config.batch_sizes`; see the module docstring."""
    checkpoint = paths.checkpoint_path() if checkpoint is None else checkpoint
    planned = plan_pairs(backends, precisions, checkpoint, artifacts_dir)
    images = benchmark_images(max(config.batch_sizes), data_dir)
    threads = config.threads or usable_cores()
    environment = capture_environment()
    notes = []
    if config.direct:
        notes.append(f"'direct' rows call the runtime's own Python API on the same model, settings and data; they alternate with the toolkit's row in {PAIRED_BLOCKS} blocks")
    if config.torch_compile:
        notes.append(f"'compile' rows: torch.compile(mode={TORCH_COMPILE_MODE!r}); compilation happens during warm-up")
    settings = BenchSettings(
        batch_sizes=list(config.batch_sizes), warmup=config.warmup.describe(), iterations=config.iterations,
        min_seconds=config.min_seconds, threads=threads, quick=config.quick,
        input=f"the first {max(config.batch_sizes)} MNIST test images, float32 (N,1,28,28) in [0,1], the same for every pair",
        timer="time.perf_counter_ns around each synchronous call (host numpy in -> host numpy out); garbage collector paused while timing",
        notes=notes,
    )
    pairs: list[PairInfo] = []
    cells: list[BenchCell] = []
    for p in planned:
        if not p.available:
            pairs.append(PairInfo(p.backend, p.precision, "", "skipped", p.reason, model_path=str(p.model_path)))
            continue
        infos, new_cells = _bench_rows(p, images, config, threads, progress)
        pairs += infos
        cells += new_cells
    environment.load_average_end = _load_average()
    return BenchReport(environment=environment, settings=settings, pairs=pairs, cells=cells)


# --- summary: the ratios the issue asks for -----------------------------------------------------

@dataclass
class Ratio:
    what: str
    value: float | None  # None: could not be measured in this run
    target: float | None
    met: bool | None
    detail: str = ""


@dataclass
class OverheadRow:
    backend: str
    precision: str
    batch_size: int
    wrapper_median_us: float
    direct_median_us: float
    overhead: float  # wrapper / direct - 1
    ci_low: float  # bootstrap 95% interval of the overhead
    ci_high: float


@dataclass
class BenchSummary:
    """Ratios of medians (throughput: images/s at median latency), robust on a shared machine."""

    ratios: list[Ratio]
    overhead: list[OverheadRow]


def _toolkit_cells(report: BenchReport, batch_size: int) -> list[BenchCell]:
    # A toolkit backend is anything but the direct-runtime reference.
    return [c for c in report.ok_cells() if c.batch_size == batch_size and c.variant != DIRECT]


def summarize(report: BenchReport, confidence: float = 0.95) -> BenchSummary:
    ratios: list[Ratio] = []
    sizes = sorted({c.batch_size for c in report.ok_cells()})
    eager = {bs: report.cell("pytorch", "fp32", "", bs) for bs in sizes}
    if 1 in sizes and eager[1] is not None:
        best = min(_toolkit_cells(report, 1), key=lambda c: c.latency.median_us)
        value = eager[1].latency.median_us / best.latency.median_us
        ratios.append(Ratio("batch 1: PyTorch eager median / best median", value, TARGET_BATCH1_SPEEDUP, value >= TARGET_BATCH1_SPEEDUP,
                            f"best {best.label} {best.latency.median_us:.1f} µs vs pytorch/fp32 {eager[1].latency.median_us:.1f} µs"))
    if sizes and max(sizes) > 1 and eager.get(max(sizes)) is not None:
        big = max(sizes)
        best = max(_toolkit_cells(report, big), key=lambda c: c.images_per_second_p50)
        value = best.images_per_second_p50 / eager[big].images_per_second_p50
        ratios.append(Ratio(f"batch {big}: best images/s / PyTorch eager", value, TARGET_THROUGHPUT_SPEEDUP, value >= TARGET_THROUGHPUT_SPEEDUP,
                            f"best {best.label} {best.images_per_second_p50:,.0f}/s vs pytorch/fp32 {eager[big].images_per_second_p50:,.0f}/s"))
    if sizes:
        big = max(sizes)
        for backend in sorted({c.backend for c in report.ok_cells()}):
            fp32 = report.cell(backend, "fp32", "", big)
            for precision in INT8_PRECISIONS:
                int8 = report.cell(backend, precision, "", big)
                if fp32 and int8:
                    value = int8.images_per_second_p50 / fp32.images_per_second_p50
                    ratios.append(Ratio(f"batch {big}: {backend} {precision} / fp32 images/s", value, TARGET_INT8_SPEEDUP, value >= TARGET_INT8_SPEEDUP,
                                        f"{int8.images_per_second_p50:,.0f}/s vs {fp32.images_per_second_p50:,.0f}/s"))
        if 1 in sizes and eager.get(1) is not None:
            compiled = report.cell("pytorch", "fp32", COMPILE, 1)
            if compiled:
                ratios.append(Ratio("batch 1: torch.compile median / eager median", compiled.latency.median_us / eager[1].latency.median_us, None, None))
            compiled = report.cell("pytorch", "fp32", COMPILE, big)
            if compiled and big > 1 and eager.get(big):
                ratios.append(Ratio(f"batch {big}: torch.compile / eager images/s", compiled.images_per_second_p50 / eager[big].images_per_second_p50, None, None))
    overhead: list[OverheadRow] = []
    for d in report.ok_cells():
        if d.variant != DIRECT:
            continue
        w = report.cell(d.backend, d.precision, "", d.batch_size)
        if w is None or not w.samples_ns or not d.samples_ns:
            continue
        lo, hi = bootstrap_ratio_ci(d.samples_ns, w.samples_ns, n_resamples=1000, confidence=confidence)
        overhead.append(OverheadRow(d.backend, d.precision, d.batch_size, w.latency.median_us, d.latency.median_us,
                                    w.latency.median_us / d.latency.median_us - 1.0, lo - 1.0, hi - 1.0))
    for backend in sorted({o.backend for o in overhead}):
        rows = [o for o in overhead if o.backend == backend]
        worst = max(rows, key=lambda o: o.overhead)
        # On a shared machine a point estimate can exceed the target by noise alone: the target
        # counts as missed only where the whole confidence interval lies above it.
        missed = [o for o in rows if o.ci_low > TARGET_WRAPPER_OVERHEAD]
        each = ", ".join(f"batch {o.batch_size} {100 * o.overhead:+.1f}% [{100 * o.ci_low:+.1f}..{100 * o.ci_high:+.1f}]" for o in rows)
        ratios.append(Ratio(f"{backend} wrapper overhead vs direct (worst batch size)", worst.overhead, TARGET_WRAPPER_OVERHEAD,
                            not missed, f"{each} ({100 * confidence:g}% CI)"))
    return BenchSummary(ratios, overhead)


# --- JSON: write, read back, validate -------------------------------------------------------------

def report_to_dict(report: BenchReport, summary: BenchSummary | None = None, baseline=None) -> dict:
    """The documented JSON form (docs/bench-schema.md); `summary` and `baseline` are derived views."""
    from toolkit.report import to_jsonable

    data = {"schema": report.schema, "schema_version": report.schema_version}
    data.update(to_jsonable({k: v for k, v in asdict(report).items() if k not in ("schema", "schema_version")}))
    if summary is not None:
        data["summary"] = to_jsonable(summary)
    if baseline is not None:
        data["baseline"] = to_jsonable(baseline)
    return data


def _build(cls, data):
    """Instantiate dataclass `cls` from a dict, ignoring unknown keys (newer minor additions)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def _stats(data) -> LatencyStats | None:
    return None if data is None else _build(LatencyStats, data)


def report_from_dict(data: dict, source: str = "benchmark JSON") -> BenchReport:
    """Rebuild a BenchReport; raises InputError naming `source` when it is not one."""
    fix = "pass a bench.json written by `toolkit bench`"
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(f"{source} is not a toolkit benchmark JSON (no \"schema\": \"{SCHEMA}\")", fix)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{source} has benchmark schema version {data.get('schema_version')!r}; this toolkit reads {SCHEMA_VERSION}", fix)
    try:
        cells = []
        for c in data["cells"]:
            c = dict(c)
            c["latency"] = _stats(c.get("latency"))
            if c.get("device"):
                dev = dict(c["device"])
                for k in ("compute", "h2d", "d2h", "enqueue"):
                    dev[k] = _stats(dev.get(k))
                c["device"] = _build(DeviceTiming, dev)
            cell = _build(BenchCell, c)
            if cell.status == "ok":
                _check_ok_cell(cell)
            cells.append(cell)
        return BenchReport(
            environment=_build(Environment, data["environment"]), settings=_build(BenchSettings, data["settings"]),
            pairs=[_build(PairInfo, p) for p in data["pairs"]], cells=cells,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(f"{source} is not a valid toolkit benchmark JSON (bad or missing field: {exc})", fix) from None


def _check_ok_cell(cell: BenchCell) -> None:
    """What the baseline comparison relies on: a positive, finite median and integer samples."""
    median = getattr(cell.latency, "median_us", None)
    if not isinstance(median, (int, float)) or not math.isfinite(median) or median <= 0:
        raise ValueError(f"cell {cell.backend}/{cell.precision} batch {cell.batch_size} has no positive median latency")
    if not isinstance(cell.samples_ns, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in cell.samples_ns):
        raise ValueError(f"cell {cell.backend}/{cell.precision} batch {cell.batch_size} has samples that are not positive integers")


def load_report(path: str | os.PathLike) -> BenchReport:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"benchmark file {p} does not exist", "pass the bench.json of an earlier `toolkit bench` run")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{p} is not a toolkit benchmark JSON (not readable JSON: {' '.join(str(exc).split())[:100]})",
                         "pass a bench.json written by `toolkit bench`") from None
    return report_from_dict(data, str(p))


# --- baseline comparison --------------------------------------------------------------------------

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
