"""The benchmark's data: configuration, per-cell statistics, results, and their JSON form
(docs/bench-schema.md), written and read back without loss."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from toolkit import env
from toolkit.errors import InputError
from toolkit.files.store import to_jsonable
from toolkit.stats import percentile

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
TUNED = "tuned"  # a row run with the settings from `--config tuned.json` (label "tuned bf16" when they change the arithmetic)

# The project's speed targets on its 2-core CPU (issue 13, raised from issue 5's 5x, 4x, 1.3x),
# shown beside the measured ratios.
TARGET_BATCH1_SPEEDUP = 10.0  # best backend's batch-1 median vs PyTorch eager
TARGET_THROUGHPUT_SPEEDUP = 6.0  # best backend's largest-batch images/s vs PyTorch eager
TARGET_WRAPPER_OVERHEAD = 0.05  # toolkit backend vs the runtime called directly (and its interval within ±5%)
TARGET_INT8_SPEEDUP = 1.0  # int8 not slower than fp32 at the largest batch, same runtime (on at least one)
TARGET_INT8_PEAK_SHARE = 0.5  # best int8 pair at the largest batch: share of the measured int8 peak
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


BYTES_PER_IMAGE = 28 * 28 * (1 + 4 + 4) + 10 * 4  # uint8 source, float32 batch, a runtime's copy, logits


def check_batch_memory(batch_sizes, available: int | None = None) -> None:
    """Refuse, before any work, a batch size whose arrays cannot fit in the memory left."""
    env.check_memory(max(batch_sizes) * BYTES_PER_IMAGE, f"batch size {max(batch_sizes)}", "pass smaller --batch-sizes (e.g. 1,256)", available)


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
    peak: bool = True  # measure this machine's peak and report each cell's share of it
    profile: bool = True  # per-node profiles (runtime profilers) of the CPU runtimes at the largest batch
    tuned: object | None = None  # a toolkit.bench.tuned.TunedFile (or its path): add its rows ("tuned") beside the defaults

    def __post_init__(self):
        # As the CLI passes them: warm-up text ("0.2s", "20") and a tuned.json path are read here.
        if not isinstance(self.warmup, Warmup):
            object.__setattr__(self, "warmup", Warmup.parse(self.warmup))
        if self.tuned is not None and isinstance(self.tuned, (str, os.PathLike)):
            from toolkit.bench.tuned import load_tuned

            object.__setattr__(self, "tuned", load_tuned(self.tuned))
        if not self.batch_sizes or any(not isinstance(b, int) or isinstance(b, bool) or b <= 0 for b in self.batch_sizes):
            raise InputError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}", "pass e.g. --batch-sizes 1,8,32")
        check_batch_memory(self.batch_sizes)
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
                    min_seconds=QUICK_MIN_SECONDS, torch_compile=False, quick=True, profile=False)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


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
    options: dict | None = None  # the backend options of a "tuned" row (threads included)
    # Roofline (toolkit.bench.peak): operations per second at the median call, and their share of
    # the measured peak of the data type the cell computes in.
    ops_per_second: float | None = None
    peak_dtype: str = ""
    percent_of_peak: float | None = None

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
    peak: object | None = None  # toolkit.bench.peak.PeakReport: this machine's measured peaks and the model's operation count
    profiles: list = field(default_factory=list)  # toolkit.bench.profile.RuntimeProfile per profiled pair
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



# --- JSON: write, read back, validate -------------------------------------------------------------

def report_to_dict(report: BenchReport, summary=None, baseline=None) -> dict:
    """The documented JSON form (docs/bench-schema.md); `summary` and `baseline` are derived views."""
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
        from toolkit.bench.peak import peak_report_from_dict
        from toolkit.bench.profile import profiles_from_dicts

        return BenchReport(
            environment=_build(Environment, data["environment"]), settings=_build(BenchSettings, data["settings"]),
            pairs=[_build(PairInfo, p) for p in data["pairs"]], cells=cells,
            peak=peak_report_from_dict(data["peak"]) if data.get("peak") else None, profiles=profiles_from_dicts(data.get("profiles")),
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


