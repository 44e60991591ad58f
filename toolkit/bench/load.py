"""Load benchmark: several clients at once, as a server sees them.

A *row* is one way of running the model: in-process (a toolkit backend called from this process)
or through Triton (HTTP, gRPC, or HTTP with system shared memory). For each concurrency level C and
batch size B, C client threads each send batches of B real MNIST test images back to back for a
fixed time, each through its own backend object (its own connection); every response is checked
against the in-process logits of the same images. Reported per cell:

- images/s: images answered / wall time of the cell (all clients together);
- p50/p90/p99 of the per-request latency (`time.perf_counter_ns` around one synchronous call);
- failed requests (an error or timeout) and wrong responses (top-1 differs, or |Δlogit| above
  `tolerance`, from the in-process result for the same images);
- for Triton rows, the server's own statistics for the model as deltas over the cell (statistics
  endpoint): requests, executions and inferences (inferences / executions is how much the dynamic
  batcher merged), and the mean queue, compute-input, compute-infer and compute-output time per
  request.

In-process rows run at concurrency 1 only: several threads on one in-process backend measure the
runtime's own thread pool fighting itself, not a serving setup. The client threads and the server
share this machine's cores: on a small machine the numbers include that contention, and say so.

Soak (`run_soak`): one row at one concurrency for a long time with mixed batch sizes, sampling the
resident memory of given processes, to show that nothing fails, nothing is wrong, and memory does not
grow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from toolkit.errors import InputError
from toolkit.stats import percentile

DEFAULT_CONCURRENCIES = (1, 4, 16)
DEFAULT_BATCH_SIZES = (1, 256)
DEFAULT_SECONDS = 2.0
DEFAULT_WARMUP_S = 0.3
DEFAULT_TOLERANCE = 1e-4  # same runtime and file in and out of the server: equal up to float noise
IN_PROCESS = "in-process"
STAT_KEYS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class LoadConfig:
    concurrencies: tuple[int, ...] = DEFAULT_CONCURRENCIES
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    seconds: float = DEFAULT_SECONDS  # per cell
    warmup_s: float = DEFAULT_WARMUP_S  # per client, before the cell's clock starts
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self):
        for name, values, top in (("--concurrency", self.concurrencies, 256), ("--batch-sizes", self.batch_sizes, 65536)):
            if not values or any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top for v in values):
                raise InputError(f"{name} must be integers in 1..{top}, got {list(values)}", f"pass e.g. {name} 1,4,16")
        if not (0 < self.seconds <= 3600):
            raise InputError(f"--duration must be in (0, 3600] seconds, got {self.seconds}", "pass e.g. --duration 2")
        if not (0 <= self.warmup_s <= 60):
            raise InputError(f"warm-up must be 0..60 s, got {self.warmup_s}", "pass e.g. 0.3")


@dataclass(frozen=True)
class LoadRow:
    """One way of running the model. `make_backend` returns a new, unloaded backend (one per client);
    `statistics` (Triton rows) returns the model's cumulative server statistics or None."""

    backend: str
    precision: str
    variant: str  # in-process | http | grpc | http+shm | ...
    make_backend: Callable[[], object]
    statistics: Callable[[], dict | None] | None = None
    max_concurrency: int | None = None  # in-process rows: 1

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.precision} ({self.variant})"


@dataclass
class ServerStats:
    """Triton's per-model statistics over one cell (deltas); times are means per request in µs."""

    requests: int
    executions: int
    inferences: int  # images
    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float
    # Servers that report replicas (the Ray Serve endpoint): replica id -> {"node", "requests",
    # "images", "compute_infer_us"} over the cell, for the replicas that served in it.
    replicas: dict[str, dict] | None = None

    @property
    def images_per_execution(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0


@dataclass
class LoadCell:
    backend: str
    precision: str
    variant: str
    concurrency: int
    batch_size: int
    requests: int = 0
    images: int = 0
    failed: int = 0
    wrong: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    first_error: str = ""
    server: ServerStats | None = None

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.precision} ({self.variant})"


@dataclass
class LoadReport:
    config: LoadConfig
    cells: list[LoadCell] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_average_start: list[float] | None = None
    load_average_end: list[float] | None = None

    @property
    def failed(self) -> list[LoadCell]:
        return [c for c in self.cells if c.failed or c.wrong or not c.requests]


def _stats_delta(before: dict | None, after: dict | None) -> ServerStats | None:
    if not before or not after:
        return None

    def get(d, *keys):
        for k in keys:
            d = (d or {}).get(k, {})
        return int(d or 0)

    requests = get(after, "inference_stats", "success", "count") - get(before, "inference_stats", "success", "count")
    per_request = {}
    for key in STAT_KEYS:
        ns = get(after, "inference_stats", key, "ns") - get(before, "inference_stats", key, "ns")
        per_request[key] = ns / 1e3 / requests if requests else 0.0
    return ServerStats(
        requests=requests,
        executions=get(after, "execution_count") - get(before, "execution_count"),
        inferences=get(after, "inference_count") - get(before, "inference_count"),
        queue_us=per_request["queue"], compute_input_us=per_request["compute_input"],
        compute_infer_us=per_request["compute_infer"], compute_output_us=per_request["compute_output"],
        replicas=_replica_delta(before.get("ray_serve_replicas"), after.get("ray_serve_replicas")),
    )


def _replica_delta(before: dict | None, after: dict | None) -> dict[str, dict] | None:
    if after is None:
        return None
    out = {}
    for rid, r in after.items():
        b = (before or {}).get(rid, {})
        requests = _as_int(r.get("requests")) - _as_int(b.get("requests"))
        if requests > 0:
            ns = _as_int(r.get("compute_infer_ns")) - _as_int(b.get("compute_infer_ns"))
            out[rid] = {"node": r.get("node_name") or r.get("node", ""), "requests": requests,
                        "images": _as_int(r.get("images")) - _as_int(b.get("images")), "compute_infer_us": ns / 1e3 / requests}
    return out


def _as_int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class _Client(threading.Thread):
    """One client: creates, loads and warms its own backend in its own thread (HTTP clients are bound
    to the thread that made them), then sends `batch_sizes` (cycled) back to back from `start` until
    `stop_at`, checking every response, and closes its backend."""

    def __init__(self, make_backend: Callable[[], object], images: np.ndarray, reference: np.ndarray | None,
                 batch_sizes: tuple[int, ...], offset: int, ready: threading.Barrier, start: threading.Event,
                 stop_at: list[float], warmup_s: float, tolerance: float):
        super().__init__(daemon=True)
        self.make_backend, self.images, self.reference = make_backend, images, reference
        self.batch_sizes, self.offset = batch_sizes, offset
        self.ready, self.start_event, self.stop_at = ready, start, stop_at
        self.warmup_s, self.tolerance = warmup_s, tolerance
        self.samples_ns: list[int] = []
        self.images_done = 0
        self.failed = 0
        self.wrong = 0
        self.first_error = ""
        self.setup_error = ""

    def _note(self, exc: BaseException) -> None:
        if not self.first_error:
            self.first_error = " ".join(str(exc).split())[:300] or type(exc).__name__

    def run(self) -> None:
        backend = None
        try:
            try:
                backend = self.make_backend()
                backend.load()
                end = time.perf_counter() + self.warmup_s
                while True:  # warm the connection and the server's batcher
                    for size in self.batch_sizes:
                        backend.run_trusted(self.images[:size])
                    if time.perf_counter() >= end:
                        break
            except Exception as exc:  # noqa: BLE001 - reported as the cell's failure
                self.setup_error = " ".join(str(exc).split())[:300] or type(exc).__name__
                backend = None
            try:
                self.ready.wait(timeout=600)
            except threading.BrokenBarrierError:
                return
            self.start_event.wait()
            if backend is not None:
                self._send(backend)
        finally:
            if backend is not None:
                try:
                    backend.close()
                except Exception:  # noqa: BLE001
                    pass

    def _send(self, backend) -> None:
        n = len(self.images)
        clock = time.perf_counter_ns
        stop_ns = self.stop_at[0]
        i, k = self.offset, 0
        while clock() < stop_ns:
            b = self.batch_sizes[k % len(self.batch_sizes)]
            k += 1
            start = i % max(1, n - b + 1)
            batch = self.images[start : start + b]
            i += b
            t0 = clock()
            try:
                out = backend.run_trusted(batch)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
                self.failed += 1
                self._note(exc)
                time.sleep(0.01)  # a dead server answers at once: don't spin
                continue
            t1 = clock()
            self.samples_ns.append(t1 - t0)
            self.images_done += b
            if self.reference is not None and not _matches(out, self.reference[start : start + b], self.tolerance):
                self.wrong += 1


def _matches(out, ref: np.ndarray, tolerance: float) -> bool:
    if hasattr(ref, "matches"):  # another model's outputs (toolkit.bench.model_load)
        return ref.matches(out, tolerance)
    if not isinstance(out, np.ndarray) or out.shape != ref.shape:
        return False
    if not np.array_equal(out.argmax(1), ref.argmax(1)):
        return False
    return bool(np.abs(out.astype(np.float64) - ref).max() <= tolerance) if out.size else True


def run_cell(row: LoadRow, images: np.ndarray, reference: np.ndarray | None, concurrency: int,
             batch_sizes: tuple[int, ...], seconds: float, warmup_s: float, tolerance: float) -> LoadCell:
    """One (row, concurrency, batch sizes) cell; mixed batch sizes when more than one is given."""
    cell = LoadCell(row.backend, row.precision, row.variant, concurrency, batch_sizes[0] if len(batch_sizes) == 1 else 0)
    ready = threading.Barrier(concurrency + 1)
    start = threading.Event()
    stop_at = [0.0]
    stride = max(1, len(images) // max(1, concurrency))
    clients = [_Client(row.make_backend, images, reference, batch_sizes, j * stride, ready, start, stop_at, warmup_s, tolerance)
               for j in range(concurrency)]
    for c in clients:
        c.start()
    try:
        ready.wait(timeout=600)  # every client connected and warm
    except threading.BrokenBarrierError:
        pass
    setup_errors = [c.setup_error for c in clients if c.setup_error]
    before = row.statistics() if row.statistics and not setup_errors else None
    t0 = time.perf_counter_ns()
    stop_at[0] = t0 + seconds * 1e9
    start.set()
    for c in clients:
        c.join(timeout=seconds + 120)  # every call has its own timeout; this bounds a hung thread
    wall = (time.perf_counter_ns() - t0) * 1e-9
    after = row.statistics() if row.statistics and not setup_errors else None
    samples = np.asarray([s for c in clients for s in c.samples_ns], dtype=np.float64) / 1e3
    cell.requests = int(samples.size)
    cell.images = sum(c.images_done for c in clients)
    cell.failed = sum(c.failed for c in clients) + len(setup_errors)
    cell.wrong = sum(c.wrong for c in clients)
    cell.first_error = next(iter(setup_errors), "") or next((c.first_error for c in clients if c.first_error), "")
    if any(c.is_alive() for c in clients):
        cell.failed += 1
        cell.first_error = cell.first_error or "a client did not finish (hung request)"
    cell.seconds = wall
    cell.images_per_second = cell.images / wall if wall > 0 else 0.0
    if samples.size:
        cell.p50_us, cell.p90_us, cell.p99_us = percentile(samples, 50), percentile(samples, 90), percentile(samples, 99)
        cell.max_us = float(samples.max())
    cell.server = _stats_delta(before, after)
    return cell


def run_load(rows: list[LoadRow], images: np.ndarray, references: dict[tuple[str, str], np.ndarray | None],
             config: LoadConfig, progress: Callable[[str], None] | None = None) -> LoadReport:
    """Every row at every concurrency level and batch size; see the module docstring."""
    import os

    report = LoadReport(config)
    try:
        report.load_average_start = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    for row in rows:
        for concurrency in config.concurrencies:
            if row.max_concurrency is not None and concurrency > row.max_concurrency:
                continue
            for batch_size in config.batch_sizes:
                if progress:
                    progress(f"{row.label} concurrency {concurrency} batch {batch_size}")
                report.cells.append(run_cell(row, images, references.get((row.backend, row.precision)), concurrency,
                                             (batch_size,), config.seconds, config.warmup_s, config.tolerance))
    try:
        report.load_average_end = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    if any(r.max_concurrency == 1 for r in rows):
        report.notes.append("in-process rows run at concurrency 1 only (one backend, one caller)")
    report.notes.append("clients and server share this machine's cores; figures include that contention")
    return report


@dataclass
class SoakResult:
    cell: LoadCell
    rss_start: dict[str, int]  # process label -> bytes, after warm-up
    rss_end: dict[str, int]
    rss_max: dict[str, int]
    rss_bound_bytes: int
    stop: object | None = None  # serve.StopReport of the server soaked, when the soak started it

    @property
    def growth(self) -> dict[str, int]:
        return {k: self.rss_end.get(k, 0) - v for k, v in self.rss_start.items()}

    @property
    def passed(self) -> bool:
        return (self.cell.failed == 0 and self.cell.wrong == 0 and self.cell.requests > 0
                and all(g <= self.rss_bound_bytes for g in self.growth.values())
                and (self.stop is None or self.stop.clean))


def run_soak(row: LoadRow, images: np.ndarray, reference: np.ndarray | None, concurrency: int, batch_sizes: tuple[int, ...],
             seconds: float, processes: dict[str, int], rss: Callable[[int], int | None], rss_bound_bytes: int,
             tolerance: float = DEFAULT_TOLERANCE, warmup_s: float = 1.0) -> SoakResult:
    """A long cell with mixed batch sizes while sampling the resident memory of `processes`
    (label -> pid) once a second; memory is compared after warm-up, so allocator pools that fill
    once are not counted as growth."""
    samples: dict[str, list[int]] = {k: [] for k in processes}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            for label, pid in processes.items():
                value = rss(pid)
                if value is not None:
                    samples[label].append(value)

    # A short warm cell first, at full concurrency, so the server's pools, the batcher and every
    # client connection have reached their working size before the start figure is taken.
    run_cell(row, images, reference, concurrency, batch_sizes, min(5.0, seconds / 4), warmup_s, tolerance)
    start = {k: rss(pid) or 0 for k, pid in processes.items()}
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cell = run_cell(row, images, reference, concurrency, batch_sizes, seconds, 0.0, tolerance)
    finally:
        stop.set()
        sampler.join(timeout=5)
    end = {k: rss(pid) or 0 for k, pid in processes.items()}
    peak = {k: max(samples[k] + [start[k], end[k]]) for k in processes}
    return SoakResult(cell, start, end, peak, rss_bound_bytes)
