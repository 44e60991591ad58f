"""The configuration search: for each (backend, precision, batch size), which of the runtime's
settings make the same call faster on this machine, within a time budget.

Method (the sweep's timing definition and noise handling):
- Start from the backend's defaults (the settings `toolkit bench` uses). Vary one setting at a
  time (coordinate descent: threads first, then each backend option in the order the backend
  declares them), keeping every other setting at the best found so far.
- Each candidate is timed against the incumbent in alternating blocks (`timing.measure`, the
  sweep's paired measurement), one synchronous `backend.run(batch)` per sample.
- A candidate wins only when the bootstrap 95% interval of its median-latency ratio to the
  incumbent lies wholly below 1 AND the point ratio is at least `min_gain` below 1: noise never
  changes a setting, and gains too small to matter do not either.
- A winner must then pass the parity gate (the full MNIST test set at the gate's batch sizes,
  against PyTorch fp32, under its precision's tolerances); a setting that changes the arithmetic
  (OpenVINO's bf16 inference precision) is labelled and judged under the fp16 tolerances. One that
  fails is recorded as refused and never used.
- Finally the chosen settings are timed once more against the defaults, in a fresh paired
  measurement, so the reported gain is not the lucky draw that selected them.
- The budget is shared out over the searches still to run; a step that does not fit is listed as
  untried, never silently skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from toolkit.bench.schema import BenchConfig, Warmup
from toolkit.bench.timing import measure
from toolkit.stats import bootstrap_ratio_ci

DEFAULT_BUDGET_S = 420.0  # with the fixed costs (reference logits, loads, a step running past its slice) under 10 minutes
DEFAULT_BATCH_SIZES = (1, 256)
MIN_GAIN = 0.02  # a winner is at least 2% faster (and its whole interval below 1)
CONFIDENCE = 0.95
# Per comparison: both sides alternate in PAIRED_BLOCKS blocks sharing these calls and seconds.
TUNE_WARMUP = "0.05s"
TUNE_ITERATIONS = 40
TUNE_MIN_SECONDS = 0.6
# Rough costs used to decide whether a step fits what is left of the budget.
STEP_OVERHEAD_S = 0.5  # load, warm-up, re-warm calls
PYTORCH_WEIGHT = 7.0  # share of the budget a PyTorch search gets, against 1 for the others (one compile step fits)
COMPILE_STEP_S = 60.0  # torch.compile compiles during its first calls, and again for the gate's batch sizes


def tune_config() -> BenchConfig:
    return BenchConfig(batch_sizes=(1,), warmup=Warmup.parse(TUNE_WARMUP), iterations=TUNE_ITERATIONS,
                       min_seconds=TUNE_MIN_SECONDS, torch_compile=False, direct=False)


@dataclass
class Trial:
    """One candidate timed against the incumbent."""

    setting: str  # the one setting changed, "name=value"
    options: dict  # the candidate's complete options (threads included)
    verdict: str  # "faster" | "not faster" | "refused: parity" | "failed"
    median_us: float | None = None
    incumbent_median_us: float | None = None
    ratio: float | None = None  # candidate / incumbent median latency (< 1: faster)
    ci_low: float | None = None
    ci_high: float | None = None
    message: str = ""


@dataclass
class SearchResult:
    options: dict  # the chosen settings (the defaults when nothing won)
    default_options: dict
    trials: list[Trial] = field(default_factory=list)
    untried: list[str] = field(default_factory=list)  # "name=value (why)"
    # The final paired measurement, chosen vs default (absent when the defaults were kept).
    default_median_us: float | None = None
    tuned_median_us: float | None = None
    speedup: float | None = None  # default median / chosen median
    ci_low: float | None = None  # of the speedup
    ci_high: float | None = None
    confirmed: bool | None = None  # None: the defaults won outright; False: a choice the confirmation dropped
    note: str = ""


def _key(options: dict) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in options.items()))


def compare(incumbent: Callable, candidate: Callable, batch: np.ndarray, config: BenchConfig,
            confidence: float = CONFIDENCE) -> tuple[float, float, float, float, float]:
    """Time both in alternating blocks; (candidate median µs, incumbent median µs, ratio, ci low, ci high)
    where ratio = candidate median / incumbent median and the interval is the bootstrap one."""
    inc, cand = measure([incumbent, candidate], batch, config)
    lo, hi = bootstrap_ratio_ci(inc.samples_ns, cand.samples_ns, n_resamples=1000, confidence=confidence)
    cand_med, inc_med = float(np.median(cand.samples_ns)) / 1e3, float(np.median(inc.samples_ns)) / 1e3
    return cand_med, inc_med, cand_med / inc_med, lo, hi


def search(
    knobs: list[tuple[str, tuple]],
    defaults: dict,
    open_call: Callable[[dict], tuple[Callable, Callable[[], None]]],
    batch: np.ndarray,
    config: BenchConfig,
    gate: Callable[[dict], tuple[bool, str]] | None = None,
    deadline: float | None = None,
    min_gain: float = MIN_GAIN,
    step_cost: Callable[[str, object], float] | None = None,
) -> SearchResult:
    """Coordinate descent over `knobs` [(name, values)] from `defaults` (see the module docstring).

    open_call(options) -> (call, close): a ready-to-time callable on `batch` with those settings and
    its release; gate(options) -> (passed, reason) is asked only about a candidate that won on speed
    (results are cached per settings); deadline is a time.monotonic() value after which no step
    starts; step_cost(name, value) estimates a step's seconds (default: the measurement's length)."""
    result = SearchResult(options=dict(defaults), default_options=dict(defaults))
    per_step = 2 * (config.min_seconds + config.warmup.seconds) + STEP_OVERHEAD_S
    cost = step_cost or (lambda name, value: per_step)
    gate_cache: dict[tuple, tuple[bool, str]] = {}
    best_call, best_close = open_call(result.options)
    try:
        for name, values in knobs:
            for value in values:
                if value == result.options.get(name):
                    continue
                setting = f"{name}={value}"
                if deadline is not None and time.monotonic() + cost(name, value) > deadline:
                    result.untried.append(f"{setting} (budget)")
                    continue
                candidate = {**result.options, name: value}
                trial = Trial(setting, candidate, "failed")
                result.trials.append(trial)
                try:
                    call, close = open_call(candidate)
                except Exception as exc:  # noqa: BLE001 - a setting this runtime rejects is one failed trial
                    trial.message = _one_line(exc)
                    continue
                keep = False
                try:
                    trial.median_us, trial.incumbent_median_us, trial.ratio, trial.ci_low, trial.ci_high = compare(best_call, call, batch, config)
                    if trial.ci_high < 1.0 and trial.ratio <= 1.0 - min_gain:
                        passed, why = True, ""
                        if gate is not None:
                            k = _key(candidate)
                            if k not in gate_cache:
                                gate_cache[k] = gate(candidate)
                            passed, why = gate_cache[k]
                        if passed:
                            trial.verdict, keep = "faster", True
                        else:
                            trial.verdict, trial.message = "refused: parity", why
                    else:
                        trial.verdict = "not faster"
                except Exception as exc:  # noqa: BLE001
                    trial.verdict, trial.message = "failed", _one_line(exc)
                if keep:
                    best_close()
                    best_call, best_close = call, close
                    result.options = candidate
                else:
                    close()
        if result.options != result.default_options:
            # Confirmation: the chosen settings against the defaults in a fresh paired measurement.
            # The search picked the best of several noisy draws; a choice this run cannot confirm
            # (interval not wholly above 1) is dropped, and the defaults are kept.
            chosen = result.options
            try:
                default_call, default_close = open_call(result.default_options)
                try:
                    tuned_us, default_us, ratio, lo, hi = compare(default_call, best_call, batch, config)
                finally:
                    default_close()
                result.default_median_us, result.tuned_median_us = default_us, tuned_us
                result.speedup, result.ci_low, result.ci_high = 1.0 / ratio, 1.0 / hi, 1.0 / lo
                result.confirmed = result.ci_low > 1.0
            except Exception as exc:  # noqa: BLE001
                result.confirmed, result.note = False, f"confirmation failed: {_one_line(exc)}"
            if not result.confirmed:
                result.options = dict(result.default_options)
                result.note = result.note or (f"not confirmed: {', '.join(f'{k}={v}' for k, v in sorted(chosen.items()) if result.default_options.get(k) != v)} "
                                              f"measured {result.speedup:.3f}x [{result.ci_low:.3f}..{result.ci_high:.3f}] the defaults' speed; defaults kept")
    finally:
        best_close()
    return result


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


# --- the search over this machine's backends -------------------------------------------------------

def search_space(backend: str, precision: str, cores: int) -> tuple[list[tuple[str, tuple]], dict]:
    """(knobs, defaults): threads 1..cores, then the backend's own options in declared order; the
    first value of each option is its default (what `toolkit bench` uses)."""
    from toolkit.backends import registry

    choices = registry.option_choices(backend, precision) or {}
    knobs = [("threads", tuple(range(cores, 0, -1)))] + [(name, tuple(values)) for name, values in choices.items()]
    defaults = {"threads": cores, **{name: values[0] for name, values in choices.items()}}
    return knobs, defaults


def _step_cost(config: BenchConfig):
    base = 2 * (config.min_seconds + config.warmup.seconds) + STEP_OVERHEAD_S

    def cost(name: str, value) -> float:
        return base + (COMPILE_STEP_S if name == "compile" and value else 0.0)

    return cost


@dataclass
class _GateContext:
    images: object  # the built-in: test images (N,1,28,28); another model: a feed dict
    labels: np.ndarray | None
    reference: object  # the built-in: PyTorch logits; another model: its reference outputs by name
    verdicts: dict = field(default_factory=dict)  # options key -> parity summary dict
    samples: int = 0



def _model_gate_for(planned, ctx: _GateContext):
    """Another model's candidates: judged by the gate for any model (toolkit.parity_spec)."""
    from toolkit.bench.tune_model import judge_candidate

    def gate(options: dict) -> tuple[bool, str]:
        judged, verdict = judge_candidate(planned, ctx.images, ctx.reference, ctx.labels, options)
        ctx.verdicts[_key(options)] = verdict
        return judged.status == "pass", judged.reason or judged.status

    return gate


def _gate_for(planned, ctx: _GateContext):
    from toolkit import parity
    from toolkit.backends import registry

    if planned.spec is not None:
        return _model_gate_for(planned, ctx)
    device = registry.get_spec(planned.backend).device

    def gate(options: dict) -> tuple[bool, str]:
        opts = dict(options)
        threads = opts.pop("threads", None)
        compute = registry.compute_precision(planned.backend, planned.precision, opts)
        # bf16 arithmetic (OpenVINO's inference precision) is judged as fp16 is: no silent precision change.
        key = "fp16" if compute == "bf16" else parity.tolerance_key(planned.precision, device)
        tolerance = parity.DEFAULT_TOLERANCES[key]
        captured = parity.capture_pair(planned, ctx.images, parity.DEFAULT_BATCH_SIZES, threads, options=opts)
        judged = parity.judge_pair(captured, ctx.reference, ctx.labels, tolerance)
        ctx.verdicts[_key(options)] = {
            "status": judged.status, "reason": judged.reason, "tolerance": key, "images": int(len(ctx.images)),
            "batch_sizes": list(parity.DEFAULT_BATCH_SIZES), "accuracy": judged.accuracy, "agreement": judged.agreement,
            "max_abs_logit": judged.max_abs_logit,
        }
        return judged.status == "pass", judged.reason or judged.status

    return gate


def _opener(planned, batch):
    from toolkit.backends import registry
    from toolkit.bench.sweep import _check_output

    def open_call(options: dict):
        opts = dict(options)
        threads = opts.pop("threads", None)
        backend = registry.create_backend(planned.backend, planned.precision, planned.model_path, threads=threads,
                                          **registry.spec_kw(planned.spec), **opts)
        try:
            backend.load()
            out = backend.run(batch)  # also compiles/optimises for this shape before timing
            if planned.spec is not None:  # another model: its outputs, batch first
                _check_output(out, len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch), planned.spec)
            elif out.shape != (len(batch), 10):
                raise ValueError(f"output {out.shape} at batch {len(batch)}")
        except Exception:
            backend.close()
            raise
        return backend.run, backend.close

    return open_call


def run_tune(
    budget_s: float | None = DEFAULT_BUDGET_S,
    backends: list[str] | None = None,
    precisions: list[str] | None = None,
    batch_sizes: tuple[int, ...] | None = DEFAULT_BATCH_SIZES,
    checkpoint=None,
    artifacts_dir=None,
    data_dir=None,
    min_gain: float = MIN_GAIN,
    progress: Callable[[str], None] | None = None,
    spec=None,
    data=None,
):
    """Search every available CPU (backend, precision) pair at each batch size within `budget_s`
    seconds (None: the defaults); returns a TunedFile (see toolkit.bench.tuned). `spec`: another
    model than the built-in (its files in `artifacts_dir`): timed on the first samples of `data` (a
    DataSource; else inputs drawn from the spec), every candidate gated by the gate for any model on
    the first MODEL_GATE_SAMPLES of them against the model's reference."""
    from toolkit import env, parity
    from toolkit.backends import registry
    from toolkit.bench.sweep import benchmark_images, benchmark_inputs, capture_environment
    from toolkit.bench.tuned import TunedEntry, TunedFile
    from toolkit.data import load_split_uint8, to_model_input
    from toolkit.errors import InputError
    from toolkit.files import paths

    budget_s = DEFAULT_BUDGET_S if budget_s is None else budget_s
    batch_sizes = DEFAULT_BATCH_SIZES if batch_sizes is None else tuple(batch_sizes)
    if not (isinstance(budget_s, (int, float)) and np.isfinite(budget_s) and budget_s > 0):
        raise InputError(f"--budget must be a positive number of seconds, got {budget_s}", "pass e.g. --budget 420")
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}", "pass e.g. --batch-sizes 1,256")
    start = time.monotonic()
    deadline = start + budget_s
    checkpoint = paths.checkpoint_path() if checkpoint is None else checkpoint
    artifacts_dir = paths.ARTIFACTS_DIR if artifacts_dir is None else artifacts_dir
    other = spec is not None and spec.source != "mnist-cnn"
    planned = [p for p in registry.plan_pairs(backends, precisions, checkpoint, artifacts_dir, **({"spec": spec} if other else {}))
               if p.available and registry.option_choices(p.backend, p.precision) is not None]
    # The sweep's order (PyTorch first): measured here, PyTorch's OpenMP threads ran orders of
    # magnitude slower at batch 1 after the other runtimes' thread pools had started in the process.
    cores = env.usable_cores()
    config = tune_config()
    if other:
        from toolkit.bench.tune_model import gate_data, model_batch_sizes

        ctx = _GateContext(*gate_data(spec, artifacts_dir, data))
        batch_sizes = model_batch_sizes(spec, batch_sizes)
        images = benchmark_inputs(spec, max(batch_sizes), data)
    else:
        images = benchmark_images(max(batch_sizes), data_dir)
        test_u8, labels_u8 = load_split_uint8("test", data_dir)
        test_images = to_model_input(test_u8)
        ctx = _GateContext(test_images, labels_u8.astype(np.int64), parity.reference_logits(checkpoint, test_images))
    environment = capture_environment()
    entries: list[TunedEntry] = []
    searches = [(p, bs) for p in planned for bs in batch_sizes]
    # The budget is shared in proportion to these weights over the searches still to run: a
    # search that finishes early leaves its time to the next. PyTorch's compile steps are the
    # costliest, so its searches weigh more (at the default budget one compile step fits).
    weights = [PYTORCH_WEIGHT if p.backend == "pytorch" else 1.0 for p, _ in searches]
    for i, (p, bs) in enumerate(searches):
        now = time.monotonic()
        slice_deadline = now + max(0.0, deadline - now) * weights[i] / sum(weights[i:])
        if progress:
            progress(f"tune {p.backend}/{p.precision} batch {bs} ({max(0.0, slice_deadline - now):.0f} s)")
        knobs, defaults = search_space(p.backend, p.precision, cores)
        batch = images[:bs] if not isinstance(images, dict) else {k: v[:bs] for k, v in images.items()}
        try:
            result = search(knobs, defaults, _opener(p, batch), batch, config, _gate_for(p, ctx), slice_deadline, min_gain, _step_cost(config))
        except Exception as exc:  # noqa: BLE001 - the defaults themselves would not run: this pair keeps them, and says why
            result = SearchResult(options=dict(defaults), default_options=dict(defaults), untried=[f"everything (the defaults failed: {_one_line(exc)})"])
        chosen = dict(result.options)
        backend_opts = {k: v for k, v in chosen.items() if k != "threads"}
        parity_verdict = (ctx.verdicts.get(_key(chosen)) if chosen != result.default_options
                          else {"status": "default settings", "reason": "judged by `toolkit eval`"})
        entries.append(TunedEntry(
            backend=p.backend, precision=p.precision, batch_size=bs, options=chosen, default_options=result.default_options,
            compute_precision=registry.compute_precision(p.backend, p.precision, backend_opts),
            default_median_us=result.default_median_us, tuned_median_us=result.tuned_median_us, speedup=result.speedup,
            ci_low=result.ci_low, ci_high=result.ci_high, parity=parity_verdict or {},
            trials=[vars(t) for t in result.trials], untried=result.untried, note=result.note,
        ))
    environment.load_average_end = env.load_average()
    from dataclasses import asdict

    settings = {
        "budget_s": budget_s, "elapsed_s": round(time.monotonic() - start, 1), "batch_sizes": list(batch_sizes), "cores": cores,
        "min_gain": min_gain, "confidence": CONFIDENCE, "warmup": config.warmup.describe(), "iterations": config.iterations,
        "min_seconds": config.min_seconds, "method": __doc__.split("Method", 1)[1].strip() if __doc__ else "",
    }
    return TunedFile(environment=asdict(environment), settings=settings, entries=entries)


def tune_to_file(out_dir, budget_s=None, backends=None, precisions=None, batch_sizes=None, checkpoint=None, artifacts_dir=None,
                 data_dir=None, progress=None, exclusive: dict | None = None, spec=None, data=None):
    """`toolkit bench --tune`: refuse options that belong to the sweep (`exclusive`: {option: value
    given}), search, and write OUT_DIR/tuned.json; returns (TunedFile, path)."""
    import os

    from toolkit.bench.tuned import write_tuned
    from toolkit.errors import InputError
    from toolkit.files.store import check_writable_dir

    given = [name for name, value in (exclusive or {}).items() if value]
    if given:
        raise InputError(f"--tune takes no {', '.join(given)}", "run the search alone, then `toolkit bench --config OUT/tuned.json`")
    check_writable_dir(out_dir, create=True)
    tuned = run_tune(budget_s, backends, precisions, batch_sizes, checkpoint, artifacts_dir, data_dir, progress=progress,
                     **({"spec": spec, "data": data} if spec is not None else {}))
    return tuned, write_tuned(tuned, os.path.join(out_dir, "tuned.json"))
