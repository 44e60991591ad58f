"""How a cell is timed: warm-up, back-to-back timed calls, alternating blocks for paired rows,
and the device-timing hook's statistics."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from toolkit.bench.schema import PAIRED_BLOCKS, REWARM_CALLS, BenchConfig, DeviceTiming, LatencyStats, Warmup


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
        for block in range(blocks):
            # ABBA order: each call runs first in half the blocks, so whatever the previous block
            # leaves behind (spinning worker threads, caches holding the other model) lands on both.
            order = list(zip(calls, results, strict=True))
            for call, result in order if block % 2 == 0 else order[::-1]:
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


