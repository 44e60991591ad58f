"""The sweep: every planned (backend, precision) pair over the batch sizes, with its reference rows."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit import env
from toolkit.backends import registry
from toolkit.bench.direct import DIRECT_PRECISIONS, DIRECT_RUNTIMES
from toolkit.bench.schema import (
    COMPILE,
    DIRECT,
    PAIRED_BLOCKS,
    TORCH_COMPILE_MODE,
    TUNED,
    BenchCell,
    BenchConfig,
    BenchReport,
    BenchSettings,
    Environment,
    LatencyStats,
    PairInfo,
    images_per_second,
    row_label,
    scenario_for,
    stored_samples,
)
from toolkit.bench.timing import Measurement, device_timing_from_hook, measure
from toolkit.errors import ToolkitError
from toolkit.files import paths
from toolkit.model import NUM_CLASSES


def capture_environment() -> Environment:
    versions = env.library_versions()
    return Environment(
        cpu_model=env.cpu_model(), cpu_count=os.cpu_count() or 1, usable_cores=env.usable_cores(), gpu=env.gpu_description(),
        platform=platform.platform(), python=versions.pop("python"), toolkit=versions.pop("toolkit"), versions=versions,
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), command=env.command_line(),
        load_average_start=env.load_average(),
    )


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


def benchmark_inputs(spec, max_batch: int, data=None):
    """Another model's benchmark inputs: the first `max_batch` samples of `data` (repeated when it
    holds fewer), or inputs drawn from the spec; a plain array for a single-input model."""
    from toolkit.parity_spec import random_feeds

    if data is None:
        feeds = random_feeds(spec, max_batch)
    else:
        from toolkit.export.model_export import read_feeds

        feeds = read_feeds(data, spec, max_batch)
        n = len(next(iter(feeds.values())))
        if n < max_batch:
            reps = math.ceil(max_batch / n)
            feeds = {k: np.concatenate([v] * reps)[:max_batch] for k, v in feeds.items()}
    feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
    return feeds[spec.inputs[0].name] if len(spec.inputs) == 1 else feeds


def _slice(inputs, batch_size: int):
    return inputs[:batch_size] if isinstance(inputs, np.ndarray) else {k: v[:batch_size] for k, v in inputs.items()}


def _check_output(out, batch_size: int, spec=None) -> None:
    if spec is not None:  # another model: every output, batch first
        outs = out if isinstance(out, dict) else {spec.outputs[0].name: out}
        for t in spec.outputs:
            got = outs.get(t.name)
            if not isinstance(got, np.ndarray) or got.shape[:1] != (batch_size,) or len(got.shape) != len(t.shape):
                raise ToolkitError(f"output {t.name} is {getattr(got, 'shape', type(got).__name__)} at batch {batch_size}, expected {t.shape}")
        return
    if not isinstance(out, np.ndarray) or out.shape != (batch_size, NUM_CLASSES):
        got = getattr(out, "shape", type(out).__name__)
        raise ToolkitError(f"output {got} at batch {batch_size}, expected ({batch_size}, {NUM_CLASSES})")


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


def _bench_rows(planned: registry.PlannedPair, images, config: BenchConfig, threads: int, progress) -> tuple[list[PairInfo], list[BenchCell]]:
    """Benchmark one pair (and its direct/compile reference rows); never raises for the pair's own failures."""
    from toolkit.files.store import sha256_file

    variants = [""]
    if planned.backend == "pytorch" and config.torch_compile:
        variants.append(COMPILE)
    infos: list[PairInfo] = []
    cells: list[BenchCell] = []
    # An endpoint's model is not a local file: its SHA-256 is the server's business.
    sha = "" if registry.get_spec(planned.backend).reads == "endpoint" else sha256_file(planned.model_path)
    for variant in variants:
        info = PairInfo(planned.backend, planned.precision, variant, "ok", model_path=str(planned.model_path), model_sha256=sha, threads=threads)
        infos.append(info)
        options = {"compile": TORCH_COMPILE_MODE} if variant == COMPILE else {}
        backend = None
        try:
            t0 = time.perf_counter()
            backend = registry.create_backend(planned.backend, planned.precision, planned.model_path, threads=threads,
                                              spec=planned.spec, **planned.options, **options)
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
        if (not variant and config.direct and planned.backend in DIRECT_RUNTIMES and planned.precision in DIRECT_PRECISIONS
                and backend.single):
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
                batch = _slice(images, bs)
                rows = []
                for row_info, call in [(info, backend.run)] + ([(direct_info, direct_call)] if direct_info else []):
                    try:
                        _check_output(call(batch), bs, planned.spec)
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


def _tuned_rows(planned: registry.PlannedPair, images, config: BenchConfig, progress) -> tuple[list[PairInfo], list[BenchCell]]:
    """Rows with the settings tuned.json holds for this pair at the sweep's batch sizes (one backend
    per distinct set of settings); a tuned entry that kept the defaults adds no row."""
    from toolkit.files.store import sha256_file

    entries = [e for e in config.tuned.entries if (e.backend, e.precision) == (planned.backend, planned.precision)
               and e.batch_size in config.batch_sizes and e.options != e.default_options]
    groups: dict[str, list] = {}
    for e in entries:
        groups.setdefault(repr(sorted(e.options.items(), key=lambda kv: kv[0])), []).append(e)
    infos: list[PairInfo] = []
    cells: list[BenchCell] = []
    sha = sha256_file(planned.model_path) if groups else ""
    for group in groups.values():
        options = dict(group[0].options)
        variant = TUNED + (f" {group[0].compute_precision}" if group[0].compute_precision else "")
        threads = options.pop("threads", None)
        info = PairInfo(planned.backend, planned.precision, variant, "ok", model_path=str(planned.model_path), model_sha256=sha, threads=threads)
        infos.append(info)
        sizes = sorted(e.batch_size for e in group)
        backend = None
        try:
            t0 = time.perf_counter()
            backend = registry.create_backend(planned.backend, planned.precision, planned.model_path, threads=threads,
                                              spec=planned.spec, **options)
            backend.load()
            info.load_seconds = time.perf_counter() - t0
            described = backend.describe()
            info.device, info.runtime, info.settings = described.device, described.runtime, dict(described.details)
            for bs in sizes:
                if progress:
                    progress(f"{row_label(planned.backend, planned.precision, variant)} batch {bs}")
                batch = _slice(images, bs)
                try:
                    _check_output(backend.run(batch), bs, planned.spec)
                    (m,) = measure([backend.run], batch, config)
                    cell = _make_cell(info, bs, m, config)
                    cell.options = dict(group[0].options)
                    cells.append(cell)
                except Exception as exc:  # noqa: BLE001 - one failing cell doesn't stop the others
                    cells.append(_failed_cell(info, bs, _one_line(exc)))
        except Exception as exc:  # noqa: BLE001 - a tuned row that can't load fails alone
            info.status, info.message = "failed", _one_line(exc)
            cells += [_failed_cell(info, bs, info.message) for bs in sizes]
        finally:
            if backend is not None:
                backend.close()
    return infos, cells


def _measure_peak(planned: list[registry.PlannedPair], threads: int, progress):
    """This machine's peaks and the model's operation count (from the first ONNX file planned)."""
    from toolkit.bench.peak import measure_peak_report

    onnx_files = [p.model_path for p in planned
                  if p.available and registry.get_spec(p.backend).reads == "onnx" and Path(p.model_path).is_file()]
    if progress:
        progress("peak: fp32/int8 matrix products")
    return measure_peak_report(threads, onnx_files[0] if onnx_files else None)


def run_bench(
    config: BenchConfig,
    backends: list[str] | None = None,
    precisions: list[str] | None = None,
    checkpoint: str | Path | None = None,
    artifacts_dir: str | Path = paths.ARTIFACTS_DIR,
    data_dir=None,
    progress: Callable[[str], None] | None = None,
    endpoint: dict | None = None,
    spec=None,
    data=None,
) -> BenchReport:
    """Benchmark every requested, available pair over `config.batch_sizes`; see the module docstring.
    `endpoint` ({"url", "model", ...}) is where the `triton` backend's pairs run. `spec`: another
    model than the built-in CNN (its files in `artifacts_dir`), fed the first samples of `data` (a
    DataSource) or, without data, inputs drawn from the spec; a fixed batch axis is benchmarked at its
    own batch size only."""
    from dataclasses import replace

    checkpoint = paths.checkpoint_path() if checkpoint is None else checkpoint
    other = spec is not None and spec.source != "mnist-cnn"
    planned = registry.plan_pairs(backends, precisions, checkpoint, artifacts_dir, endpoint, **({"spec": spec} if other else {}))
    input_text = f"the first {max(config.batch_sizes)} MNIST test images, float32 (N,1,28,28) in [0,1], the same for every pair"
    if other:
        fixed = sorted({t.shape[0] for t in spec.inputs if not t.batch_dynamic})
        if fixed:
            config = replace(config, batch_sizes=(fixed[0],))
        images = benchmark_inputs(spec, max(config.batch_sizes), data)
        input_text = (f"model {spec.name}: " + (f"the first {max(config.batch_sizes)} samples of {data.info.location}" if data is not None
                      else f"{max(config.batch_sizes)} inputs drawn from the spec (seeded random), the same for every pair"))
    else:
        images = benchmark_images(max(config.batch_sizes), data_dir)
    threads = config.threads or env.usable_cores()
    environment = capture_environment()
    notes = []
    if config.direct:
        notes.append(f"'direct' rows call the runtime's own Python API on the toolkit backend's own session (same model, settings, thread pool and data); they alternate with the toolkit's row in {PAIRED_BLOCKS} blocks, in ABBA order")
    if config.torch_compile:
        notes.append(f"'compile' rows: torch.compile(mode={TORCH_COMPILE_MODE!r}); compilation happens during warm-up")
    settings = BenchSettings(
        batch_sizes=list(config.batch_sizes), warmup=config.warmup.describe(), iterations=config.iterations,
        min_seconds=config.min_seconds, threads=threads, quick=config.quick,
        input=input_text,
        timer="time.perf_counter_ns around each synchronous call (host numpy in -> host numpy out); garbage collector paused while timing",
        notes=notes,
    )
    if config.tuned is not None:
        notes.append("'tuned' rows: the settings from the --config file (`toolkit bench --tune`) at the batch sizes they were tuned for; "
                     "'tuned bf16': OpenVINO computing in bf16, judged by the parity gate under the fp16 tolerances")
    peak = _measure_peak(planned, threads, progress) if config.peak else None
    if peak is not None:
        notes.append(f"% of peak: operations per second at the median call ({peak.model.ops_per_image / 1e6:.2f} M per image, counted from the ONNX graph) "
                     f"over this machine's measured peak for the cell's data type; {peak.method}" if peak.model else "no ONNX file planned: no operation count")
    pairs: list[PairInfo] = []
    cells: list[BenchCell] = []
    for p in planned:
        if not p.available:
            pairs.append(PairInfo(p.backend, p.precision, "", "skipped", p.reason, model_path=str(p.model_path)))
            continue
        infos, new_cells = _bench_rows(p, images, config, threads, progress)
        pairs += infos
        cells += new_cells
        if config.tuned is not None:
            infos, new_cells = _tuned_rows(p, images, config, progress)
            pairs += infos
            cells += new_cells
    profiles = []
    if config.profile and not other:
        from toolkit.bench.profile import profile_pairs

        profiles = profile_pairs(planned, images[: max(config.batch_sizes)], threads, progress)
    if peak is not None:
        from toolkit.bench.peak import apply_roofline

        apply_roofline(cells, peak, {(p.backend, p.precision): registry.get_spec(p.backend).device for p in planned})
    environment.load_average_end = env.load_average()
    return BenchReport(environment=environment, settings=settings, pairs=pairs, cells=cells, peak=peak, profiles=profiles)


